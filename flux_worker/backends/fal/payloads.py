"""The body fal is sent for one image, and the image its answer names (reference §2).

fal's endpoints take the bare input JSON (no envelope). Only the fields a model takes are sent,
built from its ModelSpec (catalog/fal.py): fal validates strictly and answers 422 otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pybase64

from ...catalog.fal import PREFIX
from ...catalog.spec import ModelSpec
from ...generation.backend import GenerationRequest
from ..results import Malformed, link_or_bytes


def endpoint_of(model: ModelSpec) -> str:
    """fal's endpoint id (`fal-ai/flux/dev`) of a catalog model (`fal:fal-ai/flux/dev`)."""
    return model.id[len(PREFIX):] if model.id.startswith(PREFIX) else model.id


def _takes_safety_checker(model: ModelSpec) -> bool:
    # Kontext [pro] has no checker switch (it moderates with `safety_tolerance`); the others do.
    return not model.aspect_ratios


def data_url(data: bytes) -> str:
    """An input image as a data URL.

    Input images go inline rather than through fal's upload route: fal's endpoints accept data
    URIs wherever they take an image URL, so there is no second round trip, no upload credential
    and no file left behind in fal's storage; the intake has already bounded each image
    (MAX_INPUT_IMAGE_BYTES, at most 2500 px a side, PNG), so the body stays bounded too.
    """
    return "data:image/png;base64," + pybase64.b64encode(data).decode("ascii")


def build_body(model: ModelSpec, request: GenerationRequest) -> dict[str, Any]:
    """fal's input for one image of `request`, with only the fields `model` takes.

    One image per call (`num_images` is left at fal's default of 1): the pipeline calls once per
    image of `n`, in parallel, so each image can fall back and be stored on its own.
    """
    body: dict[str, Any] = {"prompt": request.prompt}
    if model.aspect_ratios:
        body["aspect_ratio"] = model.nearest_ratio(request.width, request.height)
    elif model.size is not None:
        width, height = model.upstream_size(request.width, request.height)
        body["image_size"] = {"width": width, "height": height}
    if model.steps_field and request.steps is not None:
        body[model.steps_field] = model.clamp_steps(request.steps)
    guidance = model.clamp_guidance(request.guidance)
    if guidance is not None:
        body["guidance_scale"] = guidance
    if model.seed and request.seed is not None:
        body["seed"] = int(request.seed)
    if model.negative_prompt and request.negative_prompt:
        body["negative_prompt"] = request.negative_prompt
    if _takes_safety_checker(model):
        # Always on, stated rather than left to a default: a flagged picture is refused
        # (`has_nsfw_concepts`), never delivered. No path here ever sends false.
        body["enable_safety_checker"] = True
    # PNG keeps what the pipeline fits and stores lossless (fal's default is JPEG).
    body["output_format"] = "png"
    if model.reference_images and request.images:
        urls = [data_url(image.data) for image in request.images[:model.reference_images]]
        if model.reference_images == 1:
            body["image_url"] = urls[0]
        else:
            body["image_urls"] = urls
    return body




@dataclass(frozen=True)
class Result:
    """The first image of an answer: a link to download, or bytes given inline (data URI)."""

    link: str | None = None
    data: bytes | None = None
    flagged: bool = False       # has_nsfw_concepts[0]: fal's checker flagged it


def read_result(data: Any) -> Result:
    """Read `images[0]` and `has_nsfw_concepts[0]` of fal's output; raise Malformed otherwise."""
    if not isinstance(data, dict):
        raise Malformed("the JSON body is not an object")
    flags = data.get("has_nsfw_concepts")
    flagged = isinstance(flags, list) and bool(flags) and flags[0] is True
    images = data.get("images")
    first = images[0] if isinstance(images, list) and images else None
    url = first.get("url") if isinstance(first, dict) else None
    if flagged:
        return Result(flagged=True)
    if not isinstance(url, str) or not url.strip():
        raise Malformed("no images[0].url in the answer")
    link, raw = link_or_bytes(url, "images[0].url")     # a data URI with sync_mode
    return Result(link=link) if link else Result(data=raw)
