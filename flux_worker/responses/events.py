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
from typing import Any, Iterable, Iterator

from ..chat.streaming import HEARTBEAT
from ..errors import APIError, Cancelled, ServerError
from . import output
from .answer import Answer

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
    yield from _message(say, rid, index, "".join(answer.text))
    answer.keep(final)
    yield say("response.completed", response=final)


def _message(say: Sequence, rid: str, index: int, text: str) -> Iterator[str]:
    mid = output.message_id(rid)
    ids = {"item_id": mid, "output_index": index, "content_index": 0}
    yield say("response.output_item.added", output_index=index,
              item=output.message(rid, None, "in_progress"))
    yield say("response.content_part.added", **ids, part=output.text_part(""))
    for line in text.splitlines(keepends=True):
        yield say("response.output_text.delta", **ids, delta=line, logprobs=[])
    yield say("response.output_text.done", **ids, text=text, logprobs=[])
    yield say("response.content_part.done", **ids, part=output.text_part(text))
    yield say("response.output_item.done", output_index=index, item=output.message(rid, text))


def _failed(say: Sequence, answer: Answer, exc: APIError) -> Iterator[str]:
    if isinstance(exc, Cancelled):
        # The client hung up: nobody reads on; what is kept says so.
        answer.keep(answer.cancelled())
        return
    log.warning("responses stream failed: %s %s", exc.code, exc.message)
    failed = answer.failed(exc)
    answer.keep(failed)
    yield say("response.failed", response=failed)
    error = {"code": exc.code, "message": exc.message, "param": exc.param}
    yield say("error", **error, error={"type": exc.type, **error})
