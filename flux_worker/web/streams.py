"""Server-sent event answers: how every view sends a stream (chat, Images, Responses).

A streamed generation runs in a thread of its own (chat.streaming.Background) and the stream
sends heartbeats while it works; the client hanging up, or the server closing a stream before it
was read at all, cancels it.
"""

from __future__ import annotations

from typing import Iterator, TypeVar

from flask import Response, stream_with_context

from ..chat.streaming import HEARTBEAT_SECONDS, Background, ClientWatch
from ..generation.job import Caller
from ..generation.service import Generation

T = TypeVar("T")


def in_background(pieces: Iterator[T], caller: Caller,
                  progress_of: Generation | None = None) -> Background[T]:
    """Run `pieces` in their own thread from now on, with heartbeats; a hang-up cancels them.

    With `progress_of`, the generation's progress (step N of M, from backends that tell it)
    comes between the pieces as `Progress` items.
    """
    assert isinstance(caller.cancel, ClientWatch)     # web/callers.py gives every caller one
    background = Background(pieces, HEARTBEAT_SECONDS, caller.cancel, gone=caller.cancel.gone,
                            start=False)
    if progress_of is not None:
        progress_of.progress = background.progress
    background.start()
    return background


def sse_response(events: Iterator[str], *, caller: Caller | None = None,
                 headers: dict[str, str] | None = None) -> Response:
    """A `text/event-stream` answer; with `caller`, closing it stops their generation."""
    response = Response(stream_with_context(events), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no",
                                 **(headers or {})})
    if caller is not None:
        # Also for a stream the server closes before it was read at all: stop the generation.
        response.call_on_close(caller.cancel.set)
    return response
