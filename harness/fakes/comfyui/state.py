"""The fake ComfyUI's state: files, queue, history, websocket clients, faults, and the worker
that "runs" prompts one at a time, as ComfyUI does, sending each prompt's events only to the
socket of its client id."""

from __future__ import annotations

import io
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from harness.fakes.comfyui.nodes import CHECKPOINTS

# Faults for the next prompts, in order (add_faults):
#   "execution_error": the KSampler raises (WS execution_error, history status "error");
#   "ws_drop": the client's socket is closed after execution_start (the backend must poll);
#   {"kind": "slow", "seconds": s}: each step of that prompt takes `s` seconds.
FAULTS = ("execution_error", "ws_drop", "slow")
CLOSE = object()          # put on a client's queue: its socket handler closes the socket


@dataclass
class Job:
    number: int
    prompt_id: str
    graph: dict[str, Any]
    client_id: str | None
    outputs: list[str]
    fault: dict[str, Any] = field(default_factory=dict)

    def entry(self) -> list:
        """The item /queue and /history show: [number, id, prompt, extra, outputs]."""
        return [self.number, self.prompt_id, self.graph, {"client_id": self.client_id},
                self.outputs]


class FakeComfyState:
    def __init__(self, step_seconds: float = 0.0):
        self.lock = threading.Condition()
        self.step_seconds = step_seconds
        self.log: list[dict[str, Any]] = []
        self.inputs: dict[str, bytes] = {}
        self.checkpoints: list[str] = list(CHECKPOINTS)    # what /object_info lists
        self.outputs: dict[str, bytes] = {}
        self.history: dict[str, dict[str, Any]] = {}
        self.pending: list[Job] = []
        self.running: Job | None = None
        self.interrupted: set[str] = set()
        self.sockets: dict[str, queue.SimpleQueue] = {}
        self.faults: list[dict[str, Any]] = []
        self.counter = 0
        self._stopped = False
        self._worker = threading.Thread(target=self._work, name="fake-comfyui", daemon=True)
        self._worker.start()

    # -- control -------------------------------------------------------------------------------

    def add_faults(self, *faults: str | dict) -> None:
        with self.lock:
            for fault in faults:
                entry = {"kind": fault} if isinstance(fault, str) else dict(fault)
                if entry["kind"] not in FAULTS:
                    raise ValueError(f"unknown fault {entry['kind']!r}; known: {FAULTS}")
                self.faults.append(entry)

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.log.append(entry)

    def requests(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.log)

    def reset(self) -> None:
        with self.lock:
            self.log.clear()
            self.faults.clear()
            self.pending.clear()
            self.history.clear()
            self.interrupted.clear()
            self.checkpoints = list(CHECKPOINTS)
            self.step_seconds = 0.0

    def stop(self) -> None:
        with self.lock:
            self._stopped = True
            self.lock.notify_all()

    # -- the queue -----------------------------------------------------------------------------

    def submit(self, graph: dict[str, Any], client_id: str | None, outputs: list[str],
               prompt_id: str | None = None) -> Job:
        with self.lock:
            self.counter += 1
            job = Job(self.counter, prompt_id or str(uuid.uuid4()), graph, client_id, outputs,
                      self.faults.pop(0) if self.faults else {})
            self.pending.append(job)
            self.lock.notify_all()
            return job

    def delete(self, ids: list[str]) -> None:
        with self.lock:
            self.pending = [job for job in self.pending if job.prompt_id not in ids]

    def interrupt(self, prompt_id: str | None) -> None:
        with self.lock:
            if self.running is not None and prompt_id in (None, self.running.prompt_id):
                self.interrupted.add(self.running.prompt_id)

    def upload(self, name: str, data: bytes, overwrite: bool) -> str:
        """Store an input file; a clash is renamed `x (1).png` unless identical or overwritten."""
        with self.lock:
            stem, dot, ext = name.rpartition(".")
            stem, ext = (stem, dot + ext) if dot else (name, "")
            candidate, i = name, 0
            while (not overwrite and candidate in self.inputs
                   and self.inputs[candidate] != data):
                i += 1
                candidate = f"{stem} ({i}){ext}"
            self.inputs[candidate] = data
            return candidate

    # -- events --------------------------------------------------------------------------------

    def send(self, client_id: str | None, kind: str, data: dict[str, Any] | bytes) -> None:
        """To the prompt's client's socket only, as ComfyUI does (nothing when none is open)."""
        with self.lock:
            target = self.sockets.get(client_id) if client_id else None
        if target is not None:
            target.put(data if isinstance(data, bytes) else {"type": kind, "data": data})

    def _work(self) -> None:
        while True:
            with self.lock:
                while not self.pending and not self._stopped:
                    self.lock.wait()
                if self._stopped:
                    return
                job = self.running = self.pending.pop(0)
            try:
                self._run(job)
            finally:
                with self.lock:
                    self.running = None

    def _run(self, job: Job) -> None:
        pid, cid, graph = job.prompt_id, job.client_id, job.graph
        messages: list[list] = []

        def event(kind: str, data: dict[str, Any]) -> None:
            data = {**data, "prompt_id": pid}
            if kind.startswith("execution"):
                messages.append([kind, {**data, "timestamp": int(time.time() * 1000)}])
            self.send(cid, kind, data)

        event("execution_start", {})
        if job.fault.get("kind") == "ws_drop":
            with self.lock:
                dropped = self.sockets.pop(cid, None) if cid else None
            if dropped is not None:
                dropped.put(CLOSE)
        sampler = next((nid for nid, n in graph.items() if n["class_type"] == "KSampler"), None)
        steps = int(graph[sampler]["inputs"]["steps"]) if sampler else 1
        seconds = float(job.fault.get("seconds", self.step_seconds))
        for step in range(1, steps + 1):
            if job.fault.get("kind") == "execution_error":
                event("execution_error", {"node_id": sampler, "node_type": "KSampler",
                                          "executed": [], "exception_message":
                                          "CUDA out of memory. Tried to allocate 2.00 GiB",
                                          "exception_type": "torch.OutOfMemoryError",
                                          "traceback": ["..."]})
                return self._done(job, {}, messages, "error")
            with self.lock:
                stop = pid in self.interrupted
            if stop:
                event("execution_interrupted", {"node_id": sampler, "node_type": "KSampler",
                                                "executed": []})
                return self._done(job, {}, messages, "error")
            if seconds:
                time.sleep(seconds)
            event("progress", {"value": step, "max": steps, "node": sampler})
            if step == 1:
                self.send(cid, "", b"\x00\x00\x00\x01\x00\x00\x00\x02preview")
        outputs: dict[str, Any] = {}
        for node_id in job.outputs:
            name = f"{graph[node_id]['inputs'].get('filename_prefix', 'ComfyUI')}_" \
                   f"{job.number:05d}_.png"
            with self.lock:
                self.outputs[name] = self._picture(graph)
            images = {"images": [{"filename": name, "subfolder": "", "type": "output"}]}
            outputs[node_id] = images
            event("executed", {"node": node_id, "output": images})
        self._done(job, outputs, messages, "success")
        event("executing", {"node": None})

    def _done(self, job: Job, outputs: dict, messages: list, status: str) -> None:
        with self.lock:
            self.history[job.prompt_id] = {
                "prompt": job.entry(), "outputs": outputs,
                "status": {"status_str": status, "completed": status == "success",
                           "messages": messages}}

    def _picture(self, graph: dict[str, Any]) -> bytes:
        """A PNG of the size the graph would make, coloured by its seed."""
        size = (512, 512)
        for node in graph.values():
            inputs = node["inputs"]
            if node["class_type"] in ("EmptyLatentImage", "ImageScale"):
                size = (int(inputs["width"]), int(inputs["height"]))
                break
            if node["class_type"] == "LoadImage":
                with self.lock:
                    data = self.inputs[inputs["image"]]
                with Image.open(io.BytesIO(data)) as source:
                    size = source.size
        seed = next((int(n["inputs"]["seed"]) for n in graph.values()
                     if n["class_type"] == "KSampler"), 0)
        colour = (seed % 251, (seed // 251) % 241, (seed // 60491) % 239)
        out = io.BytesIO()
        Image.new("RGB", size, colour).save(out, "PNG")
        return out.getvalue()
