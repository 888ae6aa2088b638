"""The OpenAI-compatible API: chat completions, images, models. Views stay thin.

Every route is served both under /v1 and at the root, because clients disagree on whether the
base URL they are given already ends in /v1.
"""

from __future__ import annotations

import base64
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from flask import Blueprint, Response, g, jsonify, stream_with_context

from .. import housekeeping, openai_format
from ..answer import chat_answer
from ..api_requests import ChatRequest, ImagesRequest
from ..errors import APIError
from ..messages import Phrasebook
from ..prompt import last_user_text, parse_prompt
from ..streaming import HEARTBEAT, with_heartbeat
from .common import (admit_generation, image_link, json_body, public_base_url, require_api_key,
                     services)

log = logging.getLogger("flux_worker.api")
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
    chat = ChatRequest.from_json(json_body())
    text = last_user_text(chat.messages)
    words = Phrasebook(services().config.language)
    model_name, pieces, release = _answer_source(chat, text, words)
    g.model = model_name
    cid, created = openai_format.completion_id(), int(time.time())
    if chat.stream:
        stream = _sse(pieces, openai_format.ChunkWriter(cid, created, model_name,
                                                         chat.include_usage), text, words, release)
        return Response(stream_with_context(stream), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    try:
        content = "".join(pieces)
    finally:
        release()
    return jsonify(openai_format.chat_completion(
        cid, created, model_name, content, openai_format.usage(text, content)))


def _answer_source(chat: ChatRequest, text: str, words: Phrasebook):
    """(model name, pieces of the answer, slot release) for a chat request.

    A client's background request gets a short text; anything else is validated, admitted
    (rate limit, in-flight slot) and becomes a generation whose pieces arrive as they are known.
    """
    svc = services()
    chore = housekeeping.detect(chat.messages, text)
    if chore is not None:
        log.info("answered %s %s request without an image", chore.client, chore.kind)
        reply = chore.reply or words("housekeeping")
        return chat.model or svc.models.default.id, iter([reply]), _nothing
    model = svc.models.for_chat(chat.model)
    job = svc.pipeline.plan(parse_prompt(text), text, model)
    base = public_base_url()
    admit_generation()
    pieces = chat_answer(job, svc.pipeline, words, lambda key: image_link(base, key))
    return model.id, pieces, svc.gate.release


def _nothing() -> None:
    return None


def _sse(pieces, writer: openai_format.ChunkWriter, prompt: str, words: Phrasebook, release):
    """The SSE events of one streamed answer; a failure becomes the last content chunk."""
    try:
        yield from _sse_events(pieces, writer, prompt, words)
    finally:
        release()


def _sse_events(pieces, writer, prompt, words):
    yield writer.role()
    sent = []
    try:
        for piece in with_heartbeat(pieces, HEARTBEAT_SECONDS):
            if piece is HEARTBEAT:
                yield writer.content("")
                continue
            sent.append(piece)
            yield writer.content(piece)
    except APIError as exc:
        log.warning("stream failed after %d pieces: %s %s", len(sent), exc.code, exc.message)
        yield writer.content(("\n" if sent else "") + words("failed", exc.message))
    except Exception:
        log.exception("stream failed unexpectedly")
        yield writer.content(("\n" if sent else "") + words(
            "failed", "the server hit an unexpected error; try again."))
    yield writer.finish("stop")
    if writer.include_usage:
        yield writer.usage(openai_format.usage(prompt, "".join(sent)))
    yield openai_format.DONE


@bp.post("/v1/images/generations")
@bp.post("/images/generations")
def images_generations():
    """OpenAI Images API: `n` images for a prompt, as links or base64."""
    svc = services()
    req = ImagesRequest.from_json(json_body(), svc.config.max_images)
    model = svc.models.require(req.model)
    g.model = model.id
    parsed = parse_prompt(req.prompt)
    job = svc.pipeline.plan(parsed, req.prompt, model, size=req.size, seed=req.seed,
                            steps=req.steps, negative=req.negative_prompt, guidance=req.guidance,
                            output_format=req.output_format)
    admit_generation()
    try:
        choice = svc.pipeline.choose_prompt(job)
        seeds = [svc.pipeline.variant_seed(job, i) for i in range(req.n)]
        results = _render_all(svc.pipeline, job, choice.prompt, seeds)
    finally:
        svc.gate.release()
    base = public_base_url()
    items = []
    for result in results:
        item = ({"b64_json": base64.b64encode(result.data).decode("ascii")}
                if req.response_format == "b64_json" else {"url": image_link(base, result.key)})
        if choice.model:
            item["revised_prompt"] = choice.prompt
        if result.seed is not None and model.seed:
            item["seed"] = result.seed
        items.append(item)
    return jsonify(openai_format.images_response(
        items, size=job.size, output_format=results[0].content_type.split("/")[-1]))


def _render_all(pipeline, job, prompt, seeds):
    """Render every image of a batch in parallel; on any failure keep none of them."""
    if len(seeds) == 1:
        return [pipeline.render(job, prompt, seed=seeds[0])]
    with ThreadPoolExecutor(max_workers=len(seeds)) as pool:
        futures = [pool.submit(pipeline.render, job, prompt, seed=s) for s in seeds]
        outcomes = []
        for future in futures:
            try:
                outcomes.append(future.result())
            except Exception as exc:  # remembered, re-raised after cleanup
                outcomes.append(exc)
    failures = [o for o in outcomes if isinstance(o, Exception)]
    if failures:
        for done in outcomes:
            if not isinstance(done, Exception):
                pipeline.store.delete(done.key)
        raise failures[0]
    return outcomes


@bp.get("/v1/models")
@bp.get("/models")
def list_models():
    """The image models offered, in OpenAI's list format."""
    svc = services()
    return jsonify(openai_format.model_list([_model_object(svc, spec) for spec in svc.models.models]))


@bp.get("/v1/models/<path:model_id>")
@bp.get("/models/<path:model_id>")
def get_model(model_id: str):
    """One model with its capabilities; 404 model_not_found for unknown ids."""
    svc = services()
    spec = svc.models.require(model_id)
    return jsonify(_model_object(svc, spec, aliases=list(spec.aliases),
                                 description=spec.description, capabilities=spec.capabilities(),
                                 default=spec is svc.models.default))


def _model_object(svc, spec, **extra) -> dict:
    backend = svc.backend.name
    owned_by = "flux-worker-demo" if backend == "demo" else spec.owned_by
    return openai_format.model_object(spec.id, owned_by, spec.created, backend=backend, **extra)
