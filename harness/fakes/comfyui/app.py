"""The fake ComfyUI's routes (image-providers.md §4), each also under `/api/...` as ComfyUI's."""

from __future__ import annotations

import json
import queue
from typing import Any

from flask import Flask, Response, abort, jsonify, request
from flask_sock import Sock

from harness.fakes.comfyui.nodes import Refused, object_info, validate
from harness.fakes.comfyui.state import CLOSE, FakeComfyState

# How often a socket's handler looks whether the client has gone while no event comes.
_WS_TICK = 0.2


def make_app(step_seconds: float = 0.0) -> Flask:
    app = Flask("fake_comfyui")
    state = FakeComfyState(step_seconds)
    app.extensions["fake_comfyui"] = state
    sock = Sock(app)

    def route(path: str, **options: Any):
        def register(view):
            app.add_url_rule(path, view.__name__, view, **options)
            app.add_url_rule("/api" + path, "api_" + view.__name__, view, **options)
            return view
        return register

    @app.before_request
    def _log() -> None:
        if request.path.endswith("/ws"):
            return
        entry: dict[str, Any] = {"method": request.method, "path": request.path,
                                 "args": dict(request.args),
                                 "authorization_present": "Authorization" in request.headers}
        if request.is_json:
            entry["json"] = request.get_json(silent=True)
        if request.files:
            entry["files"] = {k: f.filename for k, f in request.files.items()}
            entry["form"] = dict(request.form)
        state.record(entry)

    @route("/prompt", methods=["POST"])
    def prompt():
        body = request.get_json(silent=True)
        graph = body.get("prompt") if isinstance(body, dict) else None
        try:
            with state.lock:
                files, checkpoints = list(state.inputs), list(state.checkpoints)
            outputs = validate(graph, object_info(files, checkpoints))
        except Refused as exc:
            return jsonify(exc.body), 400
        job = state.submit(graph, body.get("client_id"), outputs, body.get("prompt_id"))
        state.record({"kind": "queued", "prompt_id": job.prompt_id, "graph": graph,
                      "client_id": job.client_id})
        return jsonify({"prompt_id": job.prompt_id, "number": job.number, "node_errors": {}})

    @route("/prompt", methods=["GET"])
    def prompt_status():
        with state.lock:
            waiting = len(state.pending) + (state.running is not None)
        return jsonify({"exec_info": {"queue_remaining": waiting}})

    @route("/history/<prompt_id>")
    def history(prompt_id: str):
        with state.lock:
            entry = state.history.get(prompt_id)
        return jsonify({prompt_id: entry} if entry is not None else {})

    @route("/view")
    def view():
        name, kind = request.args.get("filename", ""), request.args.get("type", "output")
        sub = request.args.get("subfolder", "")
        if not name or ".." in name or ".." in sub or name.startswith("/") or \
                kind not in ("output", "input", "temp"):
            abort(400)
        key = f"{sub}/{name}" if sub else name
        with state.lock:
            data = (state.outputs if kind == "output" else state.inputs).get(key)
        if data is None:
            abort(404)
        return Response(data, mimetype="image/png")

    @route("/upload/image", methods=["POST"])
    def upload():
        image = request.files.get("image")
        if image is None or not image.filename:
            abort(400)
        if request.form.get("type", "input") != "input":
            abort(400)
        overwrite = request.form.get("overwrite", "").lower() in ("true", "1")
        name = state.upload(image.filename.replace("/", "_"), image.read(), overwrite)
        return jsonify({"name": name, "subfolder": "", "type": "input"})

    @route("/queue", methods=["GET"])
    def queue_view():
        with state.lock:
            running = [state.running.entry()] if state.running else []
            pending = [job.entry() for job in state.pending]
        return jsonify({"queue_running": running, "queue_pending": pending})

    @route("/queue", methods=["POST"])
    def queue_change():
        body = request.get_json(silent=True) or {}
        if body.get("clear"):
            with state.lock:
                ids = [job.prompt_id for job in state.pending]
            state.delete(ids)
        if isinstance(body.get("delete"), list):
            state.delete([str(i) for i in body["delete"]])
        return Response(status=200)

    @route("/interrupt", methods=["POST"])
    def interrupt():
        body = request.get_json(silent=True) or {}
        state.interrupt(body.get("prompt_id"))
        return Response(status=200)

    @route("/object_info")
    def objects():
        with state.lock:
            files, checkpoints = list(state.inputs), list(state.checkpoints)
        return jsonify(object_info(files, checkpoints))

    @route("/system_stats")
    def system_stats():
        return jsonify({"system": {"os": "posix", "comfyui_version": "fake"},
                        "devices": [{"name": "fake", "type": "cpu", "vram_free": 0}]})

    def ws(socket) -> None:
        client_id = request.args.get("clientId") or "anonymous"
        mailbox: queue.SimpleQueue = queue.SimpleQueue()
        with state.lock:
            state.sockets[client_id] = mailbox
            waiting = len(state.pending) + (state.running is not None)
        state.record({"kind": "ws", "client_id": client_id})
        socket.send(json.dumps({"type": "status", "data": {
            "status": {"exec_info": {"queue_remaining": waiting}}, "sid": client_id}}))
        try:
            while socket.connected:
                try:
                    item = mailbox.get(timeout=_WS_TICK)
                except queue.Empty:
                    continue
                if item is CLOSE:
                    break
                socket.send(item if isinstance(item, bytes) else json.dumps(item))
        finally:
            with state.lock:
                if state.sockets.get(client_id) is mailbox:
                    del state.sockets[client_id]
            socket.close()

    sock.route("/ws", endpoint="ws")(ws)
    sock.route("/api/ws", endpoint="api_ws")(ws)
    return app
