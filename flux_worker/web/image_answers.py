"""The Images API answer, shared by generations, edits and variations: render, then format."""

from __future__ import annotations

from typing import Any

from flask import Response, g, jsonify, request

from ..chat.streaming import ClientWatch, peer_closed
from ..generation.pipeline import ImageJob
from ..openai_api import answers
from .auth import caller_identity, caller_key
from .base_url import image_linker, public_base_url
from .context import services


def render_images(job: ImageJob, n: int, response_format: str | None,
                  model_name: str | None, *, extra: dict[str, Any] | None = None) -> Response:
    """Admit, render `n` images of `job` and answer in OpenAI's Images format (+ `extra`)."""
    svc = services()
    g.model = job.model.id
    svc.pipeline.check_storage()
    with svc.admission.admit(caller_identity(), n, key=caller_key(),
                             estimate=job.estimate) as ticket:
        # A caller that gave up (timed out) stops the batch before anything is stored.
        cancel = ClientWatch(peer_closed(request.environ.get("gunicorn.socket")))
        batch = svc.pipeline.render_batch(job, n, cancel=cancel, hold=ticket.hold)
    # Like OpenAI's models: GPT image names answer base64 unless asked, DALL·E names links.
    items = answers.image_items(
        batch.results, response_format or svc.models.default_response_format(model_name),
        image_linker(public_base_url()),
        revised_prompt=batch.choice.prompt if batch.choice.model else None,
        show_seed=job.model.seed)
    body = answers.images_response(
        items, size=job.size, output_format=batch.results[0].content_type.split("/")[-1])
    body.update(extra or {})
    response = jsonify(body)
    tell_neurons(response, ticket.hold.neurons if ticket.hold else None)
    return response


def tell_neurons(response: Response, neurons: float | None) -> None:
    """Put the neurons a generation cost (or is estimated to cost) in `X-Neurons`."""
    if neurons is not None:
        response.headers["X-Neurons"] = f"{neurons:.3f}".rstrip("0").rstrip(".")
