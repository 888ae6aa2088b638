"""The Images API answer, shared by generations, edits and variations: start, render, format.

A request with `stream: true` gets the same images as server-sent events: the generation is
started (and so validated, admitted and planned) before the first byte, so every refusal is
still a plain HTTP error; then it runs in its own thread (chat.streaming.Background) while the
stream sends SSE comments as heartbeats, and one `*.completed` event per image once the batch
is kept. A failure after that point can only be an event: an `error` event with OpenAI's error
object, which openai-python raises as APIError.
"""

from __future__ import annotations

import base64
import logging
from typing import Callable, Iterable, Iterator

from flask import Response, g, jsonify

from ..catalog.spec import tiles
from ..chat.streaming import HEARTBEAT
from ..errors import APIError, ServerError, public_error
from ..generation.job import Batch, Caller, ImageJob, ImageOrder, ImageResult
from ..generation.service import Generation
from ..openai_api import answers
from .base_url import image_linker, public_base_url
from .callers import request_caller
from .context import services
from .streams import in_background, sse_response

log = logging.getLogger(__name__)

# The delivered size, always: OpenAI's schemas allow only three sizes in `size`, so any other
# (this service makes any WIDTHxHEIGHT) is stated here instead (README: Images API).
SIZE_HEADER = "X-Image-Size"
# The stored images' links, space-separated, for answers that carry only `b64_json`.
LINKS_HEADER = "X-Image-Links"
# Which model drew, when another than the one planned did (MODEL_FALLBACKS, README: Fallback):
# the first image's model and why the planned one did not draw it.
MODEL_HEADER = "X-Image-Model"
FALLBACK_HEADER = "X-Fallback-Reason"


def images_answer(order: ImageOrder, response_format: str | None, *,
                  name_models: bool = False, stream: bool = False,
                  event: str = "image_generation") -> Response:
    """Render the order's `n` images and answer in OpenAI's Images format (or its events).

    `name_models` (edits, variations): say which model drew, and which was asked for when
    another stood in; generations say so only when another model stood in (an OpenAI name's
    size). OpenAI's answer allows extra fields. `event` names the stream's events:
    `image_generation` or `image_edit`.
    """
    svc = services()
    caller = request_caller()
    generation = svc.generations.start(order, caller)
    job = generation.job
    g.model = job.model.id
    if stream:
        try:
            return _event_stream(generation, caller, order.prompt, event)
        except BaseException:
            generation.close()    # the stream's thread never started: nothing else will
            raise
    with generation:
        batch = generation.render_all()
    link = image_linker(public_base_url())
    items = answers.image_items(
        batch.results,
        response_format or svc.models.default_response_format(
            order.model, svc.config.image_response_format),
        link, revised_prompt=batch.choice.prompt if batch.choice.model else None,
        show_seed=job.model.seed)
    body = answers.images_response(
        items, size=job.size, output_format=_format_of(batch.results[0]),
        quality=job.quality, background=job.background,
        usage=answers.image_usage(order.prompt, _input_tiles(job),
                                  sum(tiles(r.width, r.height) for r in batch.results)))
    fell_back = next((r for r in batch.results if r.fallback is not None), None)
    if name_models or job.requested is not None or fell_back is not None:
        body["model"] = job.model.id
        if job.requested is not None:
            body["requested_model"] = job.requested.id
    if fell_back is not None and fell_back.model is not None:
        # `model` names who drew; the planned model and the reason say why not it.
        body["model"] = fell_back.model.id
        body["fallback"] = {"from": job.model.id, "reason": fell_back.fallback,
                            "tried": list(fell_back.tried)}
    response = jsonify(body)
    if fell_back is not None and fell_back.model is not None:
        response.headers[MODEL_HEADER] = fell_back.model.id
        response.headers[FALLBACK_HEADER] = fell_back.fallback or ""
    response.headers[SIZE_HEADER] = job.size
    response.headers[LINKS_HEADER] = " ".join(link(r.key) for r in batch.results)
    tell_neurons(response, generation.neurons)
    return response


def _event_stream(generation: Generation, caller: Caller, prompt: str, event: str) -> Response:
    """Stream the generation's images as `<event>.completed` events; it owns `generation` now."""
    job = generation.job
    link = image_linker(public_base_url())
    behind_key = caller.key is not None
    # Last: from here on the generation runs, and is closed, in its own thread.
    pieces = in_background(_render(generation), caller)
    events = _events(pieces, job, f"{event}.completed", prompt, link, behind_key)
    response = sse_response(events, caller=caller, headers={SIZE_HEADER: job.size})
    # Headers go before the body, so a stream can only tell the estimate (README: Costs).
    tell_neurons(response, generation.estimate)
    return response


def _render(generation: Generation) -> Iterator[Batch]:
    with generation:
        yield generation.render_all()


def _events(pieces: Iterable[object], job: ImageJob, kind: str, prompt: str,
            link: Callable[[str], str], behind_key: bool) -> Iterator[str]:
    # A first comment at once: the client (and any proxy) gets the headers now, not when the
    # image is ready or the first heartbeat is due.
    yield answers.SSE_HEARTBEAT
    try:
        for piece in pieces:
            if piece is HEARTBEAT:
                yield answers.SSE_HEARTBEAT
                continue
            assert isinstance(piece, Batch)
            for result in piece.results:
                usage = answers.image_usage(prompt, _input_tiles(job),
                                            tiles(result.width, result.height))
                yield answers.image_event(
                    kind, base64.b64encode(result.data).decode("ascii"), size=job.size,
                    quality=job.quality, background=job.background,
                    output_format=_format_of(result), usage=usage, url=link(result.key))
    except APIError as exc:
        log.warning("image stream failed: %s %s", exc.code, exc.message)
        yield answers.error_event(public_error(exc, behind_key=behind_key).body())
    except Exception:
        log.exception("image stream failed unexpectedly")
        yield answers.error_event(ServerError(
            "The server hit an unexpected error; try again.").body())


def _format_of(result: ImageResult) -> str:
    return result.content_type.split("/")[-1]


def _input_tiles(job: ImageJob) -> int:
    return sum(tiles(image.width, image.height) for image in job.images)


def tell_neurons(response: Response, neurons: float | None) -> None:
    """Put the neurons a generation cost (or is estimated to cost) in `X-Neurons`."""
    if neurons is not None:
        response.headers["X-Neurons"] = f"{neurons:.3f}".rstrip("0").rstrip(".")
