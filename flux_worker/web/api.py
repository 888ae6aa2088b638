"""The OpenAI-compatible API: chat completions, images, models. Views stay thin.

Every route is served both under /v1 and at the root, because clients disagree on whether the
base URL they are given already ends in /v1.
"""

from __future__ import annotations

import logging
import time

from flask import Blueprint, Response, g, jsonify, request, stream_with_context

from ..chat import background_requests
from ..chat.answer import ImageLinks, chat_answer, holding, sse_events
from ..chat.phrases import Phrasebook
from ..chat.streaming import Background, ClientWatch, peer_closed
from ..generation.edits import edit_answer
from ..generation.prompt import parse_prompt
from ..openai_api import answers
from ..openai_api.generation_requests import (
    ChatCompletionRequest,
    parse_chat_completion,
    parse_image_generation,
)
from .auth import caller_identity, caller_key, require_api_key
from .base_url import image_linker, public_base_url
from .body import json_body
from .context import services
from .edits import chat_edit_job
from .image_answers import render_images, tell_neurons

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__)

# Seconds of silence after which a stream gets an empty chunk, under common idle cut-offs (60 s).
HEARTBEAT_SECONDS = 15.0


@bp.before_request
def authenticate():
    require_api_key()


@bp.post("/v1/chat/completions")
@bp.post("/chat/completions")
def chat_completions():
    """Turn the last user message into an image; answer as a chat completion."""
    svc = services()
    chat = parse_chat_completion(json_body())
    text = chat.prompt
    words = Phrasebook(svc.config.language)
    identity = caller_identity()
    # A caller over its limit is refused before any pattern runs over its text.
    svc.admission.check(identity)
    cid, created = answers.completion_id(), int(time.time())
    task = background_requests.detect(chat.user_texts(), text)
    if task is not None:
        # A client's background request (title, tags) gets a short text, not an image.
        log.info("answered %s %s request without an image", task.client, task.kind)
        model_name = chat.model or svc.models.default.id
        reply = task.reply or words("housekeeping")
        return _chat_reply(chat, cid, created, model_name, text, iter([reply]))
    # Image input (issue 11): attached images or `--edit` make the message an edit.
    job = chat_edit_job(chat.model_dump()["messages"], text, chat.model)
    answer = chat_answer if job is None else edit_answer
    if job is None:
        job = svc.pipeline.plan(parse_prompt(text), text, svc.models.for_chat(chat.model))
    model = job.model
    g.model = model.id
    svc.pipeline.check_storage()
    base = public_base_url()
    ticket = svc.admission.admit(identity, 1, key=caller_key(), estimate=job.estimate)
    hold = ticket.hold
    gone = peer_closed(request.environ.get("gunicorn.socket"))
    cancel = ClientWatch(gone)
    links = ImageLinks(image_linker(base))
    pieces = holding(answer(job, svc.pipeline, words, links, cancel, hold,
                            svc.config.show_cost), ticket)
    images = links if chat.wants_images else None
    if not chat.stream:
        response = _chat_reply(chat, cid, created, model.id, text, pieces, images)
        tell_neurons(response, hold.neurons if hold else None)
        return response
    # The generation runs in its own thread from now on and holds its slot until it ends.
    running = Background(pieces, HEARTBEAT_SECONDS, cancel, gone=gone)
    response = _stream(chat, cid, created, model.id, text, running, words, images)
    # Headers go before the body, so a stream can only tell the estimate (README: Costs).
    tell_neurons(response, hold.estimate if hold else None)
    # Also for a stream the server closes before it was read at all: stop the generation.
    response.call_on_close(cancel.set)
    return response


def _chat_reply(chat: ChatCompletionRequest, cid: str, created: int, model_name: str,
                prompt: str, pieces, images: ImageLinks | None = None) -> Response:
    if chat.stream:
        return _stream(chat, cid, created, model_name, prompt, pieces,
                       Phrasebook(services().config.language))
    content = "".join(pieces)
    return jsonify(answers.chat_completion(
        cid, created, model_name, content, answers.usage(prompt, content),
        images=images.urls if images is not None else None))


def _stream(chat: ChatCompletionRequest, cid: str, created: int, model_name: str, prompt: str,
            pieces, words: Phrasebook, images: ImageLinks | None = None) -> Response:
    writer = answers.ChunkWriter(cid, created, model_name, chat.include_usage)
    return Response(stream_with_context(sse_events(pieces, writer, prompt, words, images)),
                    mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@bp.post("/v1/images/generations")
@bp.post("/images/generations")
def images_generations():
    """OpenAI Images API: `n` images for a prompt, as links or base64."""
    svc = services()
    req = parse_image_generation(json_body(), svc.config.max_images)
    model = svc.models.require(req.model)
    g.model = model.id
    job = svc.pipeline.plan(parse_prompt(req.prompt), req.prompt, model, size=req.size,
                            seed=req.seed, steps=req.steps, negative=req.negative_prompt,
                            guidance=req.guidance, output_format=req.output_format)
    return render_images(job, req.n, req.response_format, req.model)


@bp.get("/v1/models")
@bp.get("/models")
def list_models():
    """The image models offered, in OpenAI's list format."""
    svc = services()
    return jsonify(answers.model_list(
        [_model_object(svc, spec) for spec in svc.models.models]))


@bp.get("/v1/models/<path:model_id>")
@bp.get("/models/<path:model_id>")
def get_model(model_id: str):
    """One model with its capabilities; 404 model_not_found for unknown ids."""
    svc = services()
    spec = svc.models.require(model_id)
    return jsonify(_model_object(svc, spec, aliases=list(spec.aliases),
                                 description=spec.description, capabilities=spec.capabilities(),
                                 default=spec is svc.models.default,
                                 cost=spec.cost_info(svc.config.flux_num_steps)))


def _model_object(svc, spec, **extra) -> dict:
    backend = svc.backend.name
    owned_by = "flux-worker-demo" if backend == "demo" else spec.owned_by
    return answers.model_object(spec.id, owned_by, spec.created, backend=backend, **extra)
