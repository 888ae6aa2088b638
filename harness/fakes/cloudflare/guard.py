"""Moderation on the fake: Llama Guard on the Workers AI run route, and an OpenAI-compatible
`POST /v1/moderations` beside the fake LLM.

Strict like the real services: Llama Guard takes `messages` (roles `user`/`assistant` only,
string contents), `max_tokens` (integer >= 1), `temperature` (0..5) and `response_format`, and
nothing else; `/v1/moderations` needs the LLM key as Bearer and an `input` (a string or a list
of strings). A text is flagged when it holds a trigger word (case-insensitive):

    TRIGGERS: "forbiddenfruit" -> S12 sexual content / `sexual`
              "bloodbath"      -> S1 violent crimes   / `violence`
              "hatefulthing"   -> S10 hate            / `hate`

Control: `POST /_fake/moderation` `{"faults": ["500" | "timeout" | "malformed" | "401"],
"text": true}` queues faults for the next judgements (either route) and, with `text`, makes
Llama Guard answer with the model's own text ("unsafe\\nS12") instead of the object
`{"safe", "categories"}`. `GET /_fake/moderation` lists the texts judged so far;
`POST /_fake/reset` forgets both.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

from flask import Flask, Response, request

from harness.fakes.cloudflare.state import _json, _openai_error, _state, cf_error

GUARD_MODEL = "@cf/meta/llama-guard-3-8b"
TRIGGERS = {"forbiddenfruit": ("S12", "sexual"), "bloodbath": ("S1", "violence"),
            "hatefulthing": ("S10", "hate")}
OPENAI_CATEGORIES = ("sexual", "sexual/minors", "harassment", "harassment/threatening", "hate",
                     "hate/threatening", "illicit", "illicit/violent", "self-harm",
                     "self-harm/intent", "self-harm/instructions", "violence",
                     "violence/graphic")
FAULTS = ("500", "timeout", "malformed", "401")
GUARD_FIELDS = {"messages", "max_tokens", "temperature", "response_format"}


class GuardState:
    """Queued faults, the answer form, and the texts judged (for tests to read)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.faults: collections.deque = collections.deque()
        self.text = False
        self.judged: list[str] = []

    def reset(self) -> None:
        with self.lock:
            self.faults.clear()
            self.text = False
            self.judged.clear()

    def next_fault(self) -> str | None:
        with self.lock:
            return self.faults.popleft() if self.faults else None


GUARD = GuardState()


def reset_guard() -> None:
    """Forget queued faults and judged texts (the fake's /_fake/reset)."""
    GUARD.reset()


def _flags(text: str) -> list[tuple[str, str]]:
    lowered = text.lower()
    return [found for word, found in TRIGGERS.items() if word in lowered]


def guard_answer(body: Any) -> Response:
    """The run route's answer for Llama Guard (auth and account are checked by the caller)."""
    problem = _guard_problem(body)
    if problem:
        return cf_error(400, 5006, f"AiError: Bad input: {problem}", result={})
    text = "\n".join(m["content"] for m in body["messages"])
    fault = _fault()
    if fault is not None:
        if fault == "401":
            return cf_error(401, 10000, "Authentication error")
        return _faulted(fault, lambda: _json({"result": {"verdict": "?"}, "success": True,
                                              "errors": [], "messages": []}))
    GUARD.judged.append(text)
    codes = [code for code, _ in _flags(text)]
    if GUARD.text:
        response: Any = "safe" if not codes else "unsafe\n" + ",".join(codes)
    else:
        response = {"safe": not codes, "categories": codes}
    return _json({"result": {"response": response, "usage": {
        "prompt_tokens": len(text.split()) + 180, "completion_tokens": 4,
        "total_tokens": len(text.split()) + 184}}, "success": True, "errors": [],
        "messages": []})


def _guard_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "Type mismatch of '/', 'string' not in 'object'"
    extra = set(body) - GUARD_FIELDS
    if extra:
        return f"Additional or unevaluated properties '/{sorted(extra)[0]}' at '/' not allowed"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "Error: Missing required properties '/messages' at '/'"
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or set(message) != {"role", "content"}:
            return f"Error: '/messages/{i}' must have exactly 'role' and 'content'"
        if message["role"] not in ("user", "assistant"):
            return f"Error: '/messages/{i}/role' must be one of 'user', 'assistant'"
        if not isinstance(message["content"], str):
            return f"Type mismatch of '/messages/{i}/content', 'string' expected"
    max_tokens = body.get("max_tokens", 256)
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        return "Error: '/max_tokens' must be an integer >= 1"
    temperature = body.get("temperature", 0.6)
    if not isinstance(temperature, (int, float)) or not 0 <= temperature <= 5:
        return "Error: '/temperature' must be a number from 0 to 5"
    return None


def _fault() -> str | None:
    return GUARD.next_fault()


def _faulted(fault: str, malformed) -> Response:
    if fault == "timeout":
        time.sleep(_state().fault_sleep)
        return _json({"error": "too late"}, 504)
    if fault == "malformed":
        return malformed()
    return Response("upstream connect error", status=500, mimetype="text/plain")


def register(app: Flask) -> None:
    """Add `/v1/moderations` and the moderation controls to the fake's app."""

    @app.post("/v1/moderations")
    def moderations():
        st = _state()
        token = (request.headers.get("Authorization") or "").partition(" ")[2].strip()
        if token != st.llm_key:
            return _openai_error(401, "Incorrect API key provided.", code="invalid_api_key")
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or "input" not in body:
            return _openai_error(400, "you must provide an input", param="input")
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        if not inputs or not all(isinstance(i, str) for i in inputs):
            return _openai_error(400, "input must be a string or a list of strings",
                                 param="input")
        if "model" in body and not isinstance(body["model"], str):
            return _openai_error(400, "model must be a string", param="model")
        fault = _fault()
        if fault is not None:
            if fault == "401":
                return _openai_error(401, "Incorrect API key provided.", code="invalid_api_key")
            return _faulted(fault, lambda: _json({"id": "modr-1", "results": []}))
        results = []
        for text in inputs:
            GUARD.judged.append(text)
            named = {name for _, name in _flags(text)}
            results.append({"flagged": bool(named),
                            "categories": {c: c in named for c in OPENAI_CATEGORIES},
                            "category_scores": {c: 0.9 if c in named else 0.001
                                                for c in OPENAI_CATEGORIES}})
        return _json({"id": "modr-fake", "model": body.get("model", "omni-moderation-latest"),
                      "results": results})

    @app.post("/_fake/moderation")
    def configure_moderation():
        body = request.get_json(silent=True) or {}
        faults = list(body.get("faults") or [])
        if any(f not in FAULTS for f in faults):
            return _json({"error": f"faults must be among {FAULTS}"}, 400)
        with GUARD.lock:
            GUARD.faults.extend(faults)
            if "text" in body:
                GUARD.text = bool(body["text"])
        return _json({"pending": list(GUARD.faults), "text": GUARD.text})

    @app.get("/_fake/moderation")
    def judged_texts():
        return _json({"judged": list(GUARD.judged)})

