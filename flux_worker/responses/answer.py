"""One Responses request, started: the chat turn behind it and the Response it becomes.

`Responses.start` parses nothing (the view did) and answers nothing: it turns the request into a
chat turn (conversation.py), which admits the generation exactly as a chat request's (rate
limit, slot, budget; refused before any answer), and returns an `Answer`. The view then takes
the Answer's pieces all at once (a JSON Response), as events (events.py), or hands it to a
background job (background.py). No Flask here.
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..chat.turn import ChatTurn, ChatTurns
from ..errors import APIError, InvalidRequest, StorageError
from ..generation.job import Caller
from . import conversation, output
from .conversation import Conversation
from .output import Picture, Shell
from .request import ResponseRequest
from .store import Record, ResponseStore, owner_of

log = logging.getLogger(__name__)
_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/webp": "webp"}


@dataclass
class Answer:
    """A started Responses request: its chat turn and what its Response objects share."""

    shell: Shell
    turn: ChatTurn
    conversation: Conversation
    request: ResponseRequest
    owner: str
    responses: Responses
    text: list[str] = field(default_factory=list)    # the message's pieces, as they came

    @property
    def prompt(self) -> str:
        return self.conversation.chat.prompt

    @property
    def draws(self) -> bool:
        """Whether an image is made (a client's title request gets text only)."""
        return self.turn.generation is not None

    def picture(self) -> Picture | None:
        """What the image call reports, once the image exists."""
        generation = self.turn.generation
        if generation is None or generation.result is None:
            return None
        result = generation.result
        return Picture(size=f"{result.width}x{result.height}",
                       output_format=_FORMATS.get(result.content_type, "png"),
                       revised_prompt=generation.prompt or generation.job.prompt,
                       action="edit" if generation.job.images else "generate",
                       quality=generation.job.quality, background=generation.job.background)

    def image_b64(self) -> str | None:
        generation = self.turn.generation
        if generation is None or generation.result is None:
            return None
        return base64.b64encode(generation.result.data).decode("ascii")

    def image_key(self) -> str | None:
        generation = self.turn.generation
        return generation.result.key if generation and generation.result else None

    def output_items(self, *, with_result: bool = True) -> list[dict[str, Any]]:
        """The finished output: the image call (when drawn), then the message."""
        items = []
        if self.draws:
            items.append(output.image_call(self.shell.id, "completed",
                                           self.image_b64() if with_result else None,
                                           self.picture()))
        items.append(output.message(self.shell.id, "".join(self.text)))
        return items

    def completed(self) -> dict[str, Any]:
        """The completed Response, once every piece has been read."""
        return self.shell.response("completed", self.output_items(),
                                   usage_obj=output.usage(self.prompt, "".join(self.text)))

    def failed(self, exc: APIError) -> dict[str, Any]:
        """The failed Response: what was drawn so far is not shown, the error is."""
        return self.shell.response("failed", [], error=output.error_of(exc),
                                   usage_obj=output.usage(self.prompt, ""))

    def cancelled(self) -> dict[str, Any]:
        return self.shell.response("cancelled", [], usage_obj=output.usage(self.prompt, ""))

    def in_progress(self, status: str = "in_progress") -> dict[str, Any]:
        return self.shell.response(status, [])

    def read_all(self) -> dict[str, Any]:
        """Read every piece (the generation runs here) and return the completed Response."""
        self.text.extend(self.turn.pieces)
        return self.completed()

    def record(self, response: dict[str, Any]) -> Record:
        """The stored form of `response`: no base64, the image's key instead."""
        store = self.responses.store
        made = store.new_record(self.shell.id, self.owner, output.without_result(response),
                                self.conversation.items)
        made.image_key = self.image_key()
        return made

    def keep(self, response: dict[str, Any]) -> None:
        """Store `response` when the request asked to (`store`, default true)."""
        if not self.shell.store:
            return
        try:
            self.responses.store.save(self.record(response))
        except StorageError as exc:
            # The client has its answer; only a later GET will miss it. Logged, not raised.
            log.warning("response %s not stored: %s", self.shell.id[:12], exc.message)


class Responses:
    """Starts Responses requests against the chat turns, and keeps their records."""

    def __init__(self, chat: ChatTurns, store: ResponseStore, *, stale_after: float,
                 clock: Callable[[], float] = time.time):
        self.chat = chat
        self.store = store
        self.stale_after = stale_after      # RESPONSES_STALE_SECONDS
        self.clock = clock

    def start(self, request: ResponseRequest, caller: Caller,
              image_url: Callable[[str], str]) -> Answer:
        """Turn `request` into a chat turn for `caller` (admitted: the caller must read it)."""
        response_id = output.new_response_id()
        owner = owner_of(caller.key)
        talk = conversation.build(request, response_id, owner, self.store, image_url)
        try:
            turn = self.chat.start(talk.chat, caller, image_url,
                                   conversation.order_options(request.image_tool))
        except InvalidRequest as exc:
            raise conversation.as_input_error(exc) from None
        shell = Shell(id=response_id, created_at=int(self.clock()),
                      model=request.model or turn.model, instructions=request.instructions,
                      tools=output.tools_of(request.tools),
                      tool_choice=output.tool_choice_of(request.tool_choice),
                      metadata=dict(request.metadata or {}), background=bool(request.background),
                      store=request.keeps, previous_response_id=request.previous_response_id)
        return Answer(shell, turn, talk, request, owner, self)

    def read(self, response_id: str, owner: str) -> Record | None:
        """A stored response as its owner may see it now (a dead job's as failed)."""
        record = self.store.load(response_id, owner)
        if record is None:
            return None
        if record.status in ("queued", "in_progress") and self.is_stale(record):
            record.response = dict(record.response, status="failed", error={
                "code": "server_error",
                "message": "The instance running this background response stopped before it "
                           f"finished (no sign of life for {self.stale_after:g} seconds). "
                           "Start it again."})
        return record

    def is_stale(self, record: Record) -> bool:
        beat = record.heartbeat
        return beat is None or self.clock() - beat > self.stale_after

    def view(self, record: Record) -> dict[str, Any]:
        """The Response to send for a record: its image's base64 back in place."""
        image = self.store.image(record)
        result = base64.b64encode(image).decode("ascii") if image is not None else None
        return output.fill_result(record.response, result)
