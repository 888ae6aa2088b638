"""The OpenAPI 3.1 description of the public API, built as a plain dictionary.

No Flask here: `web.openapi` serves it at GET /openapi.json, `tests/test_openapi.py` keeps it
true to the routes and to real answers, and `tests/e2e/test_fuzz.py` fuzzes the live service
against it with Schemathesis.

Two conventions worth knowing when reading it:
- The `text/event-stream` answer of a streamed chat completion has a `schema` that describes ONE
  server-sent event (as OpenAPI 3.2's `itemSchema` does and as Schemathesis reads 3.0/3.1
  documents): `data` is either `[DONE]` or the JSON of a `ChatCompletionChunk`.
- Model ids contain slashes (`@cf/black-forest-labs/flux-1-schnell`). The server matches the
  whole rest of the path, so `/v1/models/@cf/leonardo/phoenix-1.0` works as written and so does
  the id percent-encoded as one segment (`@cf%2Fleonardo%2Fphoenix-1.0`), which is what OpenAPI
  tools send.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from ..version import __version__
from .answers import OPENAI_IMAGE_SIZES, OPENAI_OUTPUT_FORMATS
from .generation_requests import ChatCompletionRequest, ImageGenerationRequest

OPENAPI_VERSION = "3.1.0"

# Every API route also answers without the /v1 prefix, for clients whose base URL lacks it.
ALIASES = {
    "/v1/chat/completions": "/chat/completions",
    "/v1/images/generations": "/images/generations",
    "/v1/images/edits": "/images/edits",
    "/v1/images/variations": "/images/variations",
    "/v1/models": "/models",
    "/v1/models/{model_id}": "/models/{model_id}",
    "/v1/usage": "/usage",
}

# Status -> (component name, what it means here). Every one answers with the Error schema.
ERROR_RESPONSES = {
    400: ("BadRequest", "Malformed JSON, a missing or invalid field, no user message or an empty "
                        "prompt (`invalid_request_error`); `prompt_too_long`; "
                        "`content_policy_violation` (the upstream safety filter refused)."),
    401: ("Unauthorized", "Missing or wrong API key (`invalid_api_key`)."),
    404: ("NotFound", "Unknown route (`not_found`), image key (`image_not_found`, also once "
                      "expired) or model id (`model_not_found`)."),
    405: ("MethodNotAllowed", "The path exists, the method does not (`method_not_allowed`); "
                              "the `Allow` header lists the methods."),
    413: ("PayloadTooLarge", "The body is larger than MAX_BODY_BYTES (`payload_too_large`)."),
    429: ("TooManyRequests", "A rate limit (`rate_limit_exceeded`, with `Retry-After`), or "
                             "`insufficient_quota`: a daily neuron budget (DAILY_NEURONS, the "
                             "key's) or every Cloudflare account's allocation is used up; the "
                             "message says which, and it resets 00:00 UTC."),
    500: ("ServerError", "A fault in this server (`server_error`): never caused by bad input; "
                         "the message carries a request id to report."),
    502: ("BadGateway", "The image provider failed or answered nonsense (`upstream_error`), or "
                        "refused the server's own credentials (`upstream_auth_failed`)."),
    503: ("ServiceUnavailable", "No capacity upstream or here (`rate_limit_exceeded`, with "
                                "`Retry-After`), or storage unreachable (`storage_error`)."),
    504: ("GatewayTimeout", "The image provider did not answer within UPSTREAM_TIMEOUT "
                           "(`upstream_error`)."),
    507: ("InsufficientStorage", "Image storage is full (`storage_error`)."),
}
RETRY_AFTER_STATUSES = (429, 503)

# What a generation can fail with, on top of its own validation errors.
GENERATION_ERRORS = (400, 401, 413, 429, 500, 502, 503, 504, 507)


def openapi_spec(server_url: str | None = None, *, max_images: int = 4,
                 max_body_bytes: int = 1 << 20) -> dict:
    """The OpenAPI document of the whole public API.

    `server_url` is the service's root as clients reach it (None: relative, `/`); `max_images`
    and `max_body_bytes` are the running configuration's MAX_IMAGES and MAX_BODY_BYTES.
    """
    paths = {
        "/": {"get": _index()},
        "/v1/chat/completions": {"post": _chat_completions(max_body_bytes)},
        "/v1/images/generations": {"post": _images_generations(max_images, max_body_bytes)},
        "/v1/images/edits": {"post": _images_edits(max_images)},
        "/v1/images/variations": {"post": _images_variations(max_images)},
        "/v1/models": {"get": _list_models()},
        "/v1/models/{model_id}": {"get": _get_model()},
        "/v1/usage": {"get": _usage()},
        "/image/{key}": _image_path(),
        "/healthz": {"get": _healthz()},
        "/readyz": {"get": _readyz()},
        "/openapi.json": {"get": _openapi_json()},
        "/metrics": {"get": _metrics()},
    }
    for path, alias in ALIASES.items():
        paths[alias] = _alias_of(path, paths[path])
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "flux-worker",
            "version": __version__,
            "summary": "Chat your way to an image: an OpenAI-compatible API in front of "
                       "Cloudflare Workers AI image models.",
            "description": _DESCRIPTION,
        },
        "servers": [{"url": server_url or "/"}],
        "tags": [
            {"name": "chat", "description": "Chat completions: the last user message becomes an "
                                            "image."},
            {"name": "images", "description": "The OpenAI Images API."},
            {"name": "models", "description": "The image models offered."},
            {"name": "files", "description": "Stored images; the key is the capability."},
            {"name": "service", "description": "Welcome page, probes, metrics and this "
                                               "document."},
            {"name": "alias", "description": "The API routes without the `/v1` prefix."},
        ],
        "paths": paths,
        "components": {
            "schemas": _schemas(max_images),
            "responses": _error_responses(),
            "headers": _headers(),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http", "scheme": "bearer",
                    "description": "`Authorization: Bearer <key>` with one of the server's "
                                   "API_KEY values. When the server runs without API_KEY "
                                   "(demo backend only) any key or none is accepted.",
                },
            },
        },
    }


_DESCRIPTION = """\
Turns a chat message such as `a cute cat 16:9` into an AI image and answers in the OpenAI \
format, so any OpenAI-compatible client can generate images by chatting.

- **Aliases**: every API route also answers without the `/v1` prefix (`/chat/completions`, \
`/images/generations`, `/models`, `/models/{model_id}`); they are listed too, tagged \
`alias`.
- **Errors**: every 4xx and 5xx answer is `{"error": {"message", "type", "param", "code"}}` \
(the `Error` schema), whose message says what to do.
- **CORS**: `OPTIONS` on any path is a preflight answered with 204.
- **Streaming**: with `"stream": true` a chat completion is `text/event-stream`; its schema \
describes one event (as OpenAPI 3.2's `itemSchema` would): the JSON of a \
`ChatCompletionChunk`, and finally `[DONE]`.
- **Model ids contain slashes** (`@cf/black-forest-labs/flux-1-schnell`): \
`/v1/models/{model_id}` takes the rest of the path, raw or percent-encoded.
"""


# --- small builders ---------------------------------------------------------------------------

_SCHEMA_REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict:
    return {"$ref": _SCHEMA_REF.format(model=name)}


def _nullable(schema: dict) -> dict:
    """`schema` or null (OpenAPI 3.1 spells it as a type list)."""
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    out = dict(schema, type=[*types, "null"])
    if "enum" in schema:
        out["enum"] = [*schema["enum"], None]
    return out


def _obj(properties: dict, required: tuple[str, ...] | list[str] = (), **extra) -> dict:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    schema.update(extra)
    return schema


def _str(description: str | None = None, **extra) -> dict:
    return {"type": "string", **({"description": description} if description else {}), **extra}


def _int(description: str | None = None, **extra) -> dict:
    return {"type": "integer", **({"description": description} if description else {}), **extra}


def _json(schema: dict, **extra) -> dict:
    return {"application/json": {"schema": schema, **extra}}


def _ok(description: str, content: dict | None = None, headers: dict | None = None) -> dict:
    response: dict[str, Any] = {"description": description}
    if content is not None:
        response["content"] = content
    if headers:
        response["headers"] = headers
    return response


def _errors(*statuses: int) -> dict:
    return {str(s): {"$ref": f"#/components/responses/{ERROR_RESPONSES[s][0]}"}
            for s in statuses}


def _header(name: str) -> dict:
    return {"$ref": f"#/components/headers/{name}"}


def _operation(operation_id: str, tag: str, summary: str, description: str, responses: dict, *,
               secured: bool, **extra) -> dict:
    return {"operationId": operation_id, "tags": [tag], "summary": summary,
            "description": description,
            "security": [{"bearerAuth": []}] if secured else [],
            "responses": responses, **extra}


def _json_body(schema_name: str, description: str, examples: dict) -> dict:
    return {"required": True, "description": description,
            "content": _json(_ref(schema_name), examples={
                name: {"summary": name.replace("_", " "), "value": value}
                for name, value in examples.items()})}


def _alias_of(path: str, item: dict) -> dict:
    """The path item of an unprefixed alias: the same operations, with their own ids."""
    aliased = {}
    for method, operation in item.items():
        aliased[method] = dict(
            copy.deepcopy(operation), operationId=operation["operationId"] + "Unprefixed",
            tags=[*operation["tags"], "alias"],
            summary=operation["summary"] + f" (alias of {path})",
            description=f"The same as `{method.upper()} {path}`, for clients whose base URL "
                        "lacks `/v1`.")
    return aliased


# --- operations -------------------------------------------------------------------------------

def _index() -> dict:
    return _operation(
        "getIndex", "service", "Welcome page or service status",
        "The welcome page (HTML, with a playground): the service is up, which backend, storage "
        "and models it runs, how to connect a client. With `Accept: application/json` the same "
        "facts as JSON.",
        {"200": _ok("The welcome page, or the status as JSON.", {
            "text/html": {"schema": {"type": "string"}},
            **_json(_ref("ServiceStatus"))}),
         **_errors(500)},
        secured=False)


def _chat_completions(max_body_bytes: int) -> dict:
    return _operation(
        "createChatCompletion", "chat", "Generate an image from the last user message",
        "Only the last user message is used: its text is the prompt, a ratio at its end "
        "(`16:9`, `--ar 3:2`, `1920x1080`) picks the size, `--seed N`, `--steps N` and "
        "`--no TEXT` are options. The answer's content is markdown with the image link. "
        "Client housekeeping requests (chat titles, summaries) are answered with text and no "
        "image. With `stream: true` the answer is a server-sent event stream; everything that "
        "can be checked is checked before it begins, so a bad request is an HTTP error, and a "
        "failure after the first byte is a last content chunk saying what went wrong. "
        f"Bodies over {max_body_bytes} bytes are refused with 413.",
        {"200": _ok("The chat completion, or its stream of chunks.", {
            **_json(_ref("ChatCompletion")),
            "text/event-stream": {"schema": _ref("ChatCompletionStreamEvent")}},
            {"X-Neurons": _header("X-Neurons")}),
         **_errors(*GENERATION_ERRORS)},
        secured=True,
        requestBody=_json_body("ChatCompletionRequest", "An OpenAI chat completion request.", {
            "plain": {"model": "flux", "messages": [{"role": "user",
                                                     "content": "a cute cat 16:9"}]},
            "stream_with_usage": {"stream": True, "stream_options": {"include_usage": True},
                                  "messages": [{"role": "system", "content": "be brief"},
                                               {"role": "user", "content": "a lighthouse 3:2"}]},
            "content_parts": {"model": "gpt-4o", "messages": [
                {"role": "user", "content": [{"type": "text", "text": "a red fox in snow"},
                                             {"type": "text", "text": "--ar 9:16"}]}]},
        }))


def _images_generations(max_images: int, max_body_bytes: int) -> dict:
    return _operation(
        "createImage", "images", "Generate images (OpenAI Images API)",
        f"`n` images (up to MAX_IMAGES, here {max_images}) for a prompt, as links to "
        "`/image/{key}` or as base64. An unknown `model` is 404 `model_not_found`. "
        f"Bodies over {max_body_bytes} bytes are refused with 413.",
        {"200": _ok("The images.", _json(_ref("ImagesResponse")),
                    {"X-Neurons": _header("X-Neurons")}),
         **_errors(*sorted((*GENERATION_ERRORS, 404)))},
        secured=True,
        requestBody=_json_body("ImageGenerationRequest", "An OpenAI Images API request.", {
            "url": {"model": "flux-1-schnell", "prompt": "a red fox in snow", "n": 2,
                    "size": "1024x576"},
            "b64_json": {"prompt": "a cute cat", "size": "16:9", "response_format": "b64_json",
                         "output_format": "png", "quality": "hd", "style": "vivid"},
            "options": {"model": "sdxl-lightning", "prompt": "a castle", "seed": 42, "steps": 4,
                        "negative_prompt": "blurry", "guidance": 7.5},
        }))


# --- image input (issue 11) ----------------------------------------------------------------------

def _images_edits(max_images: int) -> dict:
    return _operation(
        "createImageEdit", "images", "Edit images (OpenAI Images API)",
        "1 to 4 images changed after a prompt: a multipart form with `image` or `image[]` files "
        "(PNG, JPEG, WebP or GIF) and an optional `mask` (fully transparent where the image "
        "should change), or JSON with `images: [{\"image_url\": ...}]` (`data:` URLs, this "
        "service's own `/image/{key}` links, other links only with FETCH_REMOTE_IMAGES). A "
        "model that takes no images is replaced by EDIT_MODEL (`requested_model` then names the "
        "one asked for). Uploads over MAX_UPLOAD_BYTES are refused with 413. Answers like "
        "`/v1/images/generations`.",
        {"200": _ok("The images.", _json(_ref("ImagesResponse"))),
         **_errors(*sorted((*GENERATION_ERRORS, 404)))},
        secured=True,
        requestBody={"required": True, "content": {
            "multipart/form-data": {"schema": _ref("ImageEditForm")},
            **_json(_ref("ImageEditJson"), examples={"data_url": {
                "summary": "data URL", "value": {
                    "prompt": "make it blue",
                    "images": [{"image_url": "data:image/png;base64,iVBORw0KGgo="}]}}}),
        }})


def _images_variations(max_images: int) -> dict:
    return _operation(
        "createImageVariation", "images", "Variations of an image (OpenAI Images API)",
        "`n` new takes on one image, each with its own seed. Answers like "
        "`/v1/images/generations`.",
        {"200": _ok("The images.", _json(_ref("ImagesResponse"))),
         **_errors(*sorted((*GENERATION_ERRORS, 404)))},
        secured=True,
        requestBody={"required": True, "content": {
            "multipart/form-data": {"schema": _ref("ImageVariationForm")}}})


def _edit_schemas(max_images: int) -> dict:
    binary = {"type": "string", "format": "binary"}
    common = {
        "model": _str("An offered model id or alias; one that takes no images means "
                      "EDIT_MODEL."),
        "n": _int("How many images (1 to MAX_IMAGES).", minimum=1, maximum=max_images),
        "size": _str("`WIDTHxHEIGHT`, a ratio such as `16:9`, or `auto` (the input's "
                     "proportions)."),
        "response_format": _str(enum=["url", "b64_json"]),
        "output_format": _str(enum=["png", "jpeg", "jpg", "webp"]),
        "seed": _int(minimum=0, maximum=2**32 - 1),
    }
    edit = {
        **common, "prompt": _str("The change to make, such as `make it blue`.", minLength=1),
        "steps": _int(minimum=1, maximum=100), "negative_prompt": _str(),
        "strength": {"type": "number", "minimum": 0, "maximum": 1},
        "guidance": {"type": "number", "minimum": 0, "maximum": 100},
    }
    ref = _obj({"image_url": {"anyOf": [_str(), _obj({"url": _str()}, ["url"])]}},
               ["image_url"])
    return {
        "ImageEditForm": _obj({**edit, "image": binary,
                               "image[]": {"type": "array", "items": binary, "maxItems": 4},
                               "mask": binary}, ["prompt"]),
        "ImageEditJson": _obj({**edit, "images": {"type": "array", "items": ref,
                                                  "minItems": 1, "maxItems": 4},
                               "mask": ref}, ["prompt", "images"]),
        "ImageVariationForm": _obj({**common, "image": binary}, ["image"]),
    }
# --- end image input -----------------------------------------------------------------------------


def _list_models() -> dict:
    return _operation(
        "listModels", "models", "List the image models offered",
        "The models in IMAGE_MODELS (default: the whole catalog), in OpenAI's list format.",
        {"200": _ok("The models.", _json(_ref("ModelList"))), **_errors(401, 500)},
        secured=True)


def _get_model() -> dict:
    return _operation(
        "retrieveModel", "models", "One model with its capabilities",
        "A model by id or alias. Ids contain slashes (`@cf/leonardo/phoenix-1.0`): send them "
        "as they are or percent-encoded. Unknown ids are 404 `model_not_found`.",
        {"200": _ok("The model.", _json(_ref("ModelDetail"))), **_errors(401, 404, 500)},
        secured=True,
        parameters=[{
            "name": "model_id", "in": "path", "required": True,
            "description": "A model id such as `@cf/black-forest-labs/flux-1-schnell` (it "
                           "contains slashes) or an alias such as `flux`.",
            "schema": {"type": "string", "minLength": 1},
            "examples": {
                "id": {"value": "@cf/black-forest-labs/flux-1-schnell"},
                "alias": {"value": "flux"},
                "unknown": {"value": "gpt-4o"},
            },
        }])


def _image_path() -> dict:
    key = {"name": "key", "in": "path", "required": True,
           "description": "The key in an image link: 22 URL-safe base64 characters (128 random "
                          "bits).",
           "schema": {"type": "string", "minLength": 1},
           "example": "Xb3vQ9sTnR2kLmP0aB1cDw"}
    if_none_match = {"name": "If-None-Match", "in": "header", "required": False,
                     "description": "An ETag from an earlier answer: 304 when it still matches.",
                     "schema": {"type": "string"}}
    headers = {name: _header(name) for name in
               ("ETag", "Cache-Control", "Expires", "Last-Modified", "Content-Disposition")}
    not_modified = _ok("The ETag still matches: no body.",
                       headers={"ETag": _header("ETag"), "Cache-Control": _header("Cache-Control")})
    description = ("The stored image with its real content type (sniffed from the bytes: JPEG "
                   "for FLUX), a strong `ETag`, and `Cache-Control` no longer than its remaining "
                   "lifetime. 404 once it has expired (IMAGE_EXPIRATION). No API key: the key "
                   "is the capability.")
    image_types = {t: {"schema": {"type": "string", "format": "binary"}}
                   for t in ("image/jpeg", "image/png", "image/webp", "image/gif")}
    return {
        "parameters": [key],
        "get": _operation("getImage", "files", "A stored image", description, {
            "200": _ok("The image bytes.", image_types, headers),
            "304": not_modified, **_errors(404, 500, 503)},
            secured=False, parameters=[if_none_match]),
        "head": _operation("headImage", "files", "A stored image's headers",
                           "The headers of `GET /image/{key}`, without the body.", {
                               "200": _ok("The image exists.", headers=headers),
                               "304": not_modified,
                               "404": {"description": "No such image (no body)."},
                               "500": {"description": "A fault in this server (no body)."},
                               "503": {"description": "Storage unreachable (no body)."}},
                           secured=False, parameters=[if_none_match]),
    }


def _usage() -> dict:
    return _operation(
        "getUsage", "models", "Neurons spent today against the daily budgets",
        "With a client key: that key's spend today (by its short hash), its budget and what is "
        "left, and nothing else. With ADMIN_API_KEY: the service's (DAILY_NEURONS), every key "
        "(short hashes, never a key) and every Cloudflare account (shortened ids, never a "
        "token). Days are UTC days; budgets reset at 00:00 UTC.",
        {"200": _ok("Today's usage.", _json(_ref("NeuronUsage"))), **_errors(401, 500)},
        secured=True)


def _healthz() -> dict:
    return _operation(
        "healthz", "service", "Liveness", "The process answers.",
        {"200": _ok("Alive.", _json(_obj({"status": {"const": "ok"}}, ["status"])))},
        secured=False)


def _readyz() -> dict:
    checks = _obj({"config": _str(), "backend": _str(),
                   "storage": _str("`ok`, or what is wrong with storage in general words."),
                   "accounts": _str("Cloudflare backend: `ok`, or that some or all accounts are "
                                    "skipped for now (GET /v1/usage with ADMIN_API_KEY says "
                                    "which); does not make the service unready.")})
    return _operation(
        "readyz", "service", "Readiness",
        "Storage reachable and writable, configuration loaded. 503 while storage is down; the "
        "service recovers by itself. Open: says why in general words; with a configured key, "
        "the error names the cause.",
        {"200": _ok("Ready.", _json(_obj({"status": {"const": "ready"}, "checks": checks},
                                         ["status", "checks"]))),
         "503": _ok("Not ready: storage unavailable. The Error body carries `status` and "
                    "`checks` too.",
                    _json({"allOf": [_ref("Error"), _obj(
                        {"status": {"const": "unavailable"}, "checks": checks},
                        ["status", "checks"])]}),
                    {"Retry-After": _header("Retry-After")}),
         **_errors(500)},
        secured=False)


def _openapi_json() -> dict:
    return _operation(
        "getOpenAPI", "service", "This document",
        "The OpenAPI description of the API, with the server URL of the request.",
        {"200": _ok("The OpenAPI document.", _json({"type": "object", "required": ["openapi"]}))},
        secured=False)


def _metrics() -> dict:
    return _operation(
        "metrics", "service", "Prometheus metrics",
        "Request counts and timings, generations, upstream calls, of every worker process, in "
        "the Prometheus text exposition format. No API key: keep it off the public edge at the "
        "proxy if the numbers should stay private.",
        {"200": _ok("The metrics.", {"text/plain": {"schema": {"type": "string"}}},
                    {"Cache-Control": _header("Cache-Control")}),
         **_errors(500)},
        secured=False)


# --- components -------------------------------------------------------------------------------

def _error_responses() -> dict:
    error = _json(_ref("Error"))
    out = {}
    for status, (name, description) in ERROR_RESPONSES.items():
        out[name] = {"description": description, "content": error}
        if status in RETRY_AFTER_STATUSES:
            out[name]["headers"] = {"Retry-After": _header("Retry-After")}
        if status == 405:
            out[name]["headers"] = {"Allow": _header("Allow")}
    return out


def _headers() -> dict:
    def header(description: str, schema: dict | None = None) -> dict:
        return {"description": description, "schema": schema or {"type": "string"}}

    return {
        "Retry-After": header("Seconds to wait before trying again.", {"type": "integer",
                                                                        "minimum": 0}),
        "Allow": header("The methods the path accepts."),
        "ETag": header("Strong validator: the key itself (an image never changes)."),
        "Cache-Control": header("Caching policy; for images no longer than their lifetime."),
        "Expires": header("When the image expires (HTTP date)."),
        "Last-Modified": header("When the image was stored (HTTP date)."),
        "Content-Disposition": header("`inline` with a file name from the key."),
        "X-Neurons": header("Workers AI neurons the images cost: Cloudflare's figure when it "
                            "reports one, else the estimate from the catalog's price. In a "
                            "stream it is the estimate (headers precede the body). Absent for "
                            "models without a Workers AI price.",
                            {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?$"}),
    }


def _request_schemas(max_images: int) -> dict:
    """The request bodies' schemas, generated from the wire models that validate them."""
    schemas = copy.deepcopy(_model_schemas())
    # MAX_IMAGES is configuration, so the model cannot state `n`'s upper bound itself.
    n = schemas["ImageGenerationRequest"]["properties"]["n"]
    for choice in n["anyOf"]:
        if choice.get("type") == "integer":
            choice["maximum"] = max_images
    return schemas


@functools.cache
def _model_schemas() -> dict[str, Any]:
    """The wire models' JSON Schemas and their parts' (made once: it takes about 8 ms)."""
    schemas: dict[str, Any] = {}
    for model in (ChatCompletionRequest, ImageGenerationRequest):
        schema = model.model_json_schema(ref_template=_SCHEMA_REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return schemas


def _schemas(max_images: int) -> dict:
    usage = _obj({"prompt_tokens": _int(minimum=0), "completion_tokens": _int(minimum=0),
                  "total_tokens": _int(minimum=0)},
                 ["prompt_tokens", "completion_tokens", "total_tokens"],
                 description="Token estimates (one per four UTF-8 bytes): no language model "
                             "writes this text.")
    created = _int("Unix time in seconds.")
    num = {"type": "number"}
    return {
        **_request_schemas(max_images),
        "Error": _obj({"error": _obj(
            {"message": _str("What went wrong and what to do."),
             "type": _str(examples=["invalid_request_error", "rate_limit_exceeded",
                                    "insufficient_quota", "upstream_error", "storage_error",
                                    "server_error"]),
             "param": _nullable(_str("The request field at fault, if any.")),
             "code": _nullable(_str(examples=["invalid_api_key", "model_not_found",
                                              "prompt_too_long", "content_policy_violation"]))},
            ["message", "type", "param", "code"], additionalProperties=False)},
            ["error"], description="The one error shape of every 4xx and 5xx answer."),

        "Usage": usage,
        "ImageParts": {"type": "array", "minItems": 1, "description": (
            "Only when the request's `modalities` include `image`: the answer's image."),
            "items": _obj({"type": {"const": "image_url"},
                           "image_url": _obj({"url": _str(format="uri")}, ["url"])},
                          ["type", "image_url"])},
        "ChatCompletion": _obj(
            {"id": _str(pattern="^chatcmpl-"), "object": {"const": "chat.completion"},
             "created": created, "model": _str("The image model used."),
             "choices": {"type": "array", "minItems": 1, "maxItems": 1, "items": _obj(
                 {"index": _int(minimum=0),
                  "message": _obj({"role": {"const": "assistant"},
                                   "content": _str("Markdown with the image link."),
                                   "refusal": {"type": "null"},
                                   "images": _ref("ImageParts")},
                                  ["role", "content", "refusal"]),
                  "logprobs": {"type": "null"},
                  "finish_reason": _str(enum=["stop", "length"])},
                 ["index", "message", "finish_reason"])},
             "usage": _ref("Usage")},
            ["id", "object", "created", "model", "choices", "usage"]),
        "ChatCompletionChunk": _obj(
            {"id": _str(pattern="^chatcmpl-"), "object": {"const": "chat.completion.chunk"},
             "created": created, "model": _str(),
             "choices": {"type": "array", "maxItems": 1, "items": _obj(
                 {"index": _int(minimum=0),
                  "delta": _obj({"role": {"const": "assistant"}, "content": _str(),
                                 "images": _ref("ImageParts")}),
                  "logprobs": {"type": "null"},
                  "finish_reason": _nullable(_str(enum=["stop", "length"]))},
                 ["index", "delta", "finish_reason"]),
                 "description": "Empty in the usage chunk."},
             "usage": {"anyOf": [_ref("Usage"), {"type": "null"}],
                       "description": "Present when `stream_options.include_usage` is set: null "
                                      "except in the last chunk."}},
            ["id", "object", "created", "model", "choices"],
            description="One chunk of a streamed chat completion: the role first, then pieces "
                        "of content, a chunk with `finish_reason`, and optionally usage."),
        "ChatCompletionStreamEvent": {
            "type": "object", "required": ["data"],
            "description": "One server-sent event of a streamed chat completion: `data` is the "
                           "JSON of a ChatCompletionChunk, and `[DONE]` in the last event.",
            "properties": {"data": {"type": "string"}, "event": {"type": "string"}},
            "if": {"properties": {"data": {"const": "[DONE]"}}},
            "else": {"properties": {"data": {"contentMediaType": "application/json",
                                             "contentSchema": _ref("ChatCompletionChunk")}}},
        },

        "ImageItem": _obj(
            {"url": _str("Absolute link to `/image/{key}`.", format="uri"),
             "b64_json": _str("The image bytes, base64 (no `data:` prefix)."),
             "revised_prompt": _str("The prompt after translation, when it was translated."),
             "seed": _int("The seed used, for models that take one.", minimum=0)},
            oneOf=[{"required": ["url"]}, {"required": ["b64_json"]}]),
        "ImagesResponse": _obj(
            {"created": created, "data": {"type": "array", "minItems": 1,
                                          "items": _ref("ImageItem")},
             "size": _str("The size of every image, present only when it is one of the "
                          "sizes OpenAI's answer allows.", enum=sorted(OPENAI_IMAGE_SIZES)),
             "output_format": _str(enum=sorted(OPENAI_OUTPUT_FORMATS)),
             "model": _str("The model that drew (edits and variations)."),
             "requested_model": _str("The model asked for, when EDIT_MODEL drew instead.")},
            ["created", "data"]),
        **_edit_schemas(max_images),

        "Model": _obj(
            {"id": _str(examples=["@cf/black-forest-labs/flux-1-schnell"]),
             "object": {"const": "model"}, "created": created, "owned_by": _str(),
             "backend": _str("`cloudflare`, `openai` or `demo`.")},
            ["id", "object", "created", "owned_by"]),
        "ModelList": _obj({"object": {"const": "list"},
                           "data": {"type": "array", "items": _ref("Model")}},
                          ["object", "data"]),
        "ModelCapabilities": _obj(
            {"encoding": _str(enum=["json", "multipart"]),
             "size_control": {"type": "boolean"},
             "size_range": _obj({"min": _int(), "max": _int()}, ["min", "max"]),
             "default_size": _str(pattern="^[0-9]+x[0-9]+$"),
             "steps": {"anyOf": [_obj({"field": _str(), "min": _int(), "max": _int()}),
                                 {"type": "null"}]},
             "seed": {"type": "boolean"},
             "guidance": {"anyOf": [{"type": "array", "items": {"type": "number"},
                                     "minItems": 2, "maxItems": 2}, {"type": "null"}]},
             "negative_prompt": {"type": "boolean"},
             "response": _str(enum=["json", "binary"]),
             "max_prompt_chars": _nullable(_int()),
             "image_input": _obj({"reference_images": _int(), "source_image": {"type": "boolean"},
                                  "max_images": _int(), "mask": {"type": "boolean"},
                                  "strength": {"type": "boolean"},
                                  "requires_image": {"type": "boolean"}})}),
        "ModelDetail": {"allOf": [_ref("Model"), _obj(
            {"aliases": {"type": "array", "items": _str()}, "description": _str(),
             "capabilities": _ref("ModelCapabilities"), "default": {"type": "boolean"},
             "cost": _ref("ModelCost")},
            ["aliases", "description", "capabilities", "default", "cost"])]},
        "ModelCost": _obj(
            {"price": _nullable(_obj(
                {"per_tile": num, "per_step": num, "per_tile_step": num, "per_input_tile": num,
                 "per_input_tile_step": num, "tile": _str(), "formula": _str(),
                 "listed": {"type": "boolean", "description": "false: Cloudflare lists no "
                                                              "price; the figure is assumed."},
                 "usd_per_neuron": num, "note": _str()},
                ["formula", "listed"], description="Neurons per image, by term.")),
             "default_size": _str(), "estimate_neurons": _nullable(num),
             "estimate_usd": _nullable(num)},
            ["price", "default_size", "estimate_neurons", "estimate_usd"],
            description="The price formula and the estimate for the default size at "
                        "FLUX_NUM_STEPS."),
        "UsageLine": _obj(
            {"key": _str("The key's short hash (never the key)."), "spent_neurons": num,
             "budget_neurons": _nullable(num), "left_neurons": _nullable(num),
             "spent_usd": num},
            ["spent_neurons", "budget_neurons", "left_neurons", "spent_usd"]),
        "AccountUsage": _obj(
            {"account": _str("The account id, shortened."),
             "state": {"enum": ["ok", "allocation_used_up", "budget_reached", "token_rejected"]},
             "spent_neurons": num, "allocation_neurons": num,
             "budget_neurons": _nullable(num), "retry_in_seconds": _int(minimum=1)},
            ["account", "state", "spent_neurons", "allocation_neurons", "budget_neurons"]),
        "NeuronUsage": _obj(
            {"object": {"const": "usage"}, "day": _str("The UTC day counted."),
             "resets_at": _str("The next 00:00 UTC."), "resets_in_seconds": _int(minimum=1),
             "service": _ref("UsageLine"), "key": _ref("UsageLine"),
             "keys": {"type": "array", "items": _ref("UsageLine")},
             "accounts": {"type": "array", "items": _ref("AccountUsage")}},
            ["object", "day", "resets_at", "resets_in_seconds"]),

        "ServiceStatus": _obj(
            {"service": {"const": "flux-worker"}, "status": {"const": "ok"},
             "backend": _str(), "demo": {"type": "boolean"}, "storage": _str(),
             "image_expiration": _int("Seconds an image is kept; 0: kept for ever."),
             "auth_required": {"type": "boolean"},
             "translation": _nullable(_str("The translation model, or null when off.")),
             "default_model": _str(), "models": {"type": "array", "items": _str()},
             "base_url": _str("The base URL to give an OpenAI client.")},
            ["service", "status", "backend", "storage", "models", "base_url"]),
    }
