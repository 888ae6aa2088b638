"""Mutable state, fault normalisation and the canned error bodies (reference §4)."""

from __future__ import annotations

import base64
import collections
import itertools
import json
import random
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from flask import Response, current_app, request

from harness.fakes.cloudflare.pictures import ImageMaker

DEFAULT_ACCOUNT_ID = "test-account"
DEFAULT_API_TOKEN = "test-cf-token"
DEFAULT_LLM_KEY = "test-llm-key"
DEFAULT_LLM_REPLY = ("<think>The user wants a picture; describe it vividly.</think>"
                     "A cute cat sitting on a windowsill, soft morning light, highly detailed")
DEFAULT_FAULT_SLEEP = 5.0
RATE_LIMIT_RETRY_AFTER = 7


# ============================================================================================
# Faults (reference §4 bodies) and mutable state.
# ============================================================================================

IMAGE_FAULTS = ("3030", "4006", "3036", "3040", "5006", "10000", "7003", "500", "502", "503",
                "504", "8008", "rate_limit", "timeout", "malformed_json", "no_image",
                "not_image", "bad_base64", "empty", "close", "trickle", "huge")
# What a load test's random failures are drawn from: the answers a busy account really sees.
RANDOM_FAULTS = ("3030", "3040", "4006", "500", "rate_limit", "malformed_json", "not_image")
LLM_FAULTS = ("timeout", "500", "503", "empty", "empty_body", "malformed_json", "4006",
              "rate_limit", "close", "trickle")
TRICKLE_SECONDS = 1.0        # "trickle": status and headers at once, then one byte a second
HUGE_BYTES = 100 * 1024 * 1024   # "huge": a 200 answer this long, streamed without a length


def trickle() -> Response:
    """A 200 whose body never completes in reasonable time: one byte per TRICKLE_SECONDS."""
    def body():
        for _ in range(3600):
            yield b" "
            time.sleep(TRICKLE_SECONDS)
    return Response(body(), status=200, mimetype="application/json")


def huge() -> Response:
    """A 200 JSON answer of HUGE_BYTES, streamed (no Content-Length to refuse it by)."""
    chunk = b" " * (1024 * 1024)

    def body():
        yield b'{"result": {"image": "'
        for _ in range(HUGE_BYTES // len(chunk)):
            yield chunk
    return Response(body(), status=200, mimetype="application/json")


def _normalise_fault(fault: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
    """Faults are strings ("3030") or objects ({"kind": "timeout", "seconds": 3})."""
    if isinstance(fault, (str, int)) and not isinstance(fault, bool):
        fault = {"kind": str(fault)}
    if not isinstance(fault, dict) or str(fault.get("kind")) not in allowed:
        raise ValueError(f"unknown fault {fault!r}; known: {', '.join(allowed)}")
    fault = dict(fault, kind=str(fault["kind"]))
    if "seconds" in fault and not isinstance(fault["seconds"], (int, float)):
        raise ValueError("fault 'seconds' must be a number")
    return fault


@dataclass
class FakeState:
    """Everything the control routes change; shared by all request threads."""

    account_id: str = DEFAULT_ACCOUNT_ID
    api_token: str = DEFAULT_API_TOKEN
    llm_key: str = DEFAULT_LLM_KEY
    gateway_token: str | None = None
    gateway_run_only: bool = False
    latency: float = 0.0
    llm_latency: float = 0.0
    fault_sleep: float = DEFAULT_FAULT_SLEEP
    llm_reply: str = DEFAULT_LLM_REPLY
    images: ImageMaker = field(default_factory=ImageMaker)
    record_limit: int = 10000
    fail_rate: float = 0.0
    # -- several accounts (cost control): more account_id -> token pairs, accounts whose daily
    # allocation is used up (answered 4006), and the `cf-ai-neurons` figure to report, if any.
    more_accounts: dict = field(default_factory=dict)
    exhausted: set = field(default_factory=set)
    neurons_header: str | None = None
    # The partner models' route (partners.py): its files on a fake clock, its faults.
    partners: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    faults: collections.deque = field(default_factory=collections.deque)
    llm_faults: collections.deque = field(default_factory=collections.deque)
    files: collections.OrderedDict = field(default_factory=collections.OrderedDict)
    counter: Any = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self):
        self.recorded: collections.deque = collections.deque(maxlen=self.record_limit)

    def add_faults(self, faults: list, *, llm: bool = False) -> None:
        parsed = [_normalise_fault(f, LLM_FAULTS if llm else IMAGE_FAULTS) for f in faults]
        with self.lock:
            (self.llm_faults if llm else self.faults).extend(parsed)

    def pop_fault(self, *, llm: bool = False) -> dict | None:
        with self.lock:
            queue = self.llm_faults if llm else self.faults
            if queue:
                return queue.popleft()
        if not llm and self.fail_rate and random.random() < self.fail_rate:
            # Load tests: a share of generations fails with one of the upstream's real errors.
            return {"kind": random.choice(RANDOM_FAULTS)}
        return None

    def record(self, entry: dict) -> dict:
        entry["seq"] = next(self.counter)
        with self.lock:
            self.recorded.append(entry)
        return entry

    def requests(self) -> list[dict]:
        with self.lock:
            return [dict(e) for e in self.recorded]

    def reset(self) -> None:
        with self.lock:
            self.faults.clear()
            self.llm_faults.clear()
            self.recorded.clear()
            self.files.clear()
            self.llm_reply = DEFAULT_LLM_REPLY
            self.exhausted = set()
        if self.partners is not None:
            self.partners.reset()

    def store_file(self, data: bytes) -> str:
        file_id = uuid.uuid4().hex
        with self.lock:
            self.files[file_id] = data
            while len(self.files) > 512:           # bounded: the benchmark makes many
                self.files.popitem(last=False)
        return file_id


def _state() -> FakeState:
    return current_app.extensions["fake_cloudflare"]


def _request_id() -> str:
    return uuid.uuid4().hex[:8]


# -- response helpers --------------------------------------------------------------------------

def _json(data: Any, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(data, separators=(",", ":")), status=status,
                    mimetype="application/json", headers=headers)


def cf_error(status: int, code: int, message: str, *, result: Any = None,
             headers: dict | None = None) -> Response:
    """Cloudflare's error envelope (§4)."""
    return _json({"result": result, "success": False,
                  "errors": [{"code": code, "message": message}], "messages": []}, status, headers)


def _openai_error(status: int, message: str, *, etype: str = "invalid_request_error",
                  param: str | None = None, code: str | None = None,
                  headers: dict | None = None) -> Response:
    """OpenAI's error envelope, for the OpenAI-style routes."""
    return _json({"error": {"message": message, "type": etype, "param": param, "code": code}},
                 status, headers)


def _bad_input(message: str) -> Response:
    return cf_error(400, 5006, f"AiError: Bad input: {message}", result={})


def _could_not_route(path: str) -> Response:
    shown = path if path.startswith(("/client/v4", "/gateway")) else "/client/v4" + path
    return cf_error(404, 7003, f"Could not route to {shown}, perhaps your object identifier "
                               "is invalid?")


def _auth_error() -> Response:
    # The exact 401 body from the reference (§4, S5).
    return cf_error(401, 10000, "Authentication error")


def _daily_allocation(code: int) -> Response:
    # Observed on REST (§4, X7): the duplicated "AiError: AiError:" prefix is real.
    prefix = "AiError: AiError: you" if code == 4006 else "AiError: Account limited: you"
    return cf_error(429, code, f"{prefix} have used up your daily free allocation of 10,000 "
                               "neurons, please upgrade to Cloudflare's Workers Paid plan if you "
                               f"would like to continue usage. ({uuid.uuid4()})", result={})


def _rate_limited() -> Response:
    # A per-minute overflow (§4 end, §6 "720 req/min"); no Workers AI body was captured, so it is
    # Cloudflare's API-wide rate-limit error (code 971) with a Retry-After header.
    return cf_error(429, 971, "Please wait and consider throttling your request speed: "
                              "rate limit of 720 requests per minute exceeded for this model",
                    headers={"Retry-After": str(RATE_LIMIT_RETRY_AFTER)})


def _drop_connection() -> Response:
    """Close the client's connection without an answer (a crashed upstream / proxy reset)."""
    sock = request.environ.get("werkzeug.socket") or request.environ.get("gunicorn.socket")
    if sock is None:
        # Flask's test client has no socket; there the "dropped connection" is an exception.
        raise ConnectionAbortedError("fake cloudflare: connection dropped on purpose")
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    # Writing this response fails with EPIPE, which werkzeug and gunicorn treat as a dropped
    # connection (silently); the client sees the connection closed with no status line.
    return Response(b"", status=500)


def _plain(status: int, text: str) -> Response:
    return Response(text, status=status, mimetype="text/plain")


_HTTP_TEXT = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
              504: "Gateway Timeout"}


def _image_fault(kind: str, path: str) -> Response | None:
    """The Workers AI answer for an injected fault, or None for "timeout" (handled by caller)."""
    if kind == "3030":
        # The exact observed body (§4, X6), with a fresh request id.
        return _json({"errors": [{"message": "AiError: AiError: Your output has been flagged. "
                                             "Please choose another prompt / input image "
                                             f"combination ({_request_id()})", "code": 3030}],
                      "success": False, "result": {}, "messages": []}, 400)
    if kind in ("4006", "3036"):
        return _daily_allocation(int(kind))
    if kind == "3040":
        # Observed body (§4, X13): no result/messages keys.
        return _json({"success": False, "errors": [{"code": 3040, "message": "Capacity "
                                                    "temporarily exceeded, please try again."}]},
                     429)
    if kind == "5006":
        return _bad_input("Additional or unevaluated properties '/width, /height' at '/' "
                          "not allowed")
    if kind == "10000":
        return _auth_error()
    if kind == "7003":
        return _could_not_route(path)
    if kind == "8008":
        return cf_error(500, 8008, "AiError: 8008: Internal server error", result={})
    if kind.isdigit() and int(kind) in _HTTP_TEXT:
        # No CF body for 5xx was ever captured (§4, §8.3): a bare text answer, like a proxy's.
        return _plain(int(kind), _HTTP_TEXT[int(kind)])
    if kind == "rate_limit":
        return _rate_limited()
    if kind == "malformed_json":
        return Response(b'{"result": {"image": ', mimetype="application/json")
    if kind == "no_image":
        return _json({"result": {}, "success": True, "errors": [], "messages": []})
    if kind == "not_image":
        junk = base64.b64encode(b"this is not an image").decode()
        return _json({"result": {"image": junk}, "success": True, "errors": [], "messages": []})
    if kind == "bad_base64":
        return _json({"result": {"image": "!!!not-base64!!!"}, "success": True, "errors": [],
                      "messages": []})
    if kind == "empty":
        return Response(b"", status=200, mimetype="application/json")
    if kind == "close":
        return _drop_connection()
    if kind == "trickle":
        return trickle()
    if kind == "huge":
        return huge()
    return None
