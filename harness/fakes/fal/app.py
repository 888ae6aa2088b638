"""The fake fal: its state (jobs, files, faults, the request log) and its routes.

Routes (FAL_API_BASE = `{url}/sync`, FAL_QUEUE_BASE = `{url}/queue`; the file host is `{url}`):

    POST /sync/<endpoint>                          the synchronous call: the output JSON
    POST /queue/<endpoint>                         submit: {request_id, status_url, ...}
    GET  /queue/<owner>/<app>/requests/<id>/status IN_QUEUE -> IN_PROGRESS -> COMPLETED
    GET  /queue/<owner>/<app>/requests/<id>        the result (400 until COMPLETED)
    PUT  /queue/<owner>/<app>/requests/<id>/cancel 202 while queued, else 400
    GET  /files/<id>.<ext>                         result files (fal's `/files/...` path)
    /_fake/faults, /_fake/requests, /_fake/reset   control

The queue's URLs drop the endpoint's subpath (`fal-ai/flux/dev` -> `fal-ai/flux/requests/..`),
as fal's do: a client that rebuilds them with the subpath gets a 404. A job moves one state per
status poll (IN_QUEUE, then IN_PROGRESS, then COMPLETED), unless a fault holds it; `logs` are
in the status only with `?logs=1`.
"""

from __future__ import annotations

import base64
import io
import threading
import time
import uuid
from typing import Any

from flask import Flask, Response, jsonify, request
from PIL import Image

from harness.fakes.fal.schemas import ENDPOINTS, Invalid, image_link, output_size

DEFAULT_FAL_KEY = "fal-test-id:fal-test-secret"
FAULTS = ("429", "504", "startup_timeout", "503", "no_credit", "nsfw", "held", "slow",
          "detail_string")
HELD_SECONDS = 30.0          # how long a "held" job stays queued unless cancelled
_ERRORS = {  # fault -> (status, detail, error_type)
    "504": (504, "Request timed out", "request_timeout"),
    "startup_timeout": (504, "The runner did not start in time", "startup_timeout"),
    "503": (503, "No runner is available", "runner_unavailable"),
}


class FalState:
    """Jobs, result files, queued faults and every request seen; one lock for all."""

    def __init__(self, key: str):
        self.key = key
        self.lock = threading.Lock()
        self.jobs: dict[str, dict] = {}
        self.files: dict[str, tuple[bytes, str]] = {}
        self.faults: list[dict] = []
        self.log: list[dict] = []

    def add_faults(self, faults: list) -> None:
        parsed = []
        for fault in faults:
            fault = {"kind": str(fault)} if isinstance(fault, (str, int)) else dict(fault)
            if fault.get("kind") not in FAULTS:
                raise ValueError(f"unknown fal fault {fault!r}; known: " + ", ".join(FAULTS))
            parsed.append(fault)
        with self.lock:
            self.faults.extend(parsed)

    def pop_fault(self) -> dict | None:
        with self.lock:
            return self.faults.pop(0) if self.faults else None

    def record(self, **entry: Any) -> dict:
        entry.setdefault("time", time.monotonic())
        with self.lock:
            self.log.append(entry)
        return entry

    def requests(self) -> list[dict]:
        with self.lock:
            return [dict(entry) for entry in self.log]

    def reset(self) -> None:
        with self.lock:
            self.jobs.clear()
            self.files.clear()
            self.faults.clear()
            self.log.clear()


def fal_error(status: int, detail: Any, error_type: str | None = None) -> Response:
    body: dict[str, Any] = {"detail": detail}
    if error_type:
        body["error_type"] = error_type
    resp = jsonify(body)
    resp.status_code = status
    if error_type:
        resp.headers["X-Fal-Error-Type"] = error_type
    if status == 422:
        resp.headers["X-Fal-Retryable"] = "false"
    return resp


def _picture(width: int, height: int, prompt: str, fmt: str, black: bool) -> bytes:
    shade = (0, 0, 0) if black else tuple(40 + (hash(prompt) >> s) % 180 for s in (0, 8, 16))
    out = io.BytesIO()
    Image.new("RGB", (width, height), shade).save(out, "PNG" if fmt == "png" else "JPEG")
    return out.getvalue()


def _input_size(body: dict) -> tuple[int, int] | None:
    first = body.get("image_url") or (body.get("image_urls") or [None])[0]
    data = image_link("image", first) if isinstance(first, str) else None
    if data is None:
        return None
    with Image.open(io.BytesIO(data)) as img:
        return img.size


def make_app(*, key: str = DEFAULT_FAL_KEY) -> Flask:
    """The fake fal as a Flask app; its state is `app.extensions["fake_fal"]`."""
    app = Flask("fake_fal")
    state = FalState(key)
    app.extensions["fake_fal"] = state

    def authorized() -> Response | None:
        header = request.headers.get("Authorization", "")
        if header != f"Key {state.key}":
            return fal_error(401, "Invalid API key: use `Authorization: Key <FAL_KEY>`")
        return None

    def checked(endpoint: str) -> tuple[dict | None, Response | None]:
        schema = ENDPOINTS.get(endpoint)
        if schema is None:
            return None, fal_error(404, f"Application '{endpoint}' not found")
        body = request.get_json(silent=True)
        problems = schema.validate(body)
        if problems:
            return None, fal_error(422, [p.detail() for p in problems])
        return body, None

    def output(endpoint: str, body: dict, fault: dict | None) -> dict:
        """fal's output for `body`: the picture stored on the file host (or a data URI)."""
        try:
            size = output_size(endpoint, body, _input_size(body))
        except Invalid:
            size = (1024, 768)
        fmt = body.get("output_format", "jpeg")
        nsfw = bool(fault and fault["kind"] == "nsfw")
        data = _picture(*size, body["prompt"], fmt, black=nsfw)
        mimetype = f"image/{fmt}"
        if body.get("sync_mode"):
            url = f"data:{mimetype};base64," + base64.b64encode(data).decode("ascii")
        else:
            file_id = uuid.uuid4().hex
            with state.lock:
                state.files[file_id] = (data, mimetype)
            url = f"{request.host_url}files/{file_id}.{'png' if fmt == 'png' else 'jpg'}"
        return {"images": [{"url": url, "width": size[0], "height": size[1],
                            "content_type": mimetype}],
                "seed": body.get("seed", 42), "has_nsfw_concepts": [nsfw],
                "timings": {"inference": 0.01}, "prompt": body["prompt"]}

    def refusal(fault: dict | None) -> Response | None:
        """The answer a fault makes at once (sync call or submit), if it does."""
        kind = fault["kind"] if fault else None
        if kind == "429":
            return fal_error(429, "Concurrent request limit reached")
        if kind == "no_credit":
            return fal_error(403, "User is locked. Reason: Exhausted balance. Top up your "
                                  "balance at fal.ai/dashboard/billing.")
        if kind == "detail_string":
            return fal_error(422, "The prompt could not be processed by this model")
        return None

    @app.post("/sync/<path:endpoint>")
    def sync_run(endpoint: str):
        entry = state.record(kind="sync", endpoint=endpoint, json=request.get_json(silent=True),
                             timeout=request.headers.get("X-Fal-Request-Timeout"),
                             status=None)
        answer = authorized() or _sync(endpoint)
        entry["status"] = answer.status_code
        return answer

    def admitted(endpoint: str) -> tuple[dict | None, dict | None, Response | None]:
        """The body and the fault of a sync call or a submit, or the answer refusing it."""
        body, problem = checked(endpoint)
        if problem is not None:
            return None, None, problem
        fault = state.pop_fault()
        return body, fault, refusal(fault)

    def _sync(endpoint: str) -> Response:
        body, fault, refused = admitted(endpoint)
        if refused is not None:
            return refused
        kind = fault["kind"] if fault else None
        limit = float(request.headers.get("X-Fal-Request-Timeout") or 3600)
        if kind in ("held", "slow"):
            takes = float(fault.get("seconds", HELD_SECONDS if kind == "held" else 1.0))
            time.sleep(min(takes, limit))
            if takes > limit:
                return fal_error(504, "Request timed out", "request_timeout")
        if kind in _ERRORS:
            return fal_error(*_ERRORS[kind])
        assert body is not None
        return jsonify(output(endpoint, body, fault))

    @app.post("/queue/<path:endpoint>")
    def submit(endpoint: str):
        entry = state.record(kind="submit", endpoint=endpoint,
                             json=request.get_json(silent=True), status=None)
        answer = authorized() or _submit(endpoint)
        entry["status"] = answer.status_code
        return answer

    def _submit(endpoint: str) -> Response:
        body, fault, refused = admitted(endpoint)
        if refused is not None:
            return refused
        assert body is not None
        request_id = str(uuid.uuid4())
        owner_app = "/".join(endpoint.split("/")[:2])     # the subpath is dropped
        base = f"{request.host_url}queue/{owner_app}/requests/{request_id}"
        with state.lock:
            state.jobs[request_id] = {"endpoint": endpoint, "app": owner_app, "body": body,
                                      "fault": fault, "polls": 0, "state": "IN_QUEUE",
                                      "since": time.monotonic(), "output": None,
                                      "error": None, "cancelled": False}
        return jsonify({"request_id": request_id, "status_url": base + "/status",
                        "response_url": base, "cancel_url": base + "/cancel",
                        "queue_position": 0})

    def job_of(owner: str, app_name: str, request_id: str) -> dict | None:
        with state.lock:
            job = state.jobs.get(request_id)
        return job if job is not None and job["app"] == f"{owner}/{app_name}" else None

    def advance(job: dict) -> None:
        """One status poll's step of the job's life (under no lock: one poller per job)."""
        fault = job["fault"]
        kind = fault["kind"] if fault else None
        job["polls"] += 1
        if job["state"] == "IN_QUEUE":
            held = kind == "held" and time.monotonic() - job["since"] < float(
                fault.get("seconds", HELD_SECONDS))
            if not held and not job["cancelled"] and job["polls"] >= 2:
                job["state"], job["since"] = "IN_PROGRESS", time.monotonic()
        elif job["state"] == "IN_PROGRESS":
            if kind == "slow" and time.monotonic() - job["since"] < float(
                    fault.get("seconds", 1.0)):
                return
            job["state"] = "COMPLETED"
            if kind in _ERRORS:
                job["error"] = _ERRORS[kind]
            else:
                job["output"] = output(job["endpoint"], job["body"], fault)

    @app.get("/queue/<owner>/<app_name>/requests/<request_id>/status")
    def status(owner: str, app_name: str, request_id: str):
        entry = state.record(kind="status", request_id=request_id, status=None)
        answer = authorized() or _status(owner, app_name, request_id)
        entry["status"] = answer.status_code
        return answer

    def _status(owner: str, app_name: str, request_id: str) -> Response:
        job = job_of(owner, app_name, request_id)
        if job is None:
            return fal_error(404, "Request not found")
        advance(job)
        body: dict[str, Any] = {"status": job["state"], "request_id": request_id}
        if job["state"] == "IN_QUEUE":
            body["queue_position"] = 0
        if request.args.get("logs") == "1" and job["state"] != "IN_QUEUE":
            body["logs"] = [{"message": "Generating", "level": "INFO"}]
        if job["state"] == "COMPLETED":
            body["metrics"] = {"inference_time": 0.01}
            if job["error"] is not None:
                _, body["error"], body["error_type"] = job["error"]
            elif job["cancelled"]:
                body["error"] = "Request was cancelled"
        return jsonify(body)

    @app.get("/queue/<owner>/<app_name>/requests/<request_id>")
    def result(owner: str, app_name: str, request_id: str):
        entry = state.record(kind="result", request_id=request_id, status=None)
        answer = authorized() or _result(owner, app_name, request_id)
        entry["status"] = answer.status_code
        return answer

    def _result(owner: str, app_name: str, request_id: str) -> Response:
        job = job_of(owner, app_name, request_id)
        if job is None:
            return fal_error(404, "Request not found")
        if job["state"] != "COMPLETED":
            return fal_error(400, "Request is still in progress")
        if job["error"] is not None:
            return fal_error(*job["error"])
        return jsonify(job["output"])

    @app.put("/queue/<owner>/<app_name>/requests/<request_id>/cancel")
    def cancel(owner: str, app_name: str, request_id: str):
        entry = state.record(kind="cancel", request_id=request_id, status=None)
        answer = authorized() or _cancel(owner, app_name, request_id)
        entry["status"] = answer.status_code
        return answer

    def _cancel(owner: str, app_name: str, request_id: str) -> Response:
        job = job_of(owner, app_name, request_id)
        if job is None:
            return fal_error(404, "Request not found")
        if job["state"] != "IN_QUEUE":
            # fal cancels only what has not started.
            resp = jsonify({"status": "ALREADY_COMPLETED"
                            if job["state"] == "COMPLETED" else "IN_PROGRESS"})
            resp.status_code = 400
            return resp
        job["cancelled"], job["state"] = True, "COMPLETED"
        resp = jsonify({"status": "CANCELLATION_REQUESTED"})
        resp.status_code = 202
        return resp

    @app.route("/queue/<path:rest>", methods=["GET", "PUT"])
    def not_a_job(rest: str):
        # A job URL rebuilt with the endpoint's subpath, or any other path: fal knows none.
        return authorized() or fal_error(404, "Request not found")

    @app.get("/files/<name>")
    def files(name: str):
        state.record(kind="file", name=name,
                     authorization_present="Authorization" in request.headers, status=None)
        with state.lock:
            found = state.files.get(name.rsplit(".", 1)[0])
        if found is None:
            return Response("not found", status=404)
        return Response(found[0], mimetype=found[1])

    @app.post("/_fake/faults")
    def add_faults():
        try:
            state.add_faults(list((request.get_json(silent=True) or {}).get("faults") or []))
        except ValueError as exc:
            return fal_error(400, str(exc))
        return jsonify({"ok": True})

    @app.get("/_fake/requests")
    def recorded():
        return jsonify(state.requests())

    @app.post("/_fake/reset")
    def reset():
        state.reset()
        return jsonify({"ok": True})

    return app
