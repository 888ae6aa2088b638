"""The partner models' input schemas (JSON Schema, as Cloudflare's schema route serves them).

From image-providers.md sections 1 and 8: the fields each model's page shows, with the enums and
ranges known; partners.py enforces them, model_search.py serves them.
"""

from __future__ import annotations

from typing import Any


def _string(*, enum: tuple[str, ...] = (), min_length: int | None = None) -> dict:
    schema: dict[str, Any] = {"type": "string"}
    if enum:
        schema["enum"] = list(enum)
    if min_length is not None:
        schema["minLength"] = min_length
    return schema


def _number(kind: str, minimum: float | None = None, maximum: float | None = None,
            default: float | None = None) -> dict:
    schema: dict[str, Any] = {"type": kind}
    for key, value in (("minimum", minimum), ("maximum", maximum), ("default", default)):
        if value is not None:
            schema[key] = value
    return schema


def _images(max_items: int, what: str) -> dict:
    return {"type": "array", "maxItems": max_items, "description": what,
            "items": {"type": "string"}}


_PROMPT = _string(min_length=1)
_GOOGLE_RATIOS = ("1:1", "3:4", "4:3", "9:16", "16:9")
_BANANA_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
_GPT = {"prompt": _PROMPT,
        "size": _string(enum=("1024x1024", "1536x1024", "1024x1536", "auto")),
        "quality": _string(enum=("low", "medium", "high", "auto")),
        "output_format": _string(enum=("png", "jpeg", "webp")),
        "images": _images(16, "input images for an edit: base64 or data:image/...;base64")}
_BANANA = {"prompt": _PROMPT, "aspect_ratio": _string(enum=_BANANA_RATIOS),
           "output_format": _string(enum=("png", "jpeg")),
           "image_size": _string(enum=("1K", "2K", "4K"))}

# Each partner model's input schema (JSON Schema, as the schema route serves it) and what it says.
PARTNER_MODELS: dict[str, tuple[str, dict[str, dict]]] = {
    "openai/gpt-image-2": ("OpenAI's GPT Image 2", _GPT),
    "openai/gpt-image-1.5": ("OpenAI's GPT Image 1.5, with transparent backgrounds",
                             {**_GPT, "background": _string(enum=("transparent", "opaque",
                                                                  "auto"))}),
    "google/nano-banana-2": ("Google's Nano Banana 2", _BANANA),
    "google/nano-banana": ("Google's Nano Banana (Gemini 2.5 Flash Image)", _BANANA),
    "google/imagen-4": ("Google's Imagen 4",
                        {"prompt": _PROMPT, "aspect_ratio": _string(enum=_GOOGLE_RATIOS),
                         "person_generation": _string(enum=("dont_allow", "allow_adult",
                                                            "allow_all"))}),
    "black-forest-labs/flux-2-pro-preview": (
        "FLUX.2 [pro] preview",
        {"prompt": _PROMPT, "width": _number("integer", 64, 2048),
         "height": _number("integer", 64, 2048), "seed": _number("integer", 0),
         "safety_tolerance": _number("integer", 0, 5),
         "output_format": _string(enum=("jpeg", "png", "webp")),
         "input_images": _images(8, "reference images: https links or data URIs")}),
    "black-forest-labs/flux-2-flex": (
        "FLUX.2 [flex]",
        {"prompt": _PROMPT, "guidance": _number("number", 1.5, 10, 7.5),
         "steps": _number("integer", 1, 50, 50)}),
}
