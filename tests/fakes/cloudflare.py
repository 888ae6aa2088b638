"""A strict, fast test double of Cloudflare Workers AI, an OpenAI-compatible LLM and Images API.

What it models, and why it exists
---------------------------------
flux-worker calls Workers AI over REST. End-to-end tests run the real service under gunicorn with
``CF_API_BASE=http://127.0.0.1:<port>`` pointing here, and a benchmark uses it as a stand-in model
server. The fake is therefore *strict like today's API*: it enforces each model's input schema and
answers each model with its own encoding, so a service that builds a wrong request fails here the
way it would fail against Cloudflare.

Everything below was written from ``/work/shared/reference/cloudflare-workers-ai.md`` (section
numbers in comments refer to it). The fake deliberately does NOT import ``flux_worker``: it is an
independent model of Cloudflare, so it can catch the service's mistakes instead of copying them.
Where the reference gives a real error body it is reproduced; where it gives none (e.g. the exact
text of a type error) the text imitates the observed ``AiError: Bad input: ...`` style.

Routes
------
* ``POST [/client/v4]/accounts/<account>/ai/run/<model>``: text-to-image (§1-§4).
* ``POST /gateway/v1/<account>/<gateway>/workers-ai/[run/]<model>``: the AI Gateway forms (§7).
* ``POST [/client/v4]/accounts/<account>/ai/v1/chat/completions``, the gateway's
  ``.../workers-ai/v1/chat/completions`` and ``POST /v1/chat/completions``: OpenAI-style LLM (§5).
* ``POST /v1/images/generations`` and ``GET /_fake/files/<id>.png``: an OpenAI Images API.
* ``/_fake/...``: control (faults, recorded requests, LLM reply, reset, health).

Use
---
* in-process: ``srv = start(latency=0)``; ``srv.url``, ``srv.add_faults("3030")``, ``srv.stop()``;
* a Flask test client: ``make_app().test_client()``;
* standalone: ``python -m tests.fakes.cloudflare --port 8788 --latency 2.0 --image-kb 150``;
* gunicorn: ``gunicorn 'tests.fakes.cloudflare:make_app(latency=2.0, image_kb=150)'`` (control
  state such as queued faults is per worker process, so use one worker when injecting faults).
"""

from __future__ import annotations

import argparse
import base64
import collections
import hashlib
import io
import itertools
import json
import random
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, current_app, request
from PIL import Image, ImageDraw
from werkzeug.datastructures import FileStorage
from werkzeug.serving import WSGIRequestHandler, make_server

DEFAULT_ACCOUNT_ID = "test-account"
DEFAULT_API_TOKEN = "test-cf-token"
DEFAULT_LLM_KEY = "test-llm-key"
DEFAULT_LLM_REPLY = ("<think>The user wants a picture; describe it vividly.</think>"
                     "A cute cat sitting on a windowsill, soft morning light, highly detailed")
DEFAULT_FAULT_SLEEP = 5.0
RATE_LIMIT_RETRY_AFTER = 7


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


# ============================================================================================
# Images: cheap, deterministic, cached (the fake must sustain hundreds of requests/second).
# ============================================================================================

class ImageMaker:
    """Draws and caches one image, and one encoded response body, per (model, size, format)."""

    MAX_ENTRIES = 256

    def __init__(self, image_kb: int | None = None):
        self.image_kb = image_kb
        self._images: dict[tuple, bytes] = {}
        self._bodies: dict[tuple, bytes] = {}
        self._lock = threading.Lock()

    def image(self, model: str, width: int, height: int, fmt: str) -> bytes:
        key = (model, width, height, fmt)
        data = self._images.get(key)
        if data is None:
            # Held while drawing so a burst of first requests draws the image only once.
            with self._lock:
                data = self._images.get(key)
                if data is None:
                    if len(self._images) >= self.MAX_ENTRIES:
                        self._images.clear()
                    data = self._images[key] = self._draw(model, width, height, fmt)
        return data

    def envelope(self, model: str, width: int, height: int, fmt: str) -> bytes:
        """The whole success body `{"result":{"image":b64},...}`, serialised once."""
        key = (model, width, height, fmt)
        body = self._bodies.get(key)
        if body is None:
            b64 = base64.b64encode(self.image(model, width, height, fmt))
            body = (b'{"result":{"image":"' + b64
                    + b'"},"success":true,"errors":[],"messages":[]}')
            with self._lock:
                if len(self._bodies) >= self.MAX_ENTRIES:
                    self._bodies.clear()
                self._bodies[key] = body
        return body

    def _draw(self, model: str, width: int, height: int, fmt: str) -> bytes:
        img = _base_picture(model, width, height)
        if fmt == "PNG":
            out = io.BytesIO()
            img.save(out, "PNG", compress_level=1)   # speed over size: it is a test double
            return out.getvalue()
        if self.image_kb:
            return _jpeg_of_size(img, model, self.image_kb * 1024)
        return _jpeg(img)


def _base_picture(model: str, width: int, height: int) -> Image.Image:
    """A smooth gradient with a disc and a label; colours depend only on the model name."""
    digest = hashlib.sha256(model.encode()).digest()
    # Upscaling a 2x2 image bilinearly gives a four-corner gradient in C, for any size.
    img = Image.frombytes("RGB", (2, 2), digest[:12]).resize((width, height), Image.BILINEAR)
    draw = ImageDraw.Draw(img)
    r = min(width, height) // 4
    cx, cy = width // 2, height // 2
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=tuple(digest[12:15]))
    draw.text((8, 8), f"fake {model.rsplit('/', 1)[-1]} {width}x{height}", fill=(255, 255, 255))
    return img


def _jpeg(img: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


def _jpeg_of_size(img: Image.Image, model: str, target: int) -> bytes:
    """A JPEG of about `target` bytes: seeded noise raises the entropy, a comment pads the rest.

    Noise (not only padding) is used so that a service that decodes/re-encodes the image pays the
    cost of a realistic, detailed picture. Everything is seeded, so the result is deterministic.
    """
    w, h = img.size
    rng = random.Random(f"{model}:{w}x{h}")
    noise = Image.frombytes("RGB", (w, h), rng.randbytes(w * h * 3))
    best = _jpeg(img)
    if len(best) < target:
        lo, hi = 0.0, 1.0
        for _ in range(12):                        # bisection on the noise weight
            mid = (lo + hi) / 2
            data = _jpeg(Image.blend(img, noise, mid))
            if len(data) <= target:
                best, lo = data, mid
                if target - len(data) < target * 0.01:
                    break
            else:
                hi = mid
    return _pad_jpeg(best, target)


def _pad_jpeg(data: bytes, target: int) -> bytes:
    """Insert COM segments after SOI/APP0 so the file is `target` bytes (decoders skip them)."""
    missing = target - len(data)
    if missing < 4:
        return data
    at = 2
    if data[2:4] == b"\xff\xe0":                   # keep JFIF's APP0 right after SOI
        at = 4 + int.from_bytes(data[4:6], "big")
    segments = []
    while missing >= 4:
        chunk = min(missing, 65535 + 2)            # length field counts itself, max 65535
        payload = chunk - 4
        segments.append(b"\xff\xfe" + (payload + 2).to_bytes(2, "big") + b"\x00" * payload)
        missing -= chunk
    return data[:at] + b"".join(segments) + data[at:]


# ============================================================================================
# Faults (reference §4 bodies) and mutable state.
# ============================================================================================

IMAGE_FAULTS = ("3030", "4006", "3036", "3040", "5006", "10000", "7003", "500", "502", "503",
                "504", "8008", "rate_limit", "timeout", "malformed_json", "no_image",
                "not_image", "bad_base64", "empty", "close", "trickle", "huge")
# What a load test's random failures are drawn from: the answers a busy account really sees.
RANDOM_FAULTS = ("3030", "3040", "4006", "500", "rate_limit", "malformed_json", "not_image")
LLM_FAULTS = ("timeout", "500", "503", "empty", "empty_body", "malformed_json", "4006",
              "rate_limit", "close", "trickle")
TRICKLE_SECONDS = 1.0        # "trickle": status and headers at once, then one byte a second
HUGE_BYTES = 100 * 1024 * 1024   # "huge": a 200 answer this long, streamed without a length


def _trickle() -> Response:
    """A 200 whose body never completes in reasonable time: one byte per TRICKLE_SECONDS."""
    def body():
        for _ in range(3600):
            yield b" "
            time.sleep(TRICKLE_SECONDS)
    return Response(body(), status=200, mimetype="application/json")


def _huge() -> Response:
    """A 200 JSON answer of HUGE_BYTES, streamed (no Content-Length to refuse it by)."""
    chunk = b" " * (1024 * 1024)

    def body():
        yield b'{"result": {"image": "'
        for _ in range(HUGE_BYTES // len(chunk)):
            yield chunk
    return Response(body(), status=200, mimetype="application/json")


def _normalise_fault(fault: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
    """Faults are strings ("3030") or objects ({"kind": "timeout", "seconds": 3})."""
    if isinstance(fault, (str, int)) and not isinstance(fault, bool):
        fault = {"kind": str(fault)}
    if not isinstance(fault, dict) or str(fault.get("kind")) not in allowed:
        raise ValueError(f"unknown fault {fault!r}; known: {', '.join(allowed)}")
    fault = dict(fault, kind=str(fault["kind"]))
    if "seconds" in fault and not isinstance(fault["seconds"], (int, float)):
        raise ValueError("fault 'seconds' must be a number")
    return fault


@dataclass
class FakeState:
    """Everything the control routes change; shared by all request threads."""

    account_id: str = DEFAULT_ACCOUNT_ID
    api_token: str = DEFAULT_API_TOKEN
    llm_key: str = DEFAULT_LLM_KEY
    gateway_token: str | None = None
    gateway_run_only: bool = False
    latency: float = 0.0
    llm_latency: float = 0.0
    fault_sleep: float = DEFAULT_FAULT_SLEEP
    llm_reply: str = DEFAULT_LLM_REPLY
    images: ImageMaker = field(default_factory=ImageMaker)
    record_limit: int = 10000
    fail_rate: float = 0.0
    # -- several accounts (cost control): more account_id -> token pairs, accounts whose daily
    # allocation is used up (answered 4006), and the `cf-ai-neurons` figure to report, if any.
    more_accounts: dict = field(default_factory=dict)
    exhausted: set = field(default_factory=set)
    neurons_header: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    faults: collections.deque = field(default_factory=collections.deque)
    llm_faults: collections.deque = field(default_factory=collections.deque)
    files: collections.OrderedDict = field(default_factory=collections.OrderedDict)
    counter: Any = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self):
        self.recorded: collections.deque = collections.deque(maxlen=self.record_limit)

    def add_faults(self, faults: list, *, llm: bool = False) -> None:
        parsed = [_normalise_fault(f, LLM_FAULTS if llm else IMAGE_FAULTS) for f in faults]
        with self.lock:
            (self.llm_faults if llm else self.faults).extend(parsed)

    def pop_fault(self, *, llm: bool = False) -> dict | None:
        with self.lock:
            queue = self.llm_faults if llm else self.faults
            if queue:
                return queue.popleft()
        if not llm and self.fail_rate and random.random() < self.fail_rate:
            # Load tests: a share of generations fails with one of the upstream's real errors.
            return {"kind": random.choice(RANDOM_FAULTS)}
        return None

    def record(self, entry: dict) -> dict:
        entry["seq"] = next(self.counter)
        with self.lock:
            self.recorded.append(entry)
        return entry

    def requests(self) -> list[dict]:
        with self.lock:
            return [dict(e) for e in self.recorded]

    def reset(self) -> None:
        with self.lock:
            self.faults.clear()
            self.llm_faults.clear()
            self.recorded.clear()
            self.files.clear()
            self.llm_reply = DEFAULT_LLM_REPLY
            self.exhausted = set()

    def store_file(self, data: bytes) -> str:
        file_id = uuid.uuid4().hex
        with self.lock:
            self.files[file_id] = data
            while len(self.files) > 512:           # bounded: the benchmark makes many
                self.files.popitem(last=False)
        return file_id


def _state() -> FakeState:
    return current_app.extensions["fake_cloudflare"]


def _request_id() -> str:
    return uuid.uuid4().hex[:8]


# -- response helpers --------------------------------------------------------------------------

def _json(data: Any, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(data, separators=(",", ":")), status=status,
                    mimetype="application/json", headers=headers)


def cf_error(status: int, code: int, message: str, *, result: Any = None,
             headers: dict | None = None) -> Response:
    """Cloudflare's error envelope (§4)."""
    return _json({"result": result, "success": False,
                  "errors": [{"code": code, "message": message}], "messages": []}, status, headers)


def _bad_input(message: str) -> Response:
    return cf_error(400, 5006, f"AiError: Bad input: {message}", result={})


def _could_not_route(path: str) -> Response:
    shown = path if path.startswith(("/client/v4", "/gateway")) else "/client/v4" + path
    return cf_error(404, 7003, f"Could not route to {shown}, perhaps your object identifier "
                               "is invalid?")


def _auth_error() -> Response:
    # The exact 401 body from the reference (§4, S5).
    return cf_error(401, 10000, "Authentication error")


def _daily_allocation(code: int) -> Response:
    # Observed on REST (§4, X7): the duplicated "AiError: AiError:" prefix is real.
    prefix = "AiError: AiError: you" if code == 4006 else "AiError: Account limited: you"
    return cf_error(429, code, f"{prefix} have used up your daily free allocation of 10,000 "
                               "neurons, please upgrade to Cloudflare's Workers Paid plan if you "
                               f"would like to continue usage. ({uuid.uuid4()})", result={})


def _rate_limited() -> Response:
    # A per-minute overflow (§4 end, §6 "720 req/min"); no Workers AI body was captured, so it is
    # Cloudflare's API-wide rate-limit error (code 971) with a Retry-After header.
    return cf_error(429, 971, "Please wait and consider throttling your request speed: "
                              "rate limit of 720 requests per minute exceeded for this model",
                    headers={"Retry-After": str(RATE_LIMIT_RETRY_AFTER)})


def _drop_connection() -> Response:
    """Close the client's connection without an answer (a crashed upstream / proxy reset)."""
    sock = request.environ.get("werkzeug.socket") or request.environ.get("gunicorn.socket")
    if sock is None:
        # Flask's test client has no socket; there the "dropped connection" is an exception.
        raise ConnectionAbortedError("fake cloudflare: connection dropped on purpose")
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    # Writing this response fails with EPIPE, which werkzeug and gunicorn treat as a dropped
    # connection (silently); the client sees the connection closed with no status line.
    return Response(b"", status=500)


def _plain(status: int, text: str) -> Response:
    return Response(text, status=status, mimetype="text/plain")


_HTTP_TEXT = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
              504: "Gateway Timeout"}


def _image_fault(kind: str, path: str) -> Response | None:
    """The Workers AI answer for an injected fault, or None for "timeout" (handled by caller)."""
    if kind == "3030":
        # The exact observed body (§4, X6), with a fresh request id.
        return _json({"errors": [{"message": "AiError: AiError: Your output has been flagged. "
                                             "Please choose another prompt / input image "
                                             f"combination ({_request_id()})", "code": 3030}],
                      "success": False, "result": {}, "messages": []}, 400)
    if kind in ("4006", "3036"):
        return _daily_allocation(int(kind))
    if kind == "3040":
        # Observed body (§4, X13): no result/messages keys.
        return _json({"success": False, "errors": [{"code": 3040, "message": "Capacity "
                                                    "temporarily exceeded, please try again."}]},
                     429)
    if kind == "5006":
        return _bad_input("Additional or unevaluated properties '/width, /height' at '/' "
                          "not allowed")
    if kind == "10000":
        return _auth_error()
    if kind == "7003":
        return _could_not_route(path)
    if kind == "8008":
        return cf_error(500, 8008, "AiError: 8008: Internal server error", result={})
    if kind.isdigit() and int(kind) in _HTTP_TEXT:
        # No CF body for 5xx was ever captured (§4, §8.3): a bare text answer, like a proxy's.
        return _plain(int(kind), _HTTP_TEXT[int(kind)])
    if kind == "rate_limit":
        return _rate_limited()
    if kind == "malformed_json":
        return Response(b'{"result": {"image": ', mimetype="application/json")
    if kind == "no_image":
        return _json({"result": {}, "success": True, "errors": [], "messages": []})
    if kind == "not_image":
        junk = base64.b64encode(b"this is not an image").decode()
        return _json({"result": {"image": junk}, "success": True, "errors": [], "messages": []})
    if kind == "bad_base64":
        return _json({"result": {"image": "!!!not-base64!!!"}, "success": True, "errors": [],
                      "messages": []})
    if kind == "empty":
        return Response(b"", status=200, mimetype="application/json")
    if kind == "close":
        return _drop_connection()
    if kind == "trickle":
        return _trickle()
    if kind == "huge":
        return _huge()
    return None


# ============================================================================================
# Request recording and auth.
# ============================================================================================

def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def _record(kind: str, route: str, model: str | None, token: str, **extra: Any) -> dict:
    """Record the request before it is answered; the caller later adds status/fault.

    `token` is the bearer this route expects; only whether it matched is kept, never its value.
    """
    st = _state()
    ctype = request.content_type or ""
    entry: dict[str, Any] = {
        "kind": kind, "route": route, "model": model, "method": request.method,
        "path": request.path, "content_type": ctype,
        "authorization_present": "Authorization" in request.headers,
        "authorization_valid": _bearer(request.headers.get("Authorization")) == token,
        "cf_aig_authorization": request.headers.get("cf-aig-authorization"),
        "json": None, "form": None, "files": None, "status": None, "fault": None,
        "time": time.time(), **extra,
    }
    if ctype.startswith("multipart/form-data"):
        entry["form"] = request.form.to_dict()
        entry["files"] = {n: {"filename": f.filename, "content_type": f.content_type}
                          for n, f in request.files.items()}
    else:
        entry["json"] = _parse_json_body()[1]
    return st.record(entry)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")        # real JSON parsers reject NaN/Infinity


def _parse_json_body() -> tuple[bool, Any]:
    """(parsed, value): the body as JSON whatever the Content-Type, strictly (no NaN)."""
    cached = request.environ.get("fake.parsed_json")
    if cached is None:                              # parsed once per request (record + validate)
        try:
            cached = True, json.loads(request.get_data(cache=True),
                                      parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError):
            cached = False, None
        request.environ["fake.parsed_json"] = cached
    return cached


def _finish(entry: dict, resp: Response) -> Response:
    entry["status"] = resp.status_code
    return resp


# ============================================================================================
# The app.
# ============================================================================================

def make_app(*, account_id: str = DEFAULT_ACCOUNT_ID, api_token: str = DEFAULT_API_TOKEN,
             llm_key: str = DEFAULT_LLM_KEY, latency: float = 0.0, image_kb: int | None = None,
             llm_latency: float = 0.0, fault_sleep: float = DEFAULT_FAULT_SLEEP,
             gateway_token: str | None = None, gateway_run_only: bool = False,
             record_limit: int = 10000, fail_rate: float = 0.0,
             more_accounts: dict[str, str] | None = None,
             neurons_header: str | None = None,
             gateway_multipart_7000: bool = False) -> Flask:
    """Build the fake's Flask app.

    gateway_token: when set, gateway routes demand `cf-aig-authorization: Bearer <it>` (§7).
    gateway_run_only: the documented `/workers-ai/{model}` form answers 7003, as one 3P gateway
    did (§7), so a client's fallback to `/workers-ai/run/{model}` can be tested.
    fail_rate: the share of generations (0..1) answered with a random fault from RANDOM_FAULTS.
    more_accounts: further {account_id: token} accounts the run routes accept (each its token).
    neurons_header: a `cf-ai-neurons` value sent with JSON successes (reported by 3P, §8).
    gateway_multipart_7000: gateway routes answer multipart calls with HTTP 500, code 7000, as
    AI Gateway does for FLUX.2 (§8), so a client's fallback to the direct route can be tested.
    """
    app = Flask(__name__)
    app.config["FAKE_GATEWAY_MULTIPART_7000"] = gateway_multipart_7000
    state = FakeState(account_id=account_id, api_token=api_token, llm_key=llm_key,
                      gateway_token=gateway_token, gateway_run_only=gateway_run_only,
                      latency=float(latency), llm_latency=float(llm_latency),
                      fault_sleep=float(fault_sleep), images=ImageMaker(image_kb),
                      record_limit=record_limit, fail_rate=float(fail_rate),
                      more_accounts=dict(more_accounts or {}), neurons_header=neurons_header)
    app.extensions["fake_cloudflare"] = state

    # -- Workers AI text-to-image ---------------------------------------------------------------

    @app.post("/accounts/<account>/ai/run/<path:model>")
    @app.post("/client/v4/accounts/<account>/ai/run/<path:model>")
    def run(account: str, model: str):
        return _run(account, model, route="direct")

    @app.post("/gateway/v1/<account>/<gateway>/workers-ai/<path:model>")
    def gateway_run(account: str, gateway: str, model: str):
        return _run(account, model, route="gateway", gateway=gateway)

    @app.post("/gateway/v1/<account>/<gateway>/workers-ai/run/<path:model>")
    def gateway_run_form(account: str, gateway: str, model: str):
        return _run(account, model, route="gateway_run", gateway=gateway)

    # -- LLMs -----------------------------------------------------------------------------------

    @app.post("/v1/chat/completions")
    def openai_chat():
        return _chat(route="openai")

    @app.post("/accounts/<account>/ai/v1/chat/completions")
    @app.post("/client/v4/accounts/<account>/ai/v1/chat/completions")
    def cloudflare_chat(account: str):
        return _chat(route="cloudflare", account=account)

    @app.post("/gateway/v1/<account>/<gateway>/workers-ai/v1/chat/completions")
    def gateway_chat(account: str, gateway: str):
        return _chat(route="gateway", account=account, gateway=gateway)

    # -- OpenAI Images API ----------------------------------------------------------------------

    @app.post("/v1/images/generations")
    def images_generations():
        return _images()

    # image input (issue 11): OpenAI's edits and variations, multipart only.
    @app.post("/v1/images/edits")
    def images_edits():
        return _images_with_input("edits")

    @app.post("/v1/images/variations")
    def images_variations():
        return _images_with_input("variations")

    @app.get("/_fake/files/<file_id>.png")
    def fake_file(file_id: str):
        data = _state().files.get(file_id)
        if data is None:
            return _plain(404, "no such file")
        return Response(data, mimetype="image/png")

    # -- anything else under Cloudflare's API prefix: 7003, as the real router answers ---------

    @app.route("/client/v4/<path:rest>", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    @app.route("/accounts/<path:rest>", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    @app.route("/gateway/<path:rest>", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    def unroutable(rest: str):
        return _could_not_route(request.path)

    # -- control --------------------------------------------------------------------------------

    @app.post("/_fake/faults")
    def add_faults():
        body = request.get_json(silent=True) or {}
        try:
            _state().add_faults(list(body.get("faults") or []))
        except (ValueError, TypeError) as exc:
            return _json({"error": str(exc)}, 400)
        return _json({"pending": list(_state().faults)})

    @app.get("/_fake/faults")
    def list_faults():
        st = _state()
        return _json({"pending": list(st.faults), "llm_pending": list(st.llm_faults)})

    @app.delete("/_fake/faults")
    def clear_faults():
        with _state().lock:
            _state().faults.clear()
            _state().llm_faults.clear()
        return _json({"pending": []})

    @app.get("/_fake/requests")
    def get_requests():
        return _json(_state().requests())

    @app.delete("/_fake/requests")
    def clear_requests():
        with _state().lock:
            _state().recorded.clear()
        return _json([])

    @app.post("/_fake/reset")
    def reset():
        _state().reset()
        return _json({"reset": True})

    @app.post("/_fake/llm")
    def configure_llm():
        body = request.get_json(silent=True) or {}
        st = _state()
        if "reply" in body:
            if not isinstance(body["reply"], str):
                return _json({"error": "reply must be a string"}, 400)
            st.llm_reply = body["reply"]
        try:
            st.add_faults(list(body.get("faults") or []), llm=True)
        except (ValueError, TypeError) as exc:
            return _json({"error": str(exc)}, 400)
        return _json({"reply": st.llm_reply, "pending": list(st.llm_faults)})

    @app.post("/_fake/accounts")
    def configure_accounts():
        """{"exhausted": [account ids]}: those answer 4006 until changed ([] to clear)."""
        body = request.get_json(silent=True) or {}
        st = _state()
        with st.lock:
            st.exhausted = set(body.get("exhausted") or [])
        return _json({"exhausted": sorted(st.exhausted)})

    @app.get("/_fake/health")
    def health():
        return _json({"ok": True})

    return app


def _run(account: str, model: str, *, route: str, gateway: str | None = None) -> Response:
    st = _state()
    entry = _record("run", route, model, st.api_token, account=account, gateway=gateway)
    # Order: gateway auth, token, account, route form, model, schema; a fault replaces only an
    # answer that would otherwise succeed, so a wrong request never consumes a queued fault.
    if gateway is not None and st.gateway_token is not None:
        if _bearer(request.headers.get("cf-aig-authorization")) != st.gateway_token:
            # 3P-observed (§7): authenticated gateways answer 401 with code 2009.
            return _finish(entry, cf_error(401, 2009, "Unauthorized"))
    tokens = {st.account_id: st.api_token, **st.more_accounts}
    bearer = _bearer(request.headers.get("Authorization"))
    if bearer not in tokens.values():
        return _finish(entry, _auth_error())
    if account not in tokens or (route == "gateway" and st.gateway_run_only):
        return _finish(entry, _could_not_route(request.path))
    if tokens[account] != bearer:            # a real token of another account
        return _finish(entry, _auth_error())
    # image input (issue 11): AI Gateway fails FLUX.2 multipart calls with 500 / 7000 (§8).
    if (gateway is not None and current_app.config.get("FAKE_GATEWAY_MULTIPART_7000")
            and (request.content_type or "").startswith("multipart/")):
        return _finish(entry, cf_error(500, 7000, "AiError: AI Gateway does not support "
                                                  "ReadableStreams yet"))
    schema = MODELS.get(model)
    if schema is None:
        return _finish(entry, cf_error(400, 5007, f"No such model {model} or task"))
    try:
        fields = _validated_fields(schema)
    except BadInput as exc:
        return _finish(entry, _bad_input(str(exc)))
    except Flagged as exc:
        return _finish(entry, cf_error(400, 3030, str(exc), result={}))

    if account in st.exhausted:                # this account's daily allocation is used up
        entry["fault"] = "4006"
        return _finish(entry, _daily_allocation(4006))
    fault = st.pop_fault()
    if fault is not None:
        entry["fault"] = fault["kind"]
        if fault["kind"] != "timeout":
            return _finish(entry, _image_fault(fault["kind"], request.path))
        # The client should give up meanwhile; if it does not, it gets the image late.
        time.sleep(float(fault.get("seconds", st.fault_sleep)))

    if st.latency:
        time.sleep(st.latency)
    width, height = _output_size(schema, fields)
    if schema.response == "binary":
        body = st.images.image(schema.id, width, height, schema.image_format)
        return _finish(entry, Response(body, mimetype=schema.mimetype))
    body = st.images.envelope(schema.id, width, height, schema.image_format)
    headers = {"cf-ai-neurons": st.neurons_header} if st.neurons_header else None
    return _finish(entry, Response(body, mimetype="application/json", headers=headers))


def _validated_fields(schema: ModelSchema) -> dict[str, Any]:
    ctype = (request.content_type or "").lower()
    if schema.encoding == "multipart":
        if not ctype.startswith("multipart/form-data") or "boundary=" not in ctype:
            # flux-2's input schema is only {multipart: ...}; anything else misses oneOf (§2, X7).
            raise BadInput("Error: oneOf at '/' not met, 0 matches: the model takes "
                           "multipart/form-data only")
        return validate_form(schema, request.form.to_dict(), request.files.to_dict())
    if ctype.startswith(("multipart/", "application/x-www-form-urlencoded")):
        raise BadInput("Type mismatch of '/', 'string' not in 'object'")
    parsed, body = _parse_json_body()
    if not parsed:
        raise BadInput("Type mismatch of '/', 'string' not in 'object'")
    fields = validate_json(schema, body)
    _check_sources(schema.id, fields)   # image input (issue 11)
    return fields


def _output_size(schema: ModelSchema, fields: dict[str, Any]) -> tuple[int, int]:
    if not schema.sized:
        return schema.default_size     # schnell: always 1024x1024 whatever is asked (§0)
    # 0 is schema-valid for Leonardo models; what they return for it is unknown, so the default.
    width = fields.get("width") or schema.default_size[0]
    height = fields.get("height") or schema.default_size[1]
    return int(width), int(height)


# -- LLM ----------------------------------------------------------------------------------------

def _openai_error(status: int, message: str, *, etype: str = "invalid_request_error",
                  param: str | None = None, code: str | None = None,
                  headers: dict | None = None) -> Response:
    return _json({"error": {"message": message, "type": etype, "param": param, "code": code}},
                 status, headers)


def _chat(*, route: str, account: str | None = None, gateway: str | None = None) -> Response:
    st = _state()
    parsed, body = _parse_json_body()
    model = body.get("model") if isinstance(body, dict) else None
    openai = route == "openai"
    entry = _record("llm", route, model if isinstance(model, str) else None,
                    st.llm_key if openai else st.api_token, account=account, gateway=gateway)
    # The OpenAI endpoint answers OpenAI-style errors; Cloudflare's keeps its envelope (§5).
    if gateway is not None and st.gateway_token is not None:
        if _bearer(request.headers.get("cf-aig-authorization")) != st.gateway_token:
            return _finish(entry, cf_error(401, 2009, "Unauthorized"))
    token = _bearer(request.headers.get("Authorization"))
    if token != (st.llm_key if openai else st.api_token):
        if openai:
            return _finish(entry, _openai_error(401, "Incorrect API key provided.",
                                                code="invalid_api_key"))
        return _finish(entry, _auth_error())
    if not openai and account != st.account_id:
        return _finish(entry, _could_not_route(request.path))

    problem = _chat_problem(body) if parsed else ("We could not parse the JSON body of your "
                                                  "request.", None, "Type mismatch of '/', "
                                                  "'string' not in 'object'")
    if problem:
        message, param, cf_message = problem
        if openai:
            return _finish(entry, _openai_error(400, message, param=param))
        return _finish(entry, _bad_input(cf_message))

    fault = st.pop_fault(llm=True)
    reply = st.llm_reply
    if fault is not None:
        entry["fault"] = kind = fault["kind"]
        if kind == "timeout":
            time.sleep(float(fault.get("seconds", st.fault_sleep)))
        elif kind == "empty":
            reply = ""                              # a model that said nothing
        else:
            return _finish(entry, _llm_fault(kind, openai))
    if st.llm_latency:
        time.sleep(st.llm_latency)
    prompt_tokens = sum(len(m["content"].split()) for m in body["messages"])
    completion = {
        "id": f"chatcmpl-fake-{entry['seq']}", "object": "chat.completion",
        "created": int(time.time()), "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(reply.split()),
                  "total_tokens": prompt_tokens + len(reply.split())},
    }
    return _finish(entry, _json(completion))


def _chat_problem(body: Any) -> tuple[str, str | None, str] | None:
    """(OpenAI message, param, Cloudflare message) for an invalid chat body, else None."""
    if not isinstance(body, dict):
        return ("The body must be a JSON object.", None,
                f"Type mismatch of '/', '{_js_type(body)}' not in 'object'")
    if not isinstance(body.get("model"), str) or not body["model"]:
        return ("you must provide a model parameter", "model",
                "Error: Missing required properties '/model' at '/'")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return ("'messages' must be a non-empty array", "messages",
                "Error: Missing required properties '/messages' at '/'")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
            return (f"Invalid 'messages[{i}]': expected an object with a role.",
                    f"messages[{i}]", f"Type mismatch of '/messages/{i}', "
                                      f"'{_js_type(msg)}' not in 'object'")
        if not isinstance(msg.get("content"), str):
            # Content arrays return 5006 on Cloudflare (§5, X7); this fake wants strings only.
            return (f"Invalid 'messages[{i}].content': expected a string.",
                    f"messages[{i}].content", f"Type mismatch of '/messages/{i}/content', "
                                              f"'{_js_type(msg.get('content'))}' not in 'string'")
    if body.get("stream"):
        return ("stream=true is not supported by this fake.", "stream",
                "Error: streaming is not supported by this fake")
    return None


def _llm_fault(kind: str, openai: bool) -> Response:
    if kind in ("500", "503"):
        return _plain(int(kind), _HTTP_TEXT[int(kind)])
    if kind == "empty_body":
        return Response(b"", status=200, mimetype="application/json")
    if kind == "malformed_json":
        return Response(b'{"choices": [{"message": ', mimetype="application/json")
    if kind == "4006":
        return _daily_allocation(4006)          # §5: errors here still use the CF envelope
    if kind == "rate_limit":
        if openai:
            return _openai_error(429, "Rate limit reached for requests per minute.",
                                 etype="requests", code="rate_limit_exceeded",
                                 headers={"Retry-After": str(RATE_LIMIT_RETRY_AFTER)})
        return _rate_limited()
    if kind == "close":
        return _drop_connection()
    if kind == "trickle":
        return _trickle()
    raise AssertionError(kind)


# -- OpenAI Images API ---------------------------------------------------------------------------

_SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")


def _images() -> Response:
    st = _state()
    parsed, body = _parse_json_body()
    model = body.get("model") if isinstance(body, dict) else None
    entry = _record("images", "openai_images", model if isinstance(model, str) else None,
                    st.llm_key)
    if _bearer(request.headers.get("Authorization")) != st.llm_key:
        return _finish(entry, _openai_error(401, "Incorrect API key provided.",
                                            code="invalid_api_key"))
    if not parsed or not isinstance(body, dict):
        return _finish(entry, _openai_error(400, "The body must be a JSON object."))
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return _finish(entry, _openai_error(400, "'prompt' is a required string.", param="prompt"))
    if model is not None and not isinstance(model, str):
        return _finish(entry, _openai_error(400, "'model' must be a string.", param="model"))
    n = body.get("n", 1)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 10:
        return _finish(entry, _openai_error(400, "'n' must be an integer from 1 to 10.",
                                            param="n"))
    match = _SIZE.match(str(body.get("size", "1024x1024")))
    if not match or not all(64 <= int(v) <= 4096 for v in match.groups()):
        return _finish(entry, _openai_error(400, "'size' must be 'WxH' with sides 64-4096.",
                                            param="size"))
    fmt = body.get("response_format", "url")
    if fmt not in ("url", "b64_json"):
        return _finish(entry, _openai_error(400, "'response_format' must be 'url' or "
                                                 "'b64_json'.", param="response_format"))

    fault = st.pop_fault()
    if fault is not None:
        entry["fault"] = fault["kind"]
        if fault["kind"] == "timeout":
            time.sleep(float(fault.get("seconds", st.fault_sleep)))
        else:
            return _finish(entry, _images_fault(fault["kind"]))
    if st.latency:
        time.sleep(st.latency)
    width, height = int(match.group(1)), int(match.group(2))
    png = st.images.image(f"openai-images/{model or 'default'}", width, height, "PNG")
    if fmt == "b64_json":
        item = {"b64_json": base64.b64encode(png).decode(), "revised_prompt": prompt}
        data = [item] * n
    else:
        base = request.host_url.rstrip("/")
        data = [{"url": f"{base}/_fake/files/{st.store_file(png)}.png", "revised_prompt": prompt}
                for _ in range(n)]
    return _finish(entry, _json({"created": int(time.time()), "data": data}))


# --- image input (issue 11): OpenAI's /images/edits and /images/variations ----------------------

def _images_with_input(kind: str) -> Response:
    """Multipart edits (image or image[] up to 16, mask, prompt) and variations (one image)."""
    st = _state()
    entry = _record("images", f"openai_{kind}", request.form.get("model"), st.llm_key)
    if _bearer(request.headers.get("Authorization")) != st.llm_key:
        return _finish(entry, _openai_error(401, "Incorrect API key provided.",
                                            code="invalid_api_key"))
    if not (request.content_type or "").startswith("multipart/form-data"):
        return _finish(entry, _openai_error(400, "Send multipart/form-data."))
    images = request.files.getlist("image") + request.files.getlist("image[]")
    if kind == "variations":
        if len(images) != 1 or "prompt" in request.form:
            return _finish(entry, _openai_error(400, "Send exactly one 'image' and no prompt.",
                                                param="image"))
    elif not images or len(images) > 16 or not request.form.get("prompt", "").strip():
        return _finish(entry, _openai_error(400, "'image' (1-16) and 'prompt' are required.",
                                            param="image"))
    for upload in images + request.files.getlist("mask"):
        try:
            with Image.open(io.BytesIO(upload.read())) as img:
                img.load()
        except Exception:  # any decoder failure
            return _finish(entry, _openai_error(400, "Invalid image file.", param="image"))
    match = _SIZE.match(request.form.get("size", "1024x1024"))
    if not match:
        return _finish(entry, _openai_error(400, "'size' must be 'WxH'.", param="size"))
    png = st.images.image(f"openai-{kind}", int(match.group(1)), int(match.group(2)), "PNG")
    return _finish(entry, _json({"created": int(time.time()),
                                 "data": [{"b64_json": base64.b64encode(png).decode()}]}))
# --- end image input -----------------------------------------------------------------------------


def _images_fault(kind: str) -> Response:
    """Image faults in the shape an OpenAI-compatible server would give them."""
    status = {"3030": 400, "5006": 400, "4006": 429, "3036": 429, "3040": 429, "10000": 401,
              "7003": 404, "8008": 500}.get(kind)
    if status is not None:
        etype = "invalid_request_error" if status < 500 else "server_error"
        code = "content_policy_violation" if kind == "3030" else kind
        return _openai_error(status, f"fake upstream error {kind}", etype=etype, code=code)
    if kind == "rate_limit":
        return _openai_error(429, "Rate limit reached for images per minute.", etype="requests",
                             code="rate_limit_exceeded",
                             headers={"Retry-After": str(RATE_LIMIT_RETRY_AFTER)})
    created = int(time.time())
    if kind == "malformed_json":
        return Response(b'{"created": 1, "data": [', mimetype="application/json")
    if kind == "no_image":
        return _json({"created": created, "data": []})
    if kind == "not_image":     # always b64_json: the point is bytes that are not an image
        return _json({"created": created,
                      "data": [{"b64_json": base64.b64encode(b"this is not an image").decode()}]})
    if kind == "bad_base64":
        return _json({"created": created, "data": [{"b64_json": "!!!not-base64!!!"}]})
    return _image_fault(kind, request.path)      # 5xx text, empty, close


# ============================================================================================
# Running it.
# ============================================================================================

class _QuietHandler(WSGIRequestHandler):
    """No access log: hundreds of requests per second would drown the test output."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class FakeServer:
    """The fake running on 127.0.0.1 in a daemon thread, with helpers for tests."""

    def __init__(self, app: Flask, host: str = "127.0.0.1", port: int = 0):
        self.app = app
        self.state: FakeState = app.extensions["fake_cloudflare"]
        self._server = make_server(host, port, app, threaded=True, request_handler=_QuietHandler)
        self.host = host
        self.port = self._server.server_port
        self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-cloudflare",
                                        daemon=True)
        self._thread.start()

    def add_faults(self, *kinds: str | dict) -> None:
        """Queue image faults (FIFO): "3030", "timeout", {"kind": "timeout", "seconds": 3}, ..."""
        self.state.add_faults(list(kinds))

    def add_llm_faults(self, *kinds: str | dict) -> None:
        self.state.add_faults(list(kinds), llm=True)

    def requests(self) -> list[dict]:
        return self.state.requests()

    def reset(self) -> None:
        self.state.reset()

    def exhaust(self, *account_ids: str) -> None:
        """Answer 4006 (daily allocation used up) for these accounts; none to clear."""
        with self.state.lock:
            self.state.exhausted = set(account_ids)

    def set_llm_reply(self, text: str) -> None:
        self.state.llm_reply = text

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "FakeServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start(*, host: str = "127.0.0.1", port: int = 0, **kwargs: Any) -> FakeServer:
    """Start the fake on a free port (or `port`); kwargs go to make_app()."""
    return FakeServer(make_app(**kwargs), host, port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake Cloudflare Workers AI / OpenAI server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8788)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per image")
    parser.add_argument("--llm-latency", type=float, default=0.0, help="seconds per chat answer")
    parser.add_argument("--image-kb", type=int, default=None, help="approximate JPEG size")
    parser.add_argument("--fail-rate", type=float, default=0.0,
                        help="share of generations answered with a random upstream fault")
    parser.add_argument("--account-id", default=DEFAULT_ACCOUNT_ID)
    parser.add_argument("--api-token", default=DEFAULT_API_TOKEN)
    parser.add_argument("--llm-key", default=DEFAULT_LLM_KEY)
    parser.add_argument("--gateway-token", default=None)
    args = parser.parse_args(argv)
    app = make_app(account_id=args.account_id, api_token=args.api_token, llm_key=args.llm_key,
                   latency=args.latency, llm_latency=args.llm_latency, image_kb=args.image_kb,
                   gateway_token=args.gateway_token, fail_rate=args.fail_rate)
    server = make_server(args.host, args.port, app, threaded=True, request_handler=_QuietHandler)
    print(f"fake cloudflare on http://{args.host}:{server.server_port} "
          f"(account {args.account_id}, latency {args.latency}s)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
