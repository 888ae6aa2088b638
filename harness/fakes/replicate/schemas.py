"""The input schemas of the fake's Replicate models (image-providers.md §3), and their check.

Written from the reference, not from flux_worker. Each field is a type with its range or enum;
a field the model does not declare is refused (stricter than Replicate, so that the service's
mistakes show), as are wrong types (a bool is no integer), values out of range and enums.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass
from typing import Any

from PIL import Image

RATIOS = ("1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21")
FORMATS = ("webp", "jpg", "png")
DATA_URL_LIMIT = 256 * 1024        # "data URLs for small files (<256 KB)"
_DATA_URL = re.compile(r"data:(image/[a-z+.-]+);base64,(.*)", re.S)


class Invalid(Exception):
    """An input Replicate refuses with 422; `field` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class Field:
    kind: str                       # "string", "integer", "number", "boolean", "file", "files"
    lo: float | None = None
    hi: float | None = None
    choices: tuple[Any, ...] = ()
    multiple: int = 0               # integers that must be a multiple of this
    max_items: int = 0              # "files": how many


@dataclass(frozen=True)
class Model:
    fields: dict[str, Field]
    list_output: bool               # `output` is a list (schnell, dev) or one link (the others)
    default_ratio: str = "1:1"


def _common(**more: Field) -> dict[str, Field]:
    return {"prompt": Field("string"), "seed": Field("integer"),
            "output_format": Field("string", choices=FORMATS),
            "output_quality": Field("integer", 0, 100), **more}


MODELS: dict[str, Model] = {
    "black-forest-labs/flux-schnell": Model(_common(
        aspect_ratio=Field("string", choices=RATIOS), num_outputs=Field("integer", 1, 4),
        num_inference_steps=Field("integer", 1, 4), go_fast=Field("boolean"),
        megapixels=Field("string", choices=("1", "0.25")),
        disable_safety_checker=Field("boolean")), list_output=True),
    "black-forest-labs/flux-dev": Model(_common(
        aspect_ratio=Field("string", choices=RATIOS), num_outputs=Field("integer", 1, 4),
        num_inference_steps=Field("integer", 1, 50), guidance=Field("number", 0, 10),
        image=Field("file"), prompt_strength=Field("number", 0, 1), go_fast=Field("boolean"),
        megapixels=Field("string", choices=("1", "0.25")),
        disable_safety_checker=Field("boolean")), list_output=True),
    "black-forest-labs/flux-1.1-pro": Model(_common(
        aspect_ratio=Field("string", choices=RATIOS + ("custom",)),
        width=Field("integer", 256, 1440, multiple=32),
        height=Field("integer", 256, 1440, multiple=32),
        safety_tolerance=Field("integer", 1, 6), prompt_upsampling=Field("boolean"),
        image_prompt=Field("file")), list_output=False),
    "black-forest-labs/flux-kontext-pro": Model({
        "prompt": Field("string"), "seed": Field("integer"), "input_image": Field("file"),
        "aspect_ratio": Field("string", choices=RATIOS + ("match_input_image",)),
        "output_format": Field("string", choices=("jpg", "png")),
        "safety_tolerance": Field("integer", 0, 6), "prompt_upsampling": Field("boolean")},
        list_output=False, default_ratio="match_input_image"),
    "black-forest-labs/flux-2-pro": Model(_common(
        input_images=Field("files", max_items=8),
        aspect_ratio=Field("string", choices=RATIOS + ("custom", "match_input_image")),
        width=Field("integer", 256, 2048, multiple=32),
        height=Field("integer", 256, 2048, multiple=32),
        safety_tolerance=Field("integer", 1, 5)), list_output=False),
}


def validate(model: Model, fields: Any) -> list[tuple[int, int]]:
    """Check `input`; return the sizes of its inline images, first first.

    :raises Invalid: the first field Replicate would refuse.
    """
    if not isinstance(fields, dict):
        raise Invalid("input", "must be an object")
    if not isinstance(fields.get("prompt"), str) or not fields["prompt"].strip():
        raise Invalid("prompt", "is required")
    images: list[tuple[int, int]] = []
    for name, value in fields.items():
        spec = model.fields.get(name)
        if spec is None:
            raise Invalid(name, "Additional property is not allowed")
        images += _check(name, spec, value)
    if fields.get("aspect_ratio") == "custom" and not ("width" in fields and "height" in fields):
        raise Invalid("width", "width and height are required with aspect_ratio custom")
    if "input_image" in fields and fields.get("safety_tolerance", 2) > 2:
        raise Invalid("safety_tolerance", "must be at most 2 with an input image")
    return images


def _check(name: str, spec: Field, value: Any) -> list[tuple[int, int]]:
    if spec.kind == "files":
        if not isinstance(value, list) or len(value) > spec.max_items:
            raise Invalid(name, f"must be an array of at most {spec.max_items} files")
        return [_file(f"{name}.{i}", item) for i, item in enumerate(value)]
    if spec.kind == "file":
        return [_file(name, value)]
    ok = {"string": isinstance(value, str),
          "boolean": isinstance(value, bool),
          "integer": isinstance(value, int) and not isinstance(value, bool),
          "number": isinstance(value, (int, float)) and not isinstance(value, bool)}[spec.kind]
    if not ok:
        raise Invalid(name, f"Invalid type. Expected: {spec.kind}")
    if spec.choices and value not in spec.choices:
        raise Invalid(name, f"must be one of {', '.join(map(str, spec.choices))}")
    if spec.lo is not None and value < spec.lo or spec.hi is not None and value > spec.hi:
        raise Invalid(name, f"must be between {spec.lo:g} and {spec.hi:g}")
    if spec.multiple and value % spec.multiple:
        raise Invalid(name, f"must be a multiple of {spec.multiple}")
    return []


def _file(name: str, value: Any) -> tuple[int, int]:
    """A file input: an https link (taken as 1024x1024) or a small image data URL."""
    if isinstance(value, str) and value.startswith(("https://", "http://")):
        return (1024, 1024)
    match = _DATA_URL.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise Invalid(name, "must be a URL or a base64 image data URL")
    try:
        data = base64.b64decode(match.group(2), validate=True)
    except (binascii.Error, ValueError):
        raise Invalid(name, "the data URL is not valid base64") from None
    if len(data) >= DATA_URL_LIMIT:
        raise Invalid(name, "data URLs must be under 256 KB; upload larger files")
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except Exception:                                  # noqa: BLE001 - any undecodable file
        raise Invalid(name, "the file is not an image") from None


def output_size(model: Model, fields: dict, images: list[tuple[int, int]]) -> tuple[int, int]:
    """What the model draws: custom sides, the ratio at about one megapixel, or the input's."""
    ratio = fields.get("aspect_ratio", model.default_ratio)
    if ratio == "custom":
        return fields["width"], fields["height"]
    if ratio == "match_input_image":
        w, h = images[0] if images else (1, 1)
    else:
        w, h = (int(part) for part in ratio.split(":"))
    scale = (1024 * 1024 / (w * h)) ** 0.5
    return max(64, round(w * scale / 64) * 64), max(64, round(h * scale / 64) * 64)
