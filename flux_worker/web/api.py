"""The OpenAI-compatible API: chat completions, image generations, models. Views stay thin.

Each view parses its request, hands it to the one generation entry point (through the chat turn
for chat), and formats the outcome. The blueprint is registered under /v1 and at the root (see
`create_app`), because clients disagree on whether their base URL already ends in /v1.
"""

from __future__ import annotations

import time
from typing import Iterable

from flask import Blueprint, Response, g, jsonify

from ..chat.answer import LinkCollector, sse_events
from ..chat.turn import ChatTurn
from ..generation.fallback import AUTO, AUTO_DESCRIPTION, is_auto
from ..generation.job import Caller, ImageOrder
from ..openai_api import answers
from ..openai_api.generation_requests import (
    ChatCompletionRequest,
    parse_chat_completion,
    parse_image_generation,
)
from .auth import caller_terms, require_api_key
from .base_url import image_linker, public_base_url
from .body import json_body
from .callers import request_caller
from .context import services
from .image_answers import images_answer, tell_neurons
from .streams import in_background, sse_response

bp = Blueprint("api", __name__)



@bp.before_request
def authenticate():
    require_api_key()


@bp.post("/chat/completions")
def chat_completions():
    """Turn the last user message into an image; answer as a chat completion."""
    svc = services()
    chat = parse_chat_completion(json_body())
    caller = request_caller()
    links = LinkCollector(image_linker(public_base_url()))
    turn = svc.chat.start(chat, caller, links)
    g.model = turn.model
    images = links if chat.wants_images else None
    if not chat.stream:
        response = _completion(chat, turn, images)
        tell_neurons(response, turn.neurons)       # settled: the pieces have all been read
        return response
    response = _event_stream(chat, turn, caller, images)
    # Headers go before the body, so a stream can only tell the estimate (README: Costs).
    tell_neurons(response, turn.estimate)
    return response


def _completion(chat: ChatCompletionRequest, turn: ChatTurn,
                images: LinkCollector | None) -> Response:
    content = "".join(turn.pieces)
    return jsonify(answers.chat_completion(
        answers.completion_id(), int(time.time()), turn.model, content,
        answers.usage(chat.prompt, content), images=images.urls if images else None))


def _event_stream(chat: ChatCompletionRequest, turn: ChatTurn, caller: Caller,
                  images: LinkCollector | None) -> Response:
    pieces: Iterable[object] = turn.pieces
    if turn.generation is not None:
        # The generation runs in its own thread from now on and holds its slot until it ends.
        pieces = in_background(turn.pieces, caller, progress_of=turn.generation)
    writer = answers.ChunkWriter(answers.completion_id(), int(time.time()), turn.model,
                                 chat.include_usage)
    events = sse_events(pieces, writer, chat.prompt, services().chat.words, images)
    return sse_response(events, caller=caller)


@bp.post("/images/generations")
def images_generations():
    """OpenAI Images API: `n` images for a prompt, as links or base64, or streamed as events."""
    req = parse_image_generation(json_body(), services().config.max_images)
    order = ImageOrder(prompt=req.prompt, model=req.model, n=req.n, size=req.size,
                       seed=req.seed, steps=req.steps, negative=req.negative_prompt,
                       guidance=req.guidance, output_format=req.output_format,
                       output_compression=req.output_compression, quality=req.quality,
                       background=req.background, moderation=req.moderation)
    return images_answer(order, req.response_format, stream=req.stream)


@bp.get("/models")
def list_models():
    """The image models offered, in OpenAI's list format."""
    svc = services()
    # A run-time key limited to some models sees those: what it may use is what it is offered.
    terms = caller_terms()
    offered = [s for s in svc.models.models if terms is None or terms.allows(s.id)]
    return jsonify(answers.model_list(
        [*(_model_object(svc, spec) for spec in offered), _auto_object(svc)]))


@bp.get("/models/<path:model_id>")
def get_model(model_id: str):
    """One model with its capabilities; 404 model_not_found for unknown ids."""
    svc = services()
    if is_auto(model_id):
        # Auto's first candidate is the default model: its capabilities and price stand for it.
        first = svc.models.default
        return jsonify(_auto_object(svc, aliases=[], capabilities=first.capabilities(),
                                    default=False,
                                    cost=first.cost_info(svc.config.flux_num_steps)))
    spec = svc.models.require(model_id)
    return jsonify(_model_object(svc, spec, aliases=list(spec.aliases),
                                 description=spec.description, capabilities=spec.capabilities(),
                                 default=spec is svc.models.default,
                                 cost=spec.cost_info(svc.config.flux_num_steps)))


def _auto_object(svc, **extra) -> dict:
    """`auto`: a name clients may pick, for which the service chooses (README: Fallback)."""
    return answers.model_object(AUTO, "flux-worker", svc.models.default.created,
                                backend=svc.backend.name, provider=AUTO,
                                description=AUTO_DESCRIPTION, **extra)


def _model_object(svc, spec, **extra) -> dict:
    backend = svc.backend.name
    owned_by = "flux-worker-demo" if backend == "demo" else spec.owned_by
    return answers.model_object(spec.id, owned_by, spec.created, backend=backend,
                                provider=spec.provider, **extra)
