"""What goes over the wire to Cloudflare's partner models, and what comes back.

The body is `{"model": id, "input": {...}}`, and `input` carries only the fields the model takes
(reference: image-providers.md section 1), read from its catalog entry: a partner's own schema
may refuse an unknown field as Workers AI does. The answer is
`{"state": "Completed", "result": {"image": "<link>"}}`; a data: URL or bare base64 in `image`
is taken too, as a provider may inline a small file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pybase64

from ...catalog.spec import ModelSpec
from ...generation.backend import GenerationRequest
from ..results import Malformed, link_or_bytes


@dataclass(frozen=True)
class Wire:
    """How one vendor names the fields the catalog entry does not: image inputs and format."""

    images_field: str = ""          # the list of input images (data: URLs)
    output_format: bool = False     # takes `output_format` (png is asked: lossless, fitted later)


# By the id's vendor prefix, with the models that differ named whole (reference §1, §8).
_WIRES = {
    "openai/": Wire(images_field="images", output_format=True),       # edits: `images`, plural
    "google/nano-banana": Wire(output_format=True),
    "google/": Wire(),                                                # imagen-4: no format field
    "black-forest-labs/flux-2-pro": Wire(images_field="input_images", output_format=True),
    "black-forest-labs/": Wire(),                                # flex: prompt, steps, guidance
}


def wire_for(model: ModelSpec) -> Wire:
    """The most specific wire description whose prefix the model's id has."""
    matches = [prefix for prefix in _WIRES if model.id.startswith(prefix)]
    return _WIRES[max(matches, key=len)] if matches else Wire()


def build_body(model: ModelSpec, request: GenerationRequest) -> dict[str, Any]:
    """`{"model": id, "input": {...}}` with only the fields this model takes."""
    wire = wire_for(model)
    fields: dict[str, Any] = {"prompt": request.prompt}
    if model.size_choices:
        fields["size"] = "%dx%d" % model.upstream_size(request.width, request.height)
    elif model.aspect_ratios:
        fields["aspect_ratio"] = model.nearest_ratio(request.width, request.height)
    elif model.size is not None:
        fields["width"], fields["height"] = model.upstream_size(request.width, request.height)
    if model.steps_field and request.steps is not None:
        fields[model.steps_field] = int(request.steps)
    if model.guidance is not None and request.guidance is not None:
        fields["guidance"] = float(request.guidance)
    if model.seed and request.seed is not None:
        fields["seed"] = int(request.seed)
    if wire.output_format:
        fields["output_format"] = "png"
    if model.transparency and request.background == "transparent":
        fields["background"] = "transparent"
    if wire.images_field and model.reference_images and request.images:
        # Input images are PNG (the intake made them upright PNGs within 2500 px a side).
        fields[wire.images_field] = [
            "data:image/png;base64," + pybase64.b64encode(image.data).decode("ascii")
            for image in request.images[:model.reference_images]]
    return {"model": model.id, "input": fields}




@dataclass(frozen=True)
class Result:
    """The image an answer names: a link to download, or bytes given inline."""

    link: str | None = None
    data: bytes | None = None


def read_result(data: Any) -> Result:
    """Read `result.image` of a completed answer; raise Malformed when there is none."""
    if not isinstance(data, dict):
        raise Malformed("the JSON body is not an object")
    result = data.get("result")
    image = result.get("image") if isinstance(result, dict) else None
    if not isinstance(image, str) or not image.strip():
        raise Malformed("no result.image in the answer")
    # A link, as documented; a data: URL or bare base64 is taken too (tolerated, undocumented).
    link, raw = link_or_bytes(image, "result.image", bare_base64=True)
    return Result(link=link) if link else Result(data=raw)
