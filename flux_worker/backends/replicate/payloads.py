"""What goes over the wire to Replicate, and the prediction that comes back.

The body is `{"input": {...}}` and `input` carries only the fields the model takes (reference:
image-providers.md section 3), read from its catalog entry and the few wire facts below: the
strict fake refuses any other field, as a model's schema may.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import pybase64
from PIL import Image
from pydantic import BaseModel, ConfigDict, ValidationError

from ...catalog.replicate import RATIOS, replicate_name
from ...catalog.spec import ModelSpec, parse_ratio
from ...errors import ImageRefused
from ...generation.backend import GenerationRequest
from ...inputs import pixel_work
from ...inputs.image import InputImage
from ..results import Malformed

# Replicate takes a file inline as a data: URL only when it is small (reference §3: < 256 KB);
# kept under it with room to spare.
DATA_URL_MAX_BYTES = 250_000
# How an input too large for a data URL is made to fit: JPEG (a photo's bytes drop ~10x from
# PNG) at a quality the models cannot tell apart, then smaller sides until it fits. Kontext and
# FLUX.2 work at about one megapixel, so a 1440 px side loses nothing they would have used; a
# picture that does not fit even at the smallest side is refused with a 400 (never seen: a
# 256 px JPEG is ~20 KB). Uploading through Replicate's files API instead would store the
# user's picture at Replicate for an hour under this server's token; inline data is not kept.
INLINE_JPEG_QUALITY = 90
INLINE_LONGEST_SIDES = (1440, 1024, 768, 512, 256)
CUSTOM_STEP = 32            # `aspect_ratio: custom` sides are multiples of 32
# Always png: lossless, the pipeline re-encodes into the format the client asked for anyway.
OUTPUT_FORMAT = "png"


@dataclass(frozen=True)
class Wire:
    """What one model's input names beyond what its catalog entry says."""

    num_outputs: bool = False       # takes `num_outputs` (sent as 1: one image per call)
    ratio_first: bool = True        # an asked size of a listed ratio goes as `aspect_ratio`
    image_field: str = ""           # the input image(s): "image", "input_image", "input_images"
    strength_field: str = ""        # how far an img2img result may move: `prompt_strength`


WIRES = {
    "black-forest-labs/flux-schnell": Wire(num_outputs=True),
    "black-forest-labs/flux-dev": Wire(num_outputs=True, image_field="image",
                                       strength_field="prompt_strength"),
    "black-forest-labs/flux-1.1-pro": Wire(),
    "black-forest-labs/flux-kontext-pro": Wire(image_field="input_image"),
    # FLUX.2 pro's ratios are not in the reference: it always gets `custom` width/height.
    "black-forest-labs/flux-2-pro": Wire(ratio_first=False, image_field="input_images"),
}


def wire_for(model: ModelSpec) -> Wire:
    """The wire facts of a Replicate model (a model not listed takes only the catalog's)."""
    return WIRES.get(replicate_name(model), Wire())


def custom_side(value: int, lo: int, hi: int) -> int:
    """A side for `aspect_ratio: custom`: the nearest multiple of 32 inside lo..hi."""
    rounded = int(value / CUSTOM_STEP + 0.5) * CUSTOM_STEP
    return max(-(-lo // CUSTOM_STEP) * CUSTOM_STEP, min(hi // CUSTOM_STEP * CUSTOM_STEP, rounded))


def exact_ratio(width: int, height: int) -> str | None:
    """The listed ratio that width:height is exactly, if any (1024x576 -> 16:9)."""
    for ratio in RATIOS:
        w, h = parse_ratio(ratio)
        if width * h == height * w:
            return ratio
    return None


def build_input(model: ModelSpec, request: GenerationRequest) -> dict[str, Any]:
    """`{"input": {...}}` with only the fields this model takes."""
    wire = wire_for(model)
    fields: dict[str, Any] = {"prompt": request.prompt}
    if model.aspect_ratios:
        fields["aspect_ratio"] = model.nearest_ratio(request.width, request.height)
    elif model.size is not None:
        ratio = exact_ratio(request.width, request.height) if wire.ratio_first else None
        if ratio is not None:
            fields["aspect_ratio"] = ratio
        else:
            fields["aspect_ratio"] = "custom"
            fields["width"] = custom_side(request.width, model.size.min, model.size.max)
            fields["height"] = custom_side(request.height, model.size.min, model.size.max)
    if wire.num_outputs:
        fields["num_outputs"] = 1     # one image per call: the pipeline calls once per image
    if model.steps_field and request.steps is not None:
        fields[model.steps_field] = model.clamp_steps(request.steps)
    guidance = model.clamp_guidance(request.guidance)
    if guidance is not None:
        fields["guidance"] = guidance
    if model.seed and request.seed is not None:
        fields["seed"] = int(request.seed)
    fields["output_format"] = OUTPUT_FORMAT
    # `disable_safety_checker` is never sent: the checker stays on (its default).
    if wire.image_field and model.max_images and request.images:
        urls = [data_url(image) for image in request.images[:model.max_images]]
        fields[wire.image_field] = urls if wire.image_field.endswith("s") else urls[0]
        if wire.strength_field and request.strength is not None:
            fields[wire.strength_field] = max(0.0, min(1.0, float(request.strength)))
    return {"input": fields}


def data_url(image: InputImage, limit: int = DATA_URL_MAX_BYTES) -> str:
    """The image as a data: URL under `limit` bytes: its PNG when small, else a JPEG that fits.

    :raises ImageRefused: not even the smallest JPEG fits (see INLINE_LONGEST_SIDES).
    """
    if len(image.data) <= limit:
        return _as_url(image.data, "image/png")
    with pixel_work.held(image.width * image.height), \
            Image.open(io.BytesIO(image.data)) as opened:
        picture = _opaque(opened)
        for side in INLINE_LONGEST_SIDES:
            scale = min(1.0, side / max(picture.size))
            shrunk = picture.resize((max(1, round(picture.width * scale)),
                                     max(1, round(picture.height * scale))),
                                    Image.Resampling.LANCZOS) if scale < 1 else picture
            out = io.BytesIO()
            shrunk.save(out, "JPEG", quality=INLINE_JPEG_QUALITY)
            if out.tell() <= limit:
                return _as_url(out.getvalue(), "image/jpeg")
    raise ImageRefused(f"{image.label} cannot be made small enough ({limit // 1000} KB) for "
                       "Replicate's inline images. Send a simpler or smaller picture.",
                       param="image")


def _opaque(img: Image.Image) -> Image.Image:
    """RGB for JPEG; transparent parts on white (what the models read as empty background)."""
    if img.mode in ("RGBA", "LA", "P"):
        rgba = img.convert("RGBA")
        ground = Image.new("RGB", rgba.size, (255, 255, 255))
        ground.paste(rgba, mask=rgba.getchannel("A"))
        return ground
    return img.convert("RGB")


def _as_url(data: bytes, kind: str) -> str:
    return f"data:{kind};base64," + pybase64.b64encode(data).decode("ascii")


# -- the prediction --------------------------------------------------------------------------

RUNNING = ("starting", "processing")
SUCCEEDED, FAILED, CANCELED = "succeeded", "failed", "canceled"




class PredictionLinks(BaseModel):
    model_config = ConfigDict(extra="ignore")

    get: str | None = None
    cancel: str | None = None


class Prediction(BaseModel):
    """The fields of a prediction this service reads (reference §3, Prediction)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    status: str
    output: list[Any] | str | None = None      # a list (schnell, dev) or one link (pro models)
    error: Any = None
    data_removed: bool = False
    urls: PredictionLinks = PredictionLinks()

    @property
    def running(self) -> bool:
        return self.status in RUNNING

    def first_output(self) -> str:
        """The link of the one image asked for, whether `output` is a list or a string."""
        output = self.output[0] if isinstance(self.output, list) and self.output else \
            self.output
        if not isinstance(output, str) or not output.strip():
            if self.data_removed:
                raise Malformed("its files were already removed (data_removed)")
            raise Malformed("it succeeded without an output link")
        return output.strip()

    def error_text(self) -> str:
        """The failure's message, in one line."""
        return " ".join(str(self.error or "").split())


def read_prediction(data: Any) -> Prediction:
    """Parse a prediction once; raise Malformed when the answer is not one."""
    if not isinstance(data, dict):
        raise Malformed("the JSON body is not an object")
    try:
        return Prediction.model_validate(data)
    except ValidationError as exc:
        field = ".".join(str(part) for part in exc.errors()[0]["loc"]) or "the body"
        raise Malformed(f"its prediction has no valid `{field}`") from exc
