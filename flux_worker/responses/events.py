"""The server-sent events of a streamed Response: one image call, then one message (no Flask).

The order is OpenAI's (reference §4): created, in_progress, the call's output_item.added,
image_generation_call.in_progress and .generating, then, once the image exists, .completed and
the call's output_item.done with `result`; the message's output_item.added, content_part.added,
the text as output_text.delta events, output_text.done, content_part.done, output_item.done,
and response.completed with the whole Response. Every event carries an increasing
`sequence_number` and goes as `event:` + `data:` lines; there are no `id:` lines (the SDK's
reader would break on one) and no `[DONE]`. While the upstream works, SSE comment lines keep
the connection alive. No partial images exist on Workers AI, so `partial_images` sends none.

A failure sends `response.failed` with the error, then an `error` event: flat, as the schema
has it, with a nested copy under `error`, as the live API sends it (the SDK raises on that).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable, Iterable, Iterator

from ..chat.streaming import HEARTBEAT, HEARTBEAT_SECONDS
from ..errors import APIError, Cancelled, ServerError
from . import output
from .answer import Answer
from .output import FINAL

log = logging.getLogger(__name__)
COMMENT = ": keep-alive\n\n"


class Sequence:
    """Numbers the events of one stream and writes each as SSE lines."""

    def __init__(self) -> None:
        self.number = 0

    def __call__(self, kind: str, **fields: Any) -> str:
        event = {"type": kind, "sequence_number": self.number, **fields}
        self.number += 1
        return f"event: {kind}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n"


def stream(answer: Answer, pieces: Iterable[object]) -> Iterator[str]:
    """Yield the SSE text of `answer`, reading its chat pieces (HEARTBEAT: a comment line)."""
    say = Sequence()
    rid = answer.shell.id
    yield say("response.created", response=answer.in_progress())
    yield say("response.in_progress", response=answer.in_progress())
    index = 0
    if answer.draws:
        call = output.call_id(rid)
        yield say("response.output_item.added", output_index=0,
                  item=output.image_call(rid, "in_progress"))
        yield say("response.image_generation_call.in_progress", output_index=0, item_id=call)
        yield say("response.image_generation_call.generating", output_index=0, item_id=call)
        index = 1
    try:
        for piece in pieces:
            if piece is HEARTBEAT:
                yield COMMENT
                continue
            answer.text.append(str(piece))
    except APIError as exc:
        yield from _failed(say, answer, exc)
        return
    except Exception:
        log.exception("responses stream failed unexpectedly")
        yield from _failed(say, answer, ServerError(
            "The server hit an unexpected error; try again."))
        return
    final = answer.completed()
    if answer.draws:
        call_item = final["output"][0]
        yield say("response.image_generation_call.completed", output_index=0,
                  item_id=call_item["id"])
        yield say("response.output_item.done", output_index=0, item=call_item)
    yield from _message_events(_every(say), rid, index, "".join(answer.text))
    answer.keep(final)
    yield say("response.completed", response=final)


def _every(say: Sequence) -> Callable[..., Iterator[str]]:
    """An emitter that sends every event (a live stream skips none)."""
    def emit(kind: str, **fields: Any) -> Iterator[str]:
        yield say(kind, **fields)
    return emit


def _failed(say: Sequence, answer: Answer, exc: APIError) -> Iterator[str]:
    if isinstance(exc, Cancelled):
        # The client hung up: nobody reads on; what is kept says so.
        answer.keep(answer.cancelled())
        return
    log.warning("responses stream failed: %s %s", exc.code, exc.message)
    failed = answer.failed(exc)
    answer.keep(failed)
    yield say("response.failed", response=failed)
    yield from _error_event(_every(say), exc.type, exc.code, exc.message, exc.param)


# --- a stored response, followed ---------------------------------------------------------------

def follow(read: Callable[[], dict[str, Any] | None], *, starting_after: int = -1,
           poll: float = 0.25, heartbeat: float = HEARTBEAT_SECONDS,
           sleep: Callable[[float], None] = time.sleep,
           clock: Callable[[], float] = time.monotonic) -> Iterator[str]:
    """The events of a stored response from its first, following it until it is final.

    For `GET /v1/responses/{id}?stream=true` and for a background response asked with
    `stream: true`. `read()` gives the Response as stored now (with `result` in place), or None
    once it is gone (deleted, expired). The events and their numbers depend only on the states
    read, so a replay numbers each event as an earlier stream of the same response did: the
    SDK resumes by dropping what it has seen, and `starting_after` lets a client do the same
    on the server. Comment lines keep the connection alive while nothing changes.
    """
    say = Sequence()

    def emit(kind: str, **fields: Any) -> Iterator[str]:
        line = say(kind, **fields)
        if say.number - 1 > starting_after:
            yield line

    response = read()
    if response is None:
        return
    rid = response["id"]
    background = bool(response.get("background"))
    opening = dict(response, output=[], error=None)
    opening.pop("usage", None)
    yield from emit("response.created",
                    response=dict(opening, status="queued" if background else "in_progress"))
    if background:
        yield from emit("response.queued", response=dict(opening, status="queued"))
    started = False
    quiet_since = clock()
    while True:
        status = response.get("status")
        if status != "queued" and not started:
            started = True
            yield from emit("response.in_progress", response=dict(opening, status="in_progress"))
            if status not in FINAL or _drew(response):
                call = output.call_id(rid)
                yield from emit("response.output_item.added", output_index=0,
                                item=output.image_call(rid, "in_progress"))
                yield from emit("response.image_generation_call.in_progress", output_index=0,
                                item_id=call)
                yield from emit("response.image_generation_call.generating", output_index=0,
                                item_id=call)
            quiet_since = clock()
        if status in FINAL:
            yield from _ending(emit, response)
            return
        if clock() - quiet_since >= heartbeat:
            quiet_since = clock()
            yield COMMENT
        sleep(poll)
        now = read()
        if now is None:
            yield from _error_event(emit, "invalid_request_error", None,
                                    f"Response {rid} was deleted or has expired.")
            return
        response = now


def _drew(response: dict[str, Any]) -> bool:
    return any(item.get("type") == "image_generation_call" for item in response.get("output", []))


def _ending(emit: Callable[..., Iterator[str]], final: dict[str, Any]) -> Iterator[str]:
    """The events after `.generating`, for a response now final."""
    if final.get("status") != "completed":
        # No event of OpenAI's names a cancel: a cancelled response ends as failed does, its
        # status telling which it was.
        yield from emit("response.failed", response=final)
        error = final.get("error")
        if error:
            yield from _error_event(emit, "server_error", error.get("code"), error.get("message"))
        return
    index = 0
    for item in final.get("output", []):
        if item.get("type") == "image_generation_call":
            yield from emit("response.image_generation_call.completed", output_index=index,
                            item_id=item["id"])
            yield from emit("response.output_item.done", output_index=index, item=item)
            index += 1
    text = "".join(part.get("text", "") for item in final.get("output", [])
                   if item.get("type") == "message" for part in item.get("content", []))
    yield from _message_events(emit, final["id"], index, text)
    yield from emit("response.completed", response=final)


def _message_events(emit: Callable[..., Iterator[str]], rid: str, index: int,
                    text: str) -> Iterator[str]:
    mid = output.message_id(rid)
    ids = {"item_id": mid, "output_index": index, "content_index": 0}
    yield from emit("response.output_item.added", output_index=index,
                    item=output.message(rid, None, "in_progress"))
    yield from emit("response.content_part.added", **ids, part=output.text_part(""))
    for line in text.splitlines(keepends=True):
        yield from emit("response.output_text.delta", **ids, delta=line, logprobs=[])
    yield from emit("response.output_text.done", **ids, text=text, logprobs=[])
    yield from emit("response.content_part.done", **ids, part=output.text_part(text))
    yield from emit("response.output_item.done", output_index=index,
                    item=output.message(rid, text))


def _error_event(emit: Callable[..., Iterator[str]], kind: str, code: str | None,
                 message: str | None, param: str | None = None) -> Iterator[str]:
    """The `error` event: flat, as the schema has it, with a nested copy, as the live API sends
    it (the SDK raises APIError on the nested one)."""
    flat = {"code": code, "message": message, "param": param}
    yield from emit("error", **flat, error={"type": kind, **flat})
