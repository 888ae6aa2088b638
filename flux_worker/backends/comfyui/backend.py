"""Drawing with a ComfyUI workflow: upload, submit, follow, fetch.

1. Input images (an edit workflow's picture and mask) go up with POST /upload/image; ComfyUI
   answers the name it stored them under (renamed on a clash), which LoadImage then loads.
2. The websocket of a fresh client id opens (watch.py), then POST /prompt submits the filled
   graph (graph.py) with that client id.
3. Its events are followed to the end, progress passed on; a socket that fails leaves the
   wait to /history polling. Then GET /history/{id} names the output node's first image,
   and GET /view brings its bytes.

COMFYUI_URL is the operator's own server, trusted as given (usually a private address, so no
SSRF rule applies) and sent no credentials. UPSTREAM_TIMEOUT bounds the whole of it. A caller
who has gone stops the prompt: interrupted when it runs, deleted from the queue when it waits.
One image per call (the pipeline asks once per image of `n`, in parallel): each is its own
prompt with its own seed, so a failure, a fallback or a cancel concerns one image only.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

import requests

from ...catalog.comfyui import Workflow
from ...errors import Cancelled, UpstreamError, UpstreamTimeout, raise_if_cancelled
from ...generation import fitting
from ...generation.backend import GeneratedImage, GenerationRequest
from ...net.upstream import Answer, UpstreamProblem, call
from .failures import as_dict, execution_failed, prompt_refused, short, unreachable
from .graph import fill
from .watch import Outcome, Socket

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
# How often /history is asked while no websocket follows the prompt.
POLL_SECONDS = 0.5
# A cancel's own calls: short, so a client that left is not waited for.
CANCEL_TIMEOUT = 5.0
# The output's bytes, and ComfyUI's JSON answers (a history entry repeats the graph).
MAX_IMAGE_BYTES = 50 * 1024 * 1024
MAX_JSON_BYTES = 4 * 1024 * 1024


class ComfyUIBackend:
    """Generates images with the operator's ComfyUI workflows."""

    name = "comfyui"

    def __init__(self, *, url: str, workflows: tuple[Workflow, ...], session: requests.Session,
                 timeout: float = 120.0, poll_seconds: float = POLL_SECONDS):
        self.url = url.rstrip("/")
        self.workflows = {workflow.model_id: workflow for workflow in workflows}
        self.timeout = float(timeout)
        self.poll_seconds = poll_seconds
        self._session = session

    def __repr__(self) -> str:
        return f"ComfyUIBackend(url={self.url!r}, workflows={sorted(self.workflows)!r})"

    def generate(self, request: GenerationRequest) -> GeneratedImage:
        """Run the request's workflow once; return the first image of its output node."""
        deadline = time.monotonic() + self.timeout
        workflow = self.workflows[request.model.id]
        raise_if_cancelled(request.cancel)
        uploads = self._upload(request, workflow, deadline)
        graph = fill(workflow, request, uploads)
        client_id = uuid.uuid4().hex
        socket = Socket(self.url, client_id, min(CONNECT_TIMEOUT, self._left(deadline)))
        try:
            raise_if_cancelled(request.cancel)
            prompt_id = self._submit(workflow, graph, client_id, deadline)
            followed = socket.follow(
                prompt_id, deadline, request.cancel, request.progress,
                finished=lambda: self._history(prompt_id, deadline) is not None)
        finally:
            socket.close()
        entry = self._finish(workflow, prompt_id, followed.outcome, followed.error, deadline,
                             request.cancel)
        return self._output(workflow, entry, deadline)

    # -- the steps ---------------------------------------------------------------------------

    def _call(self, method: str, path: str, deadline: float, step: str, *,
              max_bytes: int = MAX_JSON_BYTES, **kwargs: Any) -> Answer:
        try:
            return call(self._session, method, self.url + path, timeout=self._left(deadline),
                        max_bytes=max_bytes, connect_timeout=CONNECT_TIMEOUT, **kwargs)
        except UpstreamProblem as exc:
            raise UpstreamError(f"ComfyUI's answer ({step}) was refused: {exc}.") from exc
        except requests.RequestException as exc:
            raise unreachable(exc, step) from exc

    def _left(self, deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise UpstreamTimeout(f"ComfyUI did not finish within UPSTREAM_TIMEOUT "
                                  f"({self.timeout:g} s). Try again, or pick another model.")
        return left

    def _upload(self, request: GenerationRequest, workflow: Workflow,
                deadline: float) -> dict[str, str]:
        """Upload the edit's image (and mask); return the names LoadImage must use."""
        files: dict[str, bytes] = {}
        if workflow.map.inputs.image is not None and request.images:
            files["image"] = request.images[0].data
        if workflow.map.inputs.mask is not None and request.mask is not None:
            files["mask"] = request.mask
        names: dict[str, str] = {}
        for what, data in files.items():
            raise_if_cancelled(request.cancel)
            # A name of our own; ComfyUI still renames on a clash, so its answer is what counts.
            wanted = f"flux-worker-{uuid.uuid4().hex}-{what}.png"
            answer = self._call("POST", "/upload/image", deadline, f"uploading the {what}",
                                files={"image": (wanted, data, "image/png")},
                                data={"type": "input"})
            body = self._json(answer, "the upload")
            if answer.status_code != 200 or not isinstance(body.get("name"), str):
                raise UpstreamError(f"ComfyUI did not take the input {what} (HTTP "
                                    f"{answer.status_code}: {short(answer.text)}).")
            subfolder = body.get("subfolder") or ""
            names[what] = f"{subfolder}/{body['name']}" if subfolder else body["name"]
        return names

    def _submit(self, workflow: Workflow, graph: dict[str, Any], client_id: str,
                deadline: float) -> str:
        answer = self._call("POST", "/prompt", deadline, "submitting the workflow",
                            json={"prompt": graph, "client_id": client_id})
        if answer.status_code != 200:
            raise prompt_refused(workflow, answer)
        body = self._json(answer, "the submission")
        prompt_id = body.get("prompt_id")
        if not isinstance(prompt_id, str) or not prompt_id:
            raise UpstreamError("ComfyUI took the workflow but named no prompt_id.")
        log.debug("comfyui %s: prompt %s queued as number %s", workflow.model_id, prompt_id,
                  body.get("number"))
        return prompt_id

    def _finish(self, workflow: Workflow, prompt_id: str, outcome: Outcome,
                error: dict[str, Any], deadline: float,
                cancel: threading.Event | None) -> dict[str, Any]:
        """The prompt's /history entry, once it has ended; raise on a failure or cancel."""
        if outcome is Outcome.FAILED:
            raise execution_failed(workflow, error)
        if outcome is Outcome.INTERRUPTED:
            raise UpstreamError(f"The workflow {workflow.model_id} was interrupted on ComfyUI "
                                "before it finished. Try again.")
        if outcome is Outcome.CANCELLED:
            self.stop(prompt_id)
            raise_if_cancelled(cancel)
        if outcome is Outcome.EXPIRED:
            self.stop(prompt_id)        # nobody will collect it: free the GPU
            self._left(deadline)
        while True:                      # DONE (the entry is written by then), or LOST: poll
            entry = self._history(prompt_id, deadline)
            if entry is not None:
                return self._checked(workflow, entry)
            if cancel is not None and cancel.is_set():
                self.stop(prompt_id)
                raise_if_cancelled(cancel)
            time.sleep(min(self.poll_seconds, max(0.0, deadline - time.monotonic())))
            try:
                self._left(deadline)
            except UpstreamTimeout:
                self.stop(prompt_id)
                raise

    def _history(self, prompt_id: str, deadline: float) -> dict[str, Any] | None:
        answer = self._call("GET", f"/history/{prompt_id}", deadline, "reading the history")
        if answer.status_code != 200:
            raise UpstreamError(f"ComfyUI's history answered HTTP {answer.status_code}.")
        entry = self._json(answer, "the history").get(prompt_id)
        return entry if isinstance(entry, dict) else None   # {} until the prompt is done

    @staticmethod
    def _checked(workflow: Workflow, entry: dict[str, Any]) -> dict[str, Any]:
        status = as_dict(entry.get("status"))
        if status.get("status_str") == "error":
            messages = status.get("messages")
            messages = messages if isinstance(messages, list) else []
            failed = next((m[1] for m in messages if isinstance(m, list) and len(m) == 2
                           and m[0] == "execution_error"), None)
            if failed is None:
                raise UpstreamError(f"The workflow {workflow.model_id} ended without an "
                                    "image on ComfyUI (interrupted). Try again.")
            raise execution_failed(workflow, failed)
        return entry

    def _output(self, workflow: Workflow, entry: dict[str, Any],
                deadline: float) -> GeneratedImage:
        images = as_dict(as_dict(entry.get("outputs")).get(workflow.output)).get("images")
        images = images if isinstance(images, list) else []
        first = images[0] if images and isinstance(images[0], dict) else None
        if first is None or not isinstance(first.get("filename"), str):
            raise UpstreamError(f"ComfyUI ran the workflow {workflow.model_id} but its output "
                                f"node {workflow.output} holds no image.")
        params = {"filename": first["filename"], "subfolder": first.get("subfolder") or "",
                  "type": first.get("type") or "output"}
        answer = self._call("GET", "/view", deadline, "fetching the image", params=params,
                            max_bytes=MAX_IMAGE_BYTES)
        kind = fitting.sniff(answer.content) if answer.status_code == 200 else None
        if kind is None:
            raise UpstreamError(f"ComfyUI's image of the workflow {workflow.model_id} could not "
                                f"be fetched (HTTP {answer.status_code}).")
        if fitting.oversized(answer.content) is not None:
            raise UpstreamError(f"ComfyUI made an image larger than "
                                f"{fitting.MAX_GENERATED_SIDE} pixels a side; it was refused "
                                "undecoded.")
        return GeneratedImage(answer.content, content_type=kind)

    @staticmethod
    def _json(answer: Answer, what: str) -> dict[str, Any]:
        try:
            body = answer.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise UpstreamError(f"ComfyUI's answer to {what} is not a JSON object.")
        return body

    # -- stopping ----------------------------------------------------------------------------

    def stop(self, prompt_id: str) -> None:
        """Stop a prompt nobody waits for: interrupt it if it runs, else drop it from the queue.

        Best effort and bounded: a failure is logged, and the caller's Cancelled (or timeout)
        is raised whatever happens here.
        """
        deadline = time.monotonic() + CANCEL_TIMEOUT
        try:
            queue = self._json(self._call("GET", "/queue", deadline, "reading the queue"),
                               "the queue")
            if _holds(queue.get("queue_running"), prompt_id):
                # Newer ComfyUI interrupts only the prompt named; older ones the running one,
                # which is ours: checked just above.
                self._call("POST", "/interrupt", deadline, "interrupting",
                           json={"prompt_id": prompt_id})
                log.info("comfyui: interrupted prompt %s (its caller has gone)", prompt_id)
            elif _holds(queue.get("queue_pending"), prompt_id):
                self._call("POST", "/queue", deadline, "leaving the queue",
                           json={"delete": [prompt_id]})
                log.info("comfyui: deleted queued prompt %s (its caller has gone)", prompt_id)
        except (UpstreamError, Cancelled) as exc:
            log.warning("comfyui: could not stop prompt %s: %s", prompt_id, exc.message)


def _holds(entries: Any, prompt_id: str) -> bool:
    """Whether a /queue list (`[number, prompt_id, prompt, extra, outputs]` items) has it."""
    return isinstance(entries, list) and any(
        isinstance(item, list) and len(item) > 1 and item[1] == prompt_id for item in entries)
