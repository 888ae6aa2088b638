"""A strict fake of Replicate's predictions API (image-providers.md §3 and the §5 checklist).

Written from the reference, independently of flux_worker. Routes (under `/v1`):

* `POST /v1/models/<owner>/<name>/predictions` with `{"input": {...}}`: Bearer required (401,
  RFC 7807); an unknown model is a 404, a bad input a 422 naming the field (schemas.py). With
  `Prefer: wait` (or `wait=N`, 1 <= N <= 60) the answer is held until the prediction ends or N
  seconds pass (or `max_hold`, a test's shorter stand-in for Replicate ending a hold early),
  then answered `starting`/`processing`; without the header, `starting` at once (201).
* `GET /v1/predictions/<id>`: the prediction, progressing on real time (`duration` seconds);
  `POST /v1/predictions/<id>/cancel` cancels one still running.
* `GET /files/<name>`: the output files, on this fake's own host; after a fake hour
  (`advance_clock`) they are 404 and the prediction says `data_removed: true`.

`output` is a list for flux-schnell and flux-dev and one link for the others. Faults, queued
FIFO and taken by the next create: "429" (Retry-After), "402", "422" (an input the model's
current version refuses), "500", "failed", "nsfw" (the
prediction fails with a safety-checker message), "slow" (`seconds` long), "foreign_host" (the
output link is on a host the service must not fetch). Every request is logged (`requests()`).
"""

from __future__ import annotations

import io
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, request
from PIL import Image

from harness.fakes.replicate.schemas import MODELS, Invalid, output_size, validate

TOKEN = "r8_fake-replicate-token-0001"
FILE_LIFETIME = 3600              # seconds (fake clock) before files and outputs are removed
HOLD_MAX = 60                     # the longest `Prefer: wait=N`
FAULTS = ("429", "402", "422", "500", "failed", "nsfw", "slow", "foreign_host")
NSFW_ERROR = ("NSFW content detected. Try running it again, or try a different prompt.")
_PIL = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}


@dataclass
class Prediction:
    id: str
    model: str
    input: dict
    created: float                              # time.monotonic()
    duration: float
    size: tuple[int, int]
    fmt: str
    count: int
    outcome: str = "succeeded"                  # or "failed", "nsfw" (fails when done)
    foreign: bool = False
    canceled: bool = False
    polled: bool = False                        # a GET has seen it (it is `processing` then)
    finished_clock: float | None = None         # the fake clock when it ended
    files: list[str] = field(default_factory=list)


class ReplicateState:
    """Predictions, files, faults and the request log; one lock guards them."""

    def __init__(self, token: str = TOKEN, duration: float = 0.2):
        self.token = token
        self.duration = duration
        self.max_hold = float(HOLD_MAX)
        self.lock = threading.Lock()
        self.clock = 0.0
        self.predictions: dict[str, Prediction] = {}
        self.files: dict[str, tuple[float, bytes, str]] = {}
        self.faults: list[dict] = []
        self.log: list[dict] = []

    def add_faults(self, faults: list) -> None:
        parsed = [{"kind": str(f)} if isinstance(f, (str, int)) else dict(f) for f in faults]
        for fault in parsed:
            if fault["kind"] not in FAULTS:
                raise ValueError(f"unknown fault {fault!r}; known: {', '.join(FAULTS)}")
        with self.lock:
            self.faults.extend(parsed)

    def record(self, entry: dict) -> dict:
        entry.update(time=time.time(), status=None)
        with self.lock:
            self.log.append(entry)
        return entry

    def reset(self) -> None:
        with self.lock:
            self.predictions.clear()
            self.files.clear()
            self.faults.clear()
            self.log.clear()
            self.clock = 0.0
            self.max_hold = float(HOLD_MAX)


def problem(status: int, title: str, detail: str, headers: dict | None = None,
            **more: Any) -> Response:
    """An RFC 7807 answer, as Replicate's errors are."""
    body = {"type": f"https://replicate.com/docs/errors#{status}", "title": title,
            "status": status, "detail": detail, **more}
    return Response(json.dumps(body), status=status, headers=headers or {},
                    mimetype="application/problem+json")


def make_app(state: ReplicateState) -> Flask:
    app = Flask("fake_replicate")
    app.extensions["fake_replicate"] = state

    def authorized() -> bool:
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        return scheme == "Bearer" and token == state.token

    def unauthenticated() -> Response:
        return problem(401, "Unauthenticated", "You did not pass a valid authentication token")

    def finish(entry: dict, resp: Response) -> Response:
        entry["status"] = resp.status_code
        return resp

    @app.post("/v1/models/<owner>/<name>/predictions")
    def create(owner: str, name: str):
        body = request.get_json(silent=True)
        model_name = f"{owner}/{name}"
        entry = state.record({"kind": "create", "model": model_name, "json": body,
                              "prefer": request.headers.get("Prefer"),
                              "authorization": request.headers.get("Authorization")})
        if not authorized():
            return finish(entry, unauthenticated())
        model = MODELS.get(model_name)
        if model is None:
            return finish(entry, problem(404, "Not found",
                                         "The requested resource could not be found."))
        hold = _hold(request.headers.get("Prefer"))
        if isinstance(hold, Response):
            return finish(entry, hold)
        if not isinstance(body, dict) or set(body) - {"input", "webhook",
                                                       "webhook_events_filter", "stream"}:
            return finish(entry, problem(422, "Invalid request body",
                                         "The body must be an object with `input` only."))
        try:
            images = validate(model, body.get("input"))
        except Invalid as exc:
            return finish(entry, problem(422, "Input validation failed", str(exc),
                                         invalid_fields=[{"field": exc.field,
                                                          "description": str(exc)}]))
        with state.lock:
            fault = state.faults.pop(0) if state.faults else {}
        kind = fault.get("kind")
        if kind == "429":
            return finish(entry, problem(
                429, "Request was throttled",
                "Request was throttled. Expected available in 2 seconds.",
                headers={"Retry-After": str(fault.get("retry_after", 2))}))
        if kind == "402":
            return finish(entry, problem(402, "Insufficient credit",
                                         "You have insufficient credit to run this model."))
        if kind == "422":
            return finish(entry, problem(422, "Input validation failed",
                                         "prompt: the prompt is longer than this version takes",
                                         invalid_fields=[{"field": "prompt"}]))
        if kind == "500":
            return finish(entry, problem(500, "Internal server error", "Something went wrong."))
        fields = body["input"]
        prediction = Prediction(
            id=secrets.token_hex(13), model=model_name, input=fields, created=time.monotonic(),
            duration=float(fault.get("seconds", 30)) if kind == "slow" else state.duration,
            size=output_size(model, fields, images),
            fmt=fields.get("output_format", "png" if "input_image" in model.fields else "webp"),
            count=fields.get("num_outputs", 1) if model.list_output else 1,
            outcome=kind if kind in ("failed", "nsfw") else "succeeded",
            foreign=kind == "foreign_host")
        with state.lock:
            state.predictions[prediction.id] = prediction
        entry["prediction"] = prediction.id
        if hold:
            until = time.monotonic() + min(hold, state.max_hold)
            while time.monotonic() < until and _status(state, prediction) in RUNNING:
                time.sleep(0.02)
        return finish(entry, _answer(state, prediction, 201))

    def known(kind: str, pid: str) -> tuple[dict, Any, Response | None]:
        """Record a call on prediction `pid`; the prediction, or the answer refusing the call."""
        entry = state.record({"kind": kind, "prediction": pid,
                              "authorization": request.headers.get("Authorization")})
        if not authorized():
            return entry, None, finish(entry, unauthenticated())
        prediction = state.predictions.get(pid)
        if prediction is None:
            return entry, None, finish(entry, problem(
                404, "Not found", "The requested resource could not be found."))
        return entry, prediction, None

    @app.get("/v1/predictions/<pid>")
    def get(pid: str):
        entry, prediction, refused = known("get", pid)
        if refused is not None:
            return refused
        answer = _answer(state, prediction, 200)
        prediction.polled = True
        return finish(entry, answer)

    @app.post("/v1/predictions/<pid>/cancel")
    def cancel(pid: str):
        entry, prediction, refused = known("cancel", pid)
        if refused is not None:
            return refused
        if _status(state, prediction) in RUNNING:
            with state.lock:
                prediction.canceled = True
                prediction.finished_clock = state.clock
        return finish(entry, _answer(state, prediction, 200))

    @app.get("/files/<name>")
    def files(name: str):
        entry = state.record({"kind": "file", "file": name,
                              "authorization": request.headers.get("Authorization")})
        with state.lock:
            stored = state.files.get(name)
            alive = stored is not None and state.clock - stored[0] < FILE_LIFETIME
        if not alive:
            return finish(entry, Response("Not found", status=404, mimetype="text/plain"))
        assert stored is not None
        return finish(entry, Response(stored[1], mimetype=stored[2]))

    return app


RUNNING = ("starting", "processing")


def _hold(prefer: str | None) -> float | Response:
    """Seconds `Prefer: wait[=N]` asks to hold (0 without it), or a 400 for a bad value."""
    if prefer is None:
        return 0.0
    value = prefer.strip()
    if value == "wait":
        return float(HOLD_MAX)
    if value.startswith("wait=") and value[5:].isdigit() and 1 <= int(value[5:]) <= HOLD_MAX:
        return float(value[5:])
    return problem(400, "Invalid Prefer header",
                   f"Prefer must be `wait` or `wait=N` with N from 1 to {HOLD_MAX}.")


def _status(state: ReplicateState, prediction: Prediction) -> str:
    """Where the prediction is now; makes its files when it has just succeeded."""
    if prediction.canceled:
        return "canceled"
    age = time.monotonic() - prediction.created
    if age < prediction.duration:
        # Booting until first looked at, then running: each poll sees progress.
        return "processing" if prediction.polled or age >= prediction.duration / 2 \
            else "starting"
    with state.lock:
        if prediction.finished_clock is None:
            prediction.finished_clock = state.clock
            if prediction.outcome == "succeeded":
                prediction.files = [_store(state, prediction, i)
                                    for i in range(prediction.count)]
    return "succeeded" if prediction.outcome == "succeeded" else "failed"


def _store(state: ReplicateState, prediction: Prediction, index: int) -> str:
    """Draw one output file (state.lock held) and return its name."""
    out = io.BytesIO()
    shade = (len(prediction.input.get("prompt", "")) * 37 + index * 90) % 256
    Image.new("RGB", prediction.size, (shade, 90, 160)).save(out, _PIL[prediction.fmt])
    name = f"{prediction.id}-{index}.{prediction.fmt}"
    kind = "image/jpeg" if prediction.fmt == "jpg" else f"image/{prediction.fmt}"
    state.files[name] = (state.clock, out.getvalue(), kind)
    return name


def _answer(state: ReplicateState, prediction: Prediction, code: int) -> Response:
    status = _status(state, prediction)
    base = request.host_url.rstrip("/")
    own = f"{base}/v1/predictions/{prediction.id}"
    with state.lock:
        removed = (prediction.finished_clock is not None
                   and state.clock - prediction.finished_clock >= FILE_LIFETIME)
    host = "http://files.invalid" if prediction.foreign else base
    links = [f"{host}/files/{name}" for name in prediction.files]
    output: Any = None
    if status == "succeeded" and not removed:
        output = links if MODELS[prediction.model].list_output else links[0]
    error = None
    if status == "failed":
        error = (NSFW_ERROR if prediction.outcome == "nsfw"
                 else "Prediction failed: the model crashed")
    body = {"id": prediction.id, "model": prediction.model, "version": "hidden",
            "input": {} if removed else prediction.input, "logs": "", "output": output,
            "data_removed": removed, "error": error, "status": status,
            "created_at": "2025-01-01T00:00:00.000Z",
            "urls": {"get": own, "cancel": own + "/cancel", "stream": own + "/stream",
                     "web": f"https://replicate.com/p/{prediction.id}"},
            "metrics": {"predict_time": prediction.duration} if status == "succeeded" else {}}
    return Response(json.dumps(body), status=code, mimetype="application/json")
