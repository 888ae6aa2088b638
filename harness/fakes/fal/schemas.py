"""Each fal endpoint's input, checked as strictly as fal's own validation (reference §2).

A failed check is what fal answers: 422 with `detail: [{loc: ["body", field], msg, type}]`.
The fake is stricter than fal in one way: a field the endpoint does not take is refused
(`extra_forbidden`) instead of ignored, so a service that sends one is caught here.
Nothing here imports flux_worker.
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from typing import Any, Callable

PRESETS = {"square_hd": (1024, 1024), "square": (512, 512), "portrait_4_3": (768, 1024),
           "portrait_16_9": (576, 1024), "landscape_4_3": (1024, 768),
           "landscape_16_9": (1024, 576)}
KONTEXT_RATIOS = ("21:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "9:21")
MAX_SIDE = 14142          # fal's ImageSize bound (about 200 MP)
MAX_INPUT_IMAGES = 10


class Invalid(Exception):
    """One failed check: the field, fal's message and its type."""

    def __init__(self, field: str, msg: str, kind: str):
        super().__init__(msg)
        self.field, self.msg, self.kind = field, msg, kind

    def detail(self) -> dict:
        return {"loc": ["body", self.field], "msg": self.msg, "type": self.kind,
                "url": "https://docs.fal.ai/errors#" + self.kind}


Check = Callable[[str, Any], None]


def _integer(lo: int, hi: int) -> Check:
    def check(field: str, value: Any) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            raise Invalid(field, "Input should be a valid integer", "int_type")
        if not lo <= value <= hi:
            raise Invalid(field, f"Input should be between {lo} and {hi}", "less_than_equal"
                          if value > hi else "greater_than_equal")
    return check


def _number(lo: float, hi: float) -> Check:
    def check(field: str, value: Any) -> None:
        if not isinstance(value, (int, float)) or isinstance(value, bool) \
                or not math.isfinite(value):
            raise Invalid(field, "Input should be a valid number", "float_type")
        if not lo <= value <= hi:
            raise Invalid(field, f"Input should be between {lo:g} and {hi:g}",
                          "less_than_equal" if value > hi else "greater_than_equal")
    return check


def _boolean(field: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise Invalid(field, "Input should be a valid boolean", "bool_type")


def _choice(*allowed: str) -> Check:
    def check(field: str, value: Any) -> None:
        if value not in allowed:
            raise Invalid(field, "Input should be " + ", ".join(repr(a) for a in allowed),
                          "enum")
    return check


def _prompt(field: str, value: Any) -> None:
    if not isinstance(value, str):
        raise Invalid(field, "Input should be a valid string", "string_type")
    if not value.strip():
        raise Invalid(field, "String should have at least 1 character", "string_too_short")


def _seed(field: str, value: Any) -> None:
    _integer(0, 2**63 - 1)(field, value)


def _image_size(auto: bool) -> Check:
    presets = (*PRESETS, *(("auto",) if auto else ()))

    def check(field: str, value: Any) -> None:
        if isinstance(value, str):
            if value not in presets:
                raise Invalid(field, "Input should be " + ", ".join(presets), "enum")
            return
        if not isinstance(value, dict) or set(value) != {"width", "height"}:
            raise Invalid(field, "Input should be a preset or an object with width and height",
                          "model_type")
        for side in ("width", "height"):
            _integer(1, MAX_SIDE)(f"{field}.{side}", value[side])
    return check


def image_link(field: str, value: Any) -> bytes | None:
    """Check an image URL or data URI; the bytes of a data URI (None for a link)."""
    if not isinstance(value, str):
        raise Invalid(field, "Input should be a valid string", "string_type")
    if value.startswith(("https://", "http://")):
        return None
    header, sep, payload = value.partition(",")
    if not header.startswith("data:image/") or ";base64" not in header or not sep:
        raise Invalid(field, "Input should be an image URL or a base64 image data URI",
                      "url_parsing")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise Invalid(field, "The data URI is not valid base64", "value_error") from None
    if not data:
        raise Invalid(field, "The data URI is empty", "value_error")
    return data


def _image_urls(field: str, value: Any) -> None:
    if not isinstance(value, list) or not value:
        raise Invalid(field, "List should have at least 1 item", "too_short")
    if len(value) > MAX_INPUT_IMAGES:
        raise Invalid(field, f"List should have at most {MAX_INPUT_IMAGES} items", "too_long")
    for index, item in enumerate(value):
        image_link(f"{field}.{index}", item)


def _safety_tolerance(field: str, value: Any) -> None:
    # A string "1".."6", not a number (reference §2).
    _choice("1", "2", "3", "4", "5", "6")(field, value)


@dataclass(frozen=True)
class Endpoint:
    """One endpoint's fields: each field's check, and which are required."""

    fields: dict[str, Check]
    required: tuple[str, ...] = ("prompt",)

    def validate(self, body: Any) -> list[Invalid]:
        """Every problem of `body` (fal lists them all)."""
        if not isinstance(body, dict):
            return [Invalid("body", "Input should be a valid dictionary", "model_type")]
        problems = [Invalid(name, "Field required", "missing")
                    for name in self.required if name not in body]
        for name, value in body.items():
            check = self.fields.get(name)
            if check is None:
                problems.append(Invalid(name, "Extra inputs are not permitted",
                                        "extra_forbidden"))
                continue
            try:
                check(name, value)
            except Invalid as exc:
                problems.append(exc)
        return problems


_COMMON: dict[str, Check] = {"prompt": _prompt, "seed": _seed, "sync_mode": _boolean,
                             "num_images": _integer(1, 4),
                             "output_format": _choice("jpeg", "png")}
_FLUX1 = {**_COMMON, "image_size": _image_size(False), "guidance_scale": _number(1, 20),
          "enable_safety_checker": _boolean,
          "acceleration": _choice("none", "regular", "high")}
_PRO = {**_COMMON, "image_size": _image_size(False), "enable_safety_checker": _boolean,
        "safety_tolerance": _safety_tolerance, "enhance_prompt": _boolean}

ENDPOINTS: dict[str, Endpoint] = {
    "fal-ai/flux/schnell": Endpoint({**_FLUX1, "num_inference_steps": _integer(1, 12)}),
    "fal-ai/flux/dev": Endpoint({**_FLUX1, "num_inference_steps": _integer(1, 50)}),
    "fal-ai/flux-pro/v1.1": Endpoint(_PRO),
    "fal-ai/flux-2-pro": Endpoint({k: v for k, v in _PRO.items() if k != "enhance_prompt"}),
    "fal-ai/flux-pro/kontext": Endpoint(
        {**_COMMON, "image_url": image_link, "aspect_ratio": _choice(*KONTEXT_RATIOS),
         "guidance_scale": _number(1, 20), "safety_tolerance": _safety_tolerance,
         "enhance_prompt": _boolean}, required=("prompt", "image_url")),
    "fal-ai/flux-2-flex/edit": Endpoint(
        {**_COMMON, "image_urls": _image_urls, "image_size": _image_size(True),
         "num_inference_steps": _integer(2, 50), "guidance_scale": _number(1.5, 10),
         "enable_safety_checker": _boolean}, required=("prompt", "image_urls")),
}


def output_size(endpoint: str, body: dict, first_input: tuple[int, int] | None
                ) -> tuple[int, int]:
    """The size fal draws: the object asked, a preset's, a ratio's (~1 MP) or the input's."""
    size = body.get("image_size")
    if isinstance(size, dict):
        return size["width"], size["height"]
    if isinstance(size, str) and size in PRESETS:
        return PRESETS[size]
    ratio = body.get("aspect_ratio")
    if isinstance(ratio, str):
        w, h = (int(p) for p in ratio.split(":"))
        scale = math.sqrt(1024 * 1024 / (w * h))
        return int(w * scale) // 16 * 16, int(h * scale) // 16 * 16
    if first_input is not None and endpoint.endswith("/edit"):
        return first_input                      # `auto`: the first input picture's size
    if endpoint.endswith("kontext") and first_input is not None:
        return first_input
    return PRESETS["landscape_4_3"]
