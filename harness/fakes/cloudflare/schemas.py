"""Per-model input schemas and request validation, including the image-input checks."""

from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass
from typing import Any

from PIL import Image
from werkzeug.datastructures import FileStorage

# ============================================================================================
# Per-model input schemas (reference §1 table and §2), written independently of the service.
# ============================================================================================

@dataclass(frozen=True)
class Prop:
    """One input property, as the model's JSON schema describes it.

    type: "string", "integer", "number", "uint8[]" (JSON array of bytes, SD `image`/`mask`)
    or "binary" (a multipart file part, flux-2 `input_image_N`).
    """

    type: str
    minimum: float | None = None
    maximum: float | None = None
    min_length: int | None = None
    max_length: int | None = None


@dataclass(frozen=True)
class ModelSchema:
    """What one model accepts and how it answers."""

    id: str
    encoding: str                     # "json" or "multipart"
    props: dict[str, Prop]
    response: str                     # "envelope" (JSON result.image base64) or "binary"
    image_format: str                 # "JPEG" or "PNG"
    default_size: tuple[int, int]
    sized: bool                       # False: width/height do not exist, output size is fixed
    required: tuple[str, ...] = ("prompt",)

    @property
    def mimetype(self) -> str:
        return "image/jpeg" if self.image_format == "JPEG" else "image/png"


_PROMPT = Prop("string", min_length=1)   # only schnell documents a maxLength (§1)

# flux-2 dev/klein (§2): multipart only; sizes 256-1920; reference images input_image_0..3.
# steps and guidance have no documented range, so only their type is enforced.
_FLUX2 = {
    "prompt": _PROMPT,
    "guidance": Prop("number"),
    "width": Prop("integer", 256, 1920),
    "height": Prop("integer", 256, 1920),
    "seed": Prop("integer", minimum=0),
    **{f"input_image_{i}": Prop("binary") for i in range(4)},
}

# SD family (§2): one shared schema; num_steps documents a maximum of 20 and no minimum.
_SD = {
    "prompt": _PROMPT,
    "negative_prompt": Prop("string"),
    "height": Prop("integer", 256, 2048),
    "width": Prop("integer", 256, 2048),
    "image": Prop("uint8[]"),
    "image_b64": Prop("string"),
    "mask": Prop("uint8[]"),
    "num_steps": Prop("integer", maximum=20),
    "strength": Prop("number", 0, 1),
    "guidance": Prop("number"),
    "seed": Prop("integer"),
}

_SCHEMAS = (
    # §0/§2: the 2026 schema has additionalProperties:false: ONLY prompt and steps; fixed 1024².
    ModelSchema("@cf/black-forest-labs/flux-1-schnell", "json",
                {"prompt": Prop("string", min_length=1, max_length=2048),
                 "steps": Prop("integer", 1, 8)},
                "envelope", "JPEG", (1024, 1024), sized=False),
    ModelSchema("@cf/black-forest-labs/flux-2-dev", "multipart",
                {**_FLUX2, "steps": Prop("integer", minimum=1)},
                "envelope", "PNG", (1024, 768), sized=True),
    # klein: steps are fixed at 4 and not settable, so `steps` is an unknown property (§2).
    ModelSchema("@cf/black-forest-labs/flux-2-klein-4b", "multipart", dict(_FLUX2),
                "envelope", "PNG", (1024, 768), sized=True),
    ModelSchema("@cf/black-forest-labs/flux-2-klein-9b", "multipart", dict(_FLUX2),
                "envelope", "PNG", (1024, 768), sized=True),
    # lucid-origin accepts num_steps *or* steps (§2); answers base64 JPEG in the envelope (3P).
    ModelSchema("@cf/leonardo/lucid-origin", "json",
                {"prompt": _PROMPT,
                 "width": Prop("integer", 0, 2500), "height": Prop("integer", 0, 2500),
                 "num_steps": Prop("integer", 1, 40), "steps": Prop("integer", 1, 40),
                 "guidance": Prop("number", 0, 10), "seed": Prop("integer", minimum=0)},
                "envelope", "JPEG", (1120, 1120), sized=True),
    # phoenix: only num_steps; raw image/jpeg bytes (§2, §3).
    ModelSchema("@cf/leonardo/phoenix-1.0", "json",
                {"prompt": _PROMPT,
                 "width": Prop("integer", 0, 2048), "height": Prop("integer", 0, 2048),
                 "num_steps": Prop("integer", 1, 50), "guidance": Prop("number", 2, 10),
                 "seed": Prop("integer", minimum=0), "negative_prompt": Prop("string")},
                "binary", "JPEG", (1024, 1024), sized=True),
    ModelSchema("@cf/bytedance/stable-diffusion-xl-lightning", "json", dict(_SD),
                "binary", "PNG", (1024, 1024), sized=True),
    ModelSchema("@cf/stabilityai/stable-diffusion-xl-base-1.0", "json", dict(_SD),
                "binary", "PNG", (1024, 1024), sized=True),
    ModelSchema("@cf/lykon/dreamshaper-8-lcm", "json", dict(_SD),
                "binary", "PNG", (1024, 1024), sized=True),
)
# --- image input (issue 11): SD 1.5 img2img and inpainting (reference §1, §2, §8) -------------
# Same schema as the SD family, but these models change a source image: img2img needs `image`
# or `image_b64`, inpainting also a `mask` the size of the image (checked by _check_sources).
_SD15_IMG2IMG = "@cf/runwayml/stable-diffusion-v1-5-img2img"
_SD15_INPAINTING = "@cf/runwayml/stable-diffusion-v1-5-inpainting"
_SCHEMAS += (
    ModelSchema(_SD15_IMG2IMG, "json", dict(_SD), "binary", "PNG", (512, 512), sized=True),
    ModelSchema(_SD15_INPAINTING, "json", dict(_SD), "binary", "PNG", (512, 512), sized=True),
)
_NEEDS_SOURCE = {_SD15_IMG2IMG: False, _SD15_INPAINTING: True}   # model -> needs a mask too


def _decode_input(name: str, data: bytes) -> tuple[int, int]:
    """The size of an input image; an undecodable one is 3030, as Cloudflare answers (§4)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return img.size
    except Exception as exc:  # any decoder failure
        raise Flagged(f"AiError: 3030: Input image '/{name}' could not be decoded") from exc


def _check_sources(schema_id: str, fields: dict[str, Any]) -> None:
    """Enforce the image inputs of the SD 1.5 image models: present, decodable, same size."""
    if schema_id not in _NEEDS_SOURCE:
        return
    given = [n for n in ("image", "image_b64") if n in fields]
    if not given:
        raise BadInput("Error: Missing required properties '/image' or '/image_b64' at '/'")
    if len(given) > 1:
        raise BadInput("Error: oneOf at '/' not met: send either '/image' or '/image_b64'")
    if given[0] == "image_b64":
        try:
            source = base64.b64decode(fields["image_b64"], validate=True)
        except ValueError:
            raise BadInput("Error: '/image_b64' is not valid base64") from None
    else:
        source = bytes(fields["image"])
    size = _decode_input(given[0], source)
    if _NEEDS_SOURCE[schema_id]:
        if "mask" not in fields:
            raise BadInput("Error: Missing required properties '/mask' at '/'")
        mask_size = _decode_input("mask", bytes(fields["mask"]))
        if mask_size != size:
            raise BadInput(f"Error: '/mask' must be the size of the image ({size[0]}x{size[1]}), "
                           f"got {mask_size[0]}x{mask_size[1]}")
    elif "mask" in fields:
        raise BadInput("Additional or unevaluated properties '/mask' at '/' not allowed")
# --- end image input -----------------------------------------------------------------------------

MODELS: dict[str, ModelSchema] = {m.id: m for m in _SCHEMAS}


class BadInput(Exception):
    """A schema violation: answered as HTTP 400, code 5006, `AiError: Bad input: ...`."""


class Flagged(Exception):
    """Something the model refuses (3030 is generic, e.g. an undecodable input image, §4)."""


def _js_type(value: Any) -> str:
    """The JSON-schema type name of a parsed JSON value, as a JS validator would report it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "binary" if isinstance(value, FileStorage) else type(value).__name__


def _mismatch(name: str, value: Any, expected: str) -> BadInput:
    return BadInput(f"Type mismatch of '/{name}', '{_js_type(value)}' not in '{expected}'")


def _check_range(name: str, value: float, prop: Prop) -> None:
    if prop.minimum is not None and value < prop.minimum:
        raise BadInput(f"Error: Value of '/{name}' must be >= {_num(prop.minimum)}")
    if prop.maximum is not None and value > prop.maximum:
        raise BadInput(f"Error: Value of '/{name}' must be <= {_num(prop.maximum)}")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _check_value(name: str, value: Any, prop: Prop) -> Any:
    """Check one JSON value against its property; return it normalised (ints as int)."""
    kind = _js_type(value)
    if prop.type == "string":
        if kind != "string":
            raise _mismatch(name, value, "string")
        if prop.min_length is not None and len(value) < prop.min_length:
            raise BadInput(f"Error: Length of '/{name}' must be >= {prop.min_length}")
        if prop.max_length is not None and len(value) > prop.max_length:
            raise BadInput(f"Error: Length of '/{name}' must be <= {prop.max_length}")
        return value
    if prop.type == "integer":
        # JSON schema (and JS) count 4.0 as an integer; booleans are never numbers.
        if kind != "integer":
            raise _mismatch(name, value, "integer")
        _check_range(name, value, prop)
        return int(value)
    if prop.type == "number":
        if kind not in ("integer", "number"):
            raise _mismatch(name, value, "number")
        _check_range(name, value, prop)
        return value
    if prop.type == "uint8[]":
        if kind != "array":
            raise _mismatch(name, value, "array")
        for i, item in enumerate(value):
            _check_value(f"{name}/{i}", item, Prop("integer", 0, 255))
        return value
    if prop.type == "binary":
        if not isinstance(value, FileStorage):
            raise _mismatch(name, value, "binary")
        return value
    raise AssertionError(prop.type)


def _extras_and_missing(schema: ModelSchema, names: list[str]) -> None:
    extras = [n for n in names if n not in schema.props]
    if extras:
        # The exact shape of the live rejection (§0): "... '/width, /height' at '/' not allowed".
        listed = ", ".join("/" + n for n in extras)
        raise BadInput(f"Additional or unevaluated properties '{listed}' at '/' not allowed")
    missing = [n for n in schema.required if n not in names]
    if missing:
        raise BadInput("Error: Missing required properties '"
                       + ", ".join("/" + n for n in missing) + "' at '/'")


def validate_json(schema: ModelSchema, body: Any) -> dict[str, Any]:
    """Validate a parsed JSON body for a JSON model; return the normalised fields."""
    if not isinstance(body, dict):
        raise BadInput(f"Type mismatch of '/', '{_js_type(body)}' not in 'object'")
    _extras_and_missing(schema, list(body))
    return {name: _check_value(name, value, schema.props[name]) for name, value in body.items()}


_INT_TEXT = re.compile(r"^[+-]?\d+$")
_NUMBER_TEXT = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def validate_form(schema: ModelSchema, form: dict[str, str],
                  files: dict[str, FileStorage]) -> dict[str, Any]:
    """Validate multipart fields for a flux-2 model; numbers arrive as strings and must parse."""
    _extras_and_missing(schema, list(form) + [n for n in files if n not in form])
    out: dict[str, Any] = {}
    for name, text in form.items():
        prop = schema.props[name]
        if prop.type == "integer":
            if not _INT_TEXT.match(text.strip()):
                raise _mismatch(name, text, "integer")
            out[name] = _check_value(name, int(text), prop)
        elif prop.type == "number":
            if not _NUMBER_TEXT.match(text.strip()):
                raise _mismatch(name, text, "number")
            out[name] = _check_value(name, float(text), prop)
        else:
            out[name] = _check_value(name, text, prop)
    for name, upload in files.items():
        if name in form:
            continue
        prop = schema.props[name]
        if prop.type != "binary":
            # A text field sent as a file part (with a filename) is a Blob, not a string.
            raise BadInput(f"Type mismatch of '/{name}', 'binary' not in '{prop.type}'")
        out[name] = _check_reference_image(name, upload)
    return out


def _check_reference_image(name: str, upload: FileStorage) -> dict[str, Any]:
    """flux-2 reference images must decode and be smaller than 512x512 (§2)."""
    data = upload.read()
    try:
        with Image.open(io.BytesIO(data)) as img:
            size = img.size
    except Exception as exc:  # any decoder failure: 3030 covers undecodable input images (§4)
        raise Flagged("AiError: 3030: Input image could not be decoded") from exc
    if size[0] >= 512 or size[1] >= 512:   # "smaller than 512x512": 512 itself is too big
        # The limit is documented; the error code for it is not. 5006 is the natural guess.
        raise BadInput(f"Error: '/{name}' must be smaller than 512x512, got {size[0]}x{size[1]}")
    return {"filename": upload.filename, "size": len(data), "width": size[0], "height": size[1]}
