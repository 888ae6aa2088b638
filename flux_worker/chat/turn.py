"""One chat turn: what the last user message asks for, started, as the pieces of the answer.

A chat message is an image request unless it is a client's background request (a title, tags:
answered with text). It edits when it attaches images or says `--edit`; otherwise it is a new
picture. Either way the generation starts through `Generations.start`, like every interface's.
The chat-shaped interfaces (chat completions; later the Responses API) format the pieces.
No Flask here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

from ..catalog.registry import ModelRegistry
from ..generation.job import Caller, ImageOrder
from ..generation.service import Generation, Generations
from ..generation.translate import Translator
from ..inputs.chat_images import chat_sources, find_chat_edit
from ..openai_api.generation_requests import ChatCompletionRequest
from . import background_requests
from .answer import chat_answer, edit_answer
from .phrases import Phrasebook

log = logging.getLogger(__name__)


@dataclass
class ChatTurn:
    """The answer to one chat request: its pieces, and the generation behind them (if any)."""

    model: str                          # the model id the answer names
    pieces: Iterator[str]
    generation: Generation | None = None    # None: a text answer, no image

    @property
    def neurons(self) -> float | None:
        """Neurons settled so far (read after the pieces, for a non-stream answer)."""
        return self.generation.neurons if self.generation is not None else None

    @property
    def estimate(self) -> float | None:
        """Neurons reserved: what a stream can tell before its body."""
        return self.generation.estimate if self.generation is not None else None


class ChatTurns:
    """Starts chat turns against the service's generations."""

    def __init__(self, generations: Generations, models: ModelRegistry, words: Phrasebook, *,
                 translator: Translator | None = None, auto_edits: bool = False,
                 foreign_origin: str | None = None, show_cost: bool = False):
        self.generations = generations
        self.models = models
        self.words = words
        self.translator = translator
        self.auto_edits = auto_edits            # CHAT_EDITS=auto
        self.foreign_origin = foreign_origin    # where IMAGE_LINKS=direct/presigned links point
        self.show_cost = show_cost

    def start(self, chat: ChatCompletionRequest, caller: Caller,
              image_url: Callable[[str], str],
              options: Mapping[str, Any] | None = None) -> ChatTurn:
        """Answer `chat` for `caller`; `image_url(key)` links a stored image.

        `options` are `ImageOrder` fields an interface sets beside the message (the Responses
        API's image tool: its model, size, format, mask).
        """
        # A caller over its limit is refused before any pattern runs over its text.
        self.generations.check(caller)
        text = chat.prompt
        task = background_requests.detect(chat.user_texts(), text)
        if task is not None:
            log.info("answered %s %s request without an image", task.client, task.kind)
            reply = task.reply or self.words("housekeeping")
            return ChatTurn(chat.model or self.models.default.id, iter([reply]))
        # CHAT_EDITS=auto needs an LLM to decide; without one it behaves as explicit.
        decide = (self.translator.decide_edit if self.auto_edits and self.translator
                  else None)
        edit = find_chat_edit(chat.model_dump()["messages"], text, decide, self.foreign_origin)
        fields: dict[str, Any] = {"model": chat.model, "chat": True, **(options or {})}
        order = ImageOrder(prompt=edit.text if edit else text,
                           images=chat_sources(edit) if edit else (), **fields)
        generation = self.generations.start(order, caller)
        answer = edit_answer if edit else chat_answer
        pieces = answer(generation, self.words, image_url, self.show_cost)
        return ChatTurn(generation.job.model.id, pieces, generation)
