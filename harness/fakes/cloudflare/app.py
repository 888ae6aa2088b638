"""The Flask app: request recording, make_app and the route handlers."""

from __future__ import annotations

import base64
import io
import json
import re
import time
from typing import Any

from flask import Flask, Response, current_app, request
from PIL import Image

from harness.fakes.cloudflare.guard import GUARD_MODEL, guard_answer, reset_guard
from harness.fakes.cloudflare.guard import register as register_guard
from harness.fakes.cloudflare.partners import DEFAULT_NO_RUN_TOKEN, partners, register
from harness.fakes.cloudflare.pictures import ImageMaker
from harness.fakes.cloudflare.schemas import (
    MODELS,
    BadInput,
    Flagged,
    ModelSchema,
    _check_sources,
    _js_type,
    validate_form,
    validate_json,
)
from harness.fakes.cloudflare.state import (
    _HTTP_TEXT,
    DEFAULT_ACCOUNT_ID,
    DEFAULT_API_TOKEN,
    DEFAULT_FAULT_SLEEP,
    DEFAULT_LLM_KEY,
    RATE_LIMIT_RETRY_AFTER,
    FakeState,
    _auth_error,
    _bad_input,
    _could_not_route,
    _daily_allocation,
    _drop_connection,
    _image_fault,
    _json,
    _openai_error,
    _plain,
    _rate_limited,
    _state,
    cf_error,
    trickle,
)

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
             gateway_multipart_7000: bool = False,
             no_run_token: str = DEFAULT_NO_RUN_TOKEN) -> Flask:
    """Build the fake's Flask app.

    gateway_token: when set, gateway routes demand `cf-aig-authorization: Bearer <it>` (§7).
    gateway_run_only: the documented `/workers-ai/{model}` form answers 7003, as one 3P gateway
    did (§7), so a client's fallback to `/workers-ai/run/{model}` can be tested.
    fail_rate: the share of generations (0..1) answered with a random fault from RANDOM_FAULTS.
    more_accounts: further {account_id: token} accounts the run routes accept (each its token).
    neurons_header: a `cf-ai-neurons` value sent with JSON successes (reported by 3P, §8).
    gateway_multipart_7000: gateway routes answer multipart calls with HTTP 500, code 7000, as
    AI Gateway does for FLUX.2 (§8), so a client's fallback to the direct route can be tested.
    no_run_token: a token of the account without `AI Gateway - Run`: partner calls get 403/2049.
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
    register(app, state, no_run_token)          # partner models, model search and schemas
    register_guard(app)                         # Llama Guard's controls, /v1/moderations

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
            partners(_state()).add_faults(list(body.get("partner_faults") or []))
        except (ValueError, TypeError) as exc:
            return _json({"error": str(exc)}, 400)
        return _json({"pending": list(_state().faults),
                      "partner_pending": list(partners(_state()).faults)})

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
        reset_guard()
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
    if model == GUARD_MODEL:                  # a text model: moderation (guard.py)
        entry["json"] = body = request.get_json(silent=True)
        return _finish(entry, guard_answer(body))
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
        return trickle()
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
