"""The Images API answer, shared by generations, edits and variations: start, render, format."""

from __future__ import annotations

from flask import Response, g, jsonify

from ..generation.job import ImageOrder
from ..openai_api import answers
from .base_url import image_linker, public_base_url
from .callers import request_caller
from .context import services


def images_answer(order: ImageOrder, response_format: str | None, *,
                  name_models: bool = False) -> Response:
    """Render the order's `n` images and answer in OpenAI's Images format.

    `name_models` (edits, variations): say which model drew, and which was asked for when
    EDIT_MODEL stood in; OpenAI's answer allows extra fields.
    """
    svc = services()
    with svc.generations.start(order, request_caller()) as generation:
        job = generation.job
        g.model = job.model.id
        batch = generation.render_all()
    # Like OpenAI's models: GPT image names answer base64 unless asked, DALL·E names links.
    items = answers.image_items(
        batch.results, response_format or svc.models.default_response_format(order.model),
        image_linker(public_base_url()),
        revised_prompt=batch.choice.prompt if batch.choice.model else None,
        show_seed=job.model.seed)
    body = answers.images_response(
        items, size=job.size, output_format=batch.results[0].content_type.split("/")[-1])
    if name_models:
        body["model"] = job.model.id
        if job.requested is not None:
            body["requested_model"] = job.requested.id
    response = jsonify(body)
    tell_neurons(response, generation.neurons)
    return response


def tell_neurons(response: Response, neurons: float | None) -> None:
    """Put the neurons a generation cost (or is estimated to cost) in `X-Neurons`."""
    if neurons is not None:
        response.headers["X-Neurons"] = f"{neurons:.3f}".rstrip("0").rstrip(".")
