"""Cloudflare's partner models (`/ai/run` with `{model, input}`), model search and schemas.

Written from image-providers.md section 1 and its checklist (section 5), independently of
flux_worker. The route is strict: Bearer required (401/10000), a token without the `AI Gateway -
Run` permission gets 403/2049, a wrong account 404/7003, `model` and `input` required, each
model's input checked against its JSON schema (unknown fields, types, enums, ranges: 400 naming
the field), and `@cf/` models need `cf-aig-gateway-id`. A success answers
`{state: "Completed", result: {image: <link>}, gatewayMetadata}`; the link is on this fake's own
file host and expires on a fake clock (`POST /_fake/partners/clock {"advance": seconds}`), after
which it is a 404, as real result links vanish after about a day.

Faults (`POST /_fake/faults {"partner_faults": [...]}` or `FakeServer.add_partner_faults`):
"2021" (402, no credit), "429" (spend/rate limit, Retry-After), "2009" (401, a provider refused
the credentials), "503", "failed" (state Failed), "moderation" (state Failed, refused content),
"slow" (answers after `seconds`), "foreign_host" (a link on a host the service must not fetch),
"redirect" (the file redirects to another host), "huge" (a file of HUGE_FILE_BYTES),
"not_image" (the file is text).
"""

from __future__ import annotations

import base64
import io
import math
import threading
import time
import uuid
from typing import Any

from flask import Flask, Response, redirect, request
from PIL import Image

from harness.fakes.cloudflare.model_search import schema_of, search
from harness.fakes.cloudflare.partner_schemas import PARTNER_MODELS
from harness.fakes.cloudflare.schemas import MODELS, BadInput, validate_json
from harness.fakes.cloudflare.state import (
    FakeState,
    _auth_error,
    _could_not_route,
    _json,
    _plain,
    _state,
    cf_error,
)

DEFAULT_NO_RUN_TOKEN = "test-cf-token-no-run"    # valid for Workers AI, lacks `AI Gateway - Run`
FILE_LIFETIME = 24 * 3600                        # seconds a result link works (reported: 24 h)
HUGE_FILE_BYTES = 60 * 1024 * 1024
PARTNER_FAULTS = ("2021", "429", "2009", "503", "failed", "moderation", "slow", "foreign_host",
                  "redirect", "huge", "not_image")


class PartnerState:
    """The partner route's own state, beside FakeState: files on a fake clock, faults."""

    def __init__(self, no_run_token: str):
        self.no_run_token = no_run_token
        self.lock = threading.Lock()
        self.clock = 0.0                            # fake seconds, moved only by the control
        self.files: dict[str, tuple[float, bytes, str]] = {}   # id -> (made at, bytes, type)
        self.faults: list[dict] = []

    def store(self, data: bytes, mimetype: str) -> str:
        file_id = uuid.uuid4().hex
        with self.lock:
            self.files[file_id] = (self.clock, data, mimetype)
            while len(self.files) > 256:
                self.files.pop(next(iter(self.files)))
        return file_id

    def file(self, file_id: str) -> tuple[bytes, str] | None:
        with self.lock:
            entry = self.files.get(file_id)
            if entry is None or self.clock - entry[0] >= FILE_LIFETIME:
                return None
            return entry[1], entry[2]

    def add_faults(self, faults: list) -> None:
        parsed = []
        for fault in faults:
            fault = {"kind": str(fault)} if isinstance(fault, (str, int)) else dict(fault)
            if fault.get("kind") not in PARTNER_FAULTS:
                raise ValueError(f"unknown partner fault {fault!r}; known: "
                                 + ", ".join(PARTNER_FAULTS))
            parsed.append(fault)
        with self.lock:
            self.faults.extend(parsed)

    def pop_fault(self) -> dict | None:
        with self.lock:
            return self.faults.pop(0) if self.faults else None

    def reset(self) -> None:
        with self.lock:
            self.files.clear()
            self.faults.clear()
            self.clock = 0.0


def partners(state: FakeState) -> PartnerState:
    """The partner state that `register` hung on the fake's state."""
    return state.partners          # type: ignore[attr-defined]


def register(app: Flask, state: FakeState, no_run_token: str = DEFAULT_NO_RUN_TOKEN) -> None:
    """Add the partner, search and schema routes (and their controls) to the fake's app."""
    state.partners = PartnerState(no_run_token)    # type: ignore[attr-defined]

    @app.post("/client/v4/accounts/<account>/ai/run")
    def partner_run(account: str):
        return _run(account)

    @app.get("/client/v4/accounts/<account>/ai/models/search")
    def models_search(account: str):
        return _guarded(account, search)

    @app.get("/client/v4/accounts/<account>/ai/models/schema")
    def models_schema(account: str):
        return _guarded(account, schema_of)

    @app.get("/_fake/partner-files/<file_id>")
    def partner_file(file_id: str):
        return _serve_file(file_id)

    @app.post("/_fake/partners/clock")
    def advance_clock():
        body = request.get_json(silent=True) or {}
        own = partners(_state())
        with own.lock:
            own.clock += float(body.get("advance", 0))
        return _json({"clock": own.clock})


# -- the run route ---------------------------------------------------------------------------------

def _auth(account: str) -> Response | None:
    """401 without a known Bearer, 404/7003 for another account, as the classic API answers."""
    st = _state()
    tokens = {st.account_id: st.api_token, **st.more_accounts}
    bearer = _bearer()
    if bearer == partners(st).no_run_token:
        bearer = st.api_token                       # Workers AI Read: enough for search
    if bearer not in tokens.values():
        return _auth_error()
    if account not in tokens:
        return _could_not_route(request.path)
    if tokens[account] != bearer:
        return _auth_error()
    return None


def _bearer() -> str | None:
    scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def _guarded(account: str, answer: Any) -> Response:
    refused = _auth(account)
    return refused if refused is not None else answer()


def _run(account: str) -> Response:
    st = _state()
    own = partners(st)
    body = request.get_json(silent=True)
    model = body.get("model") if isinstance(body, dict) else None
    entry = st.record({"kind": "partner", "route": "partner", "account": account,
                       "model": model if isinstance(model, str) else None,
                       "authorization_present": "Authorization" in request.headers,
                       "json": body, "status": None, "fault": None, "time": time.time()})
    answer = _auth(account)
    if answer is None and _bearer() == own.no_run_token:
        answer = cf_error(403, 2049, "Gateway authentication is required: the token lacks the "
                                     "AI Gateway Run permission")
    if answer is None:
        answer = _checked_run(body)
    if answer is None:
        answer = _fault_or_image(entry, body)
    entry["status"] = answer.status_code
    return answer


def _checked_run(body: Any) -> Response | None:
    """400 for a body that misses `model` or `input`, or whose input the model refuses."""
    if not isinstance(body, dict):
        return cf_error(400, 5006, "Bad input: the body must be a JSON object")
    extra = [name for name in body if name not in ("model", "input", "provider")]
    if extra:
        return cf_error(400, 5006, f"Bad input: unknown property '/{extra[0]}'")
    model, fields = body.get("model"), body.get("input")
    if not isinstance(model, str) or not model:
        return cf_error(400, 5006, "Bad input: '/model' is required (a string)")
    if not isinstance(fields, dict):
        return cf_error(400, 5006, "Bad input: '/input' is required (an object)")
    try:
        if model.startswith("@cf/"):
            if not request.headers.get("cf-aig-gateway-id"):
                return cf_error(400, 5006, "Bad input: @cf/ models on /ai/run need the "
                                           "cf-aig-gateway-id header")
            schema = MODELS.get(model)
            if schema is None or schema.encoding != "json":
                return cf_error(400, 5007, f"No such model {model} or task")
            validate_json(schema, fields)
        elif model not in PARTNER_MODELS:
            return cf_error(400, 5007, f"No such model {model} or task")
        else:
            check_input(PARTNER_MODELS[model][1], fields)
    except BadInput as exc:
        return cf_error(400, 5006, f"Bad input: {exc}")
    return None


def check_input(props: dict[str, dict], fields: dict[str, Any]) -> None:
    """Check `input` against a model's JSON schema; BadInput names the first wrong field."""
    if "prompt" not in fields:
        raise BadInput("Missing required properties '/prompt' at '/'")
    for name, value in fields.items():
        schema = props.get(name)
        if schema is None:
            raise BadInput(f"Additional or unevaluated properties '/{name}' at '/' not allowed")
        _check(name, value, schema)


def _check(name: str, value: Any, schema: dict) -> None:
    kind = schema["type"]
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "string" and not isinstance(value, str):
        raise BadInput(f"Type mismatch of '/{name}': a string is required")
    if kind == "integer" and not (numeric and float(value).is_integer()):
        raise BadInput(f"Type mismatch of '/{name}': an integer is required")
    if kind == "number" and not (numeric and math.isfinite(value)):
        raise BadInput(f"Type mismatch of '/{name}': a number is required")
    if kind == "array":
        if not isinstance(value, list):
            raise BadInput(f"Type mismatch of '/{name}': an array is required")
        if len(value) > schema.get("maxItems", len(value)):
            raise BadInput(f"'/{name}' takes at most {schema['maxItems']} items")
        for index, item in enumerate(value):
            _check(f"{name}/{index}", item, schema["items"])
            _check_image(f"{name}/{index}", item)
    if "enum" in schema and value not in schema["enum"]:
        raise BadInput(f"'/{name}' must be one of {', '.join(schema['enum'])}")
    if schema.get("minLength") and len(value) < schema["minLength"]:
        raise BadInput(f"Length of '/{name}' must be >= {schema['minLength']}")
    if "minimum" in schema and value < schema["minimum"]:
        raise BadInput(f"Value of '/{name}' must be >= {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        raise BadInput(f"Value of '/{name}' must be <= {schema['maximum']}")


def _check_image(name: str, item: str) -> None:
    """An input image must be an https link or decodable base64 (raw or a data: URL)."""
    if item.startswith("https://"):
        return
    encoded = item.partition(",")[2] if item.startswith("data:image/") else item
    try:
        data = base64.b64decode(encoded, validate=True)
        with Image.open(io.BytesIO(data)) as img:
            img.load()
    except Exception:  # any decoder failure
        raise BadInput(f"'/{name}' is not an image (base64, a data URI or an https link)") \
            from None


def _fault_or_image(entry: dict, body: dict) -> Response:
    own = partners(_state())
    fault = own.pop_fault()
    kind = fault["kind"] if fault else None
    entry["fault"] = kind
    if kind == "2021":
        return cf_error(402, 2021, "Insufficient balance; add money to your gateway or use BYOK")
    if kind == "429":
        return cf_error(429, 2003, "Rate limited: spend limit reached",
                        headers={"Retry-After": str(fault.get("retry_after", 3))})
    if kind == "2009":
        return cf_error(401, 2009, "Unauthorized: the provider rejected the credentials")
    if kind == "503":
        return _plain(503, "Service Unavailable")
    if kind in ("failed", "moderation"):
        error = ({"code": "moderation_blocked", "message": "Your request was rejected by the "
                  "safety system"} if kind == "moderation" else
                 {"code": "provider_unavailable", "message": "The provider did not answer"})
        return _json({"state": "Failed", "error": error, "model": body["model"]})
    if kind == "slow":
        time.sleep(float(fault.get("seconds", 5)))
    base = request.host_url.rstrip("/")
    if kind == "foreign_host":
        link = "https://files.example.invalid/result.png"
    else:
        data, mimetype = _picture(body["model"], body["input"], kind)
        link = f"{base}/_fake/partner-files/{own.store(data, mimetype)}"
        if kind == "redirect":
            link += "?redirect=1"
    return _json({"state": "Completed", "result": {"image": link},
                  "gatewayMetadata": {"keySource": "Unified"}})


def output_size(model: str, fields: dict[str, Any]) -> tuple[int, int]:
    """What the model really draws: its own sizes for a ratio, which the service must fit."""
    if "size" in fields and fields["size"] != "auto":
        width, height = fields["size"].split("x")
        return int(width), int(height)
    if "width" in fields or "height" in fields:
        return int(fields.get("width", 1024)), int(fields.get("height", 1024))
    ratio = fields.get("aspect_ratio", "1:1")
    left, right = (int(part) for part in ratio.split(":"))
    # About one megapixel in multiples of 64, as Google's models answer (16:9 -> 1344x768).
    width = round(math.sqrt(1024 * 1024 * left / right) / 64) * 64
    return width, round(width * right / left / 64) * 64


def _picture(model: str, fields: dict[str, Any], kind: str | None) -> tuple[bytes, str]:
    if kind == "not_image":
        return b"<html>this is not an image</html>", "text/html"
    if kind == "huge":
        return b"", "image/png"                     # served as HUGE_FILE_BYTES, streamed
    width, height = output_size(model, fields)
    png = _state().images.image(f"partner/{model}", width, height, "PNG")
    wanted = fields.get("output_format", "png")
    if wanted == "png":
        return png, "image/png"
    out = io.BytesIO()
    with Image.open(io.BytesIO(png)) as img:
        img.convert("RGB").save(out, "JPEG" if wanted == "jpeg" else "WEBP", quality=90)
    return out.getvalue(), f"image/{wanted}"


def _serve_file(file_id: str) -> Response:
    # Recorded so that tests can see what a downloader sent (never a token, it must not).
    _state().record({"kind": "partner_file", "route": "partner_file", "path": request.path,
                     "authorization_present": "Authorization" in request.headers,
                     "status": None, "time": time.time()})
    if request.args.get("redirect"):
        # To another host name for the same server: a host the service was not told to trust.
        port = request.host.rpartition(":")[2] if ":" in request.host else "80"
        return redirect(f"http://localhost:{port}/_fake/partner-files/{file_id}", 302)
    found = partners(_state()).file(file_id)
    if found is None:
        return _plain(404, "no such file (expired?)")
    data, mimetype = found
    if not data:
        chunk = b"\0" * (1024 * 1024)
        return Response((chunk for _ in range(HUGE_FILE_BYTES // len(chunk))),
                        mimetype="image/png")
    return Response(data, mimetype=mimetype)
