"""The OpenAPI 3.1 description of the public API, built as a plain dictionary.

No Flask here: `web.openapi` serves it at GET /openapi.json, `tests/test_openapi.py` keeps it
true to the routes and to real answers, and `tests/e2e/test_fuzz.py` fuzzes the live service
against it with Schemathesis. This module holds the paths and their operations; the schemas,
error responses and headers they refer to are in openapi_components.py.

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
from typing import Any, Mapping

from ..version import __version__
from . import openapi_admin, openapi_history, openapi_responses
from .fields import MAX_EDIT_IMAGES
from .openapi_components import (
    ERROR_RESPONSES,
    components,
    header_ref,
    json_content,
    obj,
    ref,
    string,
)

OPENAPI_VERSION = "3.1.0"

# What a generation can fail with, on top of its own validation errors.
GENERATION_ERRORS = (400, 401, 403, 413, 429, 500, 502, 503, 504, 507)


def openapi_spec(server_url: str | None = None, *, max_images: int = 4,
                 max_body_bytes: int = 1 << 20,
                 aliases: Mapping[str, str] | None = None) -> dict:
    """The OpenAPI document of the whole public API.

    `server_url` is the service's root as clients reach it (None: relative, `/`); `max_images`
    and `max_body_bytes` are the running configuration's MAX_IMAGES and MAX_BODY_BYTES;
    `aliases` maps each /v1 path to the root path that also serves it, as the app's routes
    register them (`web/routes.py`).
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
        **openapi_history.paths(_operation, _ok, _errors),
        **openapi_responses.paths(_operation, _ok, _errors, GENERATION_ERRORS),
        **openapi_admin.paths(_operation, _ok, _errors),
        "/image/{key}": _image_path(),
        "/healthz": {"get": _healthz()},
        "/readyz": {"get": _readyz()},
        "/openapi.json": {"get": _openapi_json()},
        "/metrics": {"get": _metrics()},
        **openapi_admin.paths(_operation, _ok, _errors),
    }
    for path, alias in (aliases or {}).items():
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
            {"name": "responses", "description": "OpenAI's Responses API: every request an "
                                                 "image request."},
            {"name": "files", "description": "Stored images; the key is the capability."},
            {"name": "service", "description": "Welcome page, probes, metrics and this "
                                               "document."},
            {"name": "admin", "description": "For the holder of ADMIN_API_KEY: run-time keys, the "
                                             "admin page and its data."},
            {"name": "alias", "description": "The API routes without the `/v1` prefix."},
        ],
        "paths": paths,
        "components": _with_responses(components(max_images)),
    }


def _with_responses(parts: dict) -> dict:
    parts["schemas"].update(openapi_responses.schemas())
    parts["schemas"].update(openapi_admin.schemas())
    return parts


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


# --- small builders (the schema builders are in openapi_components) -----------------------

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


def _operation(operation_id: str, tag: str, summary: str, description: str, responses: dict, *,
               secured: bool, **extra) -> dict:
    return {"operationId": operation_id, "tags": [tag], "summary": summary,
            "description": description,
            "security": [{"bearerAuth": []}] if secured else [],
            "responses": responses, **extra}


def _json_body(schema_name: str, description: str, examples: dict) -> dict:
    return {"required": True, "description": description,
            "content": json_content(ref(schema_name), examples={
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
            **json_content(ref("ServiceStatus"))}),
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
            **json_content(ref("ChatCompletion")),
            "text/event-stream": {"schema": ref("ChatCompletionStreamEvent")}},
            {"X-Neurons": header_ref("X-Neurons")}),
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
        "`/image/{key}` or as base64. An unknown `model` is 404 `model_not_found`. With "
        "`stream: true` the answer is a server-sent event stream: SSE comments while the image "
        "is drawn, then one `image_generation.completed` event per image (or an `error` "
        "event); a bad request is still an HTTP error. "
        f"Bodies over {max_body_bytes} bytes are refused with 413.",
        {"200": _images_ok(), **_errors(*sorted((*GENERATION_ERRORS, 404)))},
        secured=True,
        requestBody=_json_body("ImageGenerationRequest", "An OpenAI Images API request.", {
            "url": {"model": "flux-1-schnell", "prompt": "a red fox in snow", "n": 2,
                    "size": "1024x576"},
            "b64_json": {"prompt": "a cute cat", "size": "16:9", "response_format": "b64_json",
                         "output_format": "png", "quality": "hd", "style": "vivid"},
            "options": {"model": "sdxl-lightning", "prompt": "a castle", "seed": 42, "steps": 4,
                        "negative_prompt": "blurry", "guidance": 7.5},
        }))


def _images_ok() -> dict:
    return _ok("The images, or their stream of events.", {
        **json_content(ref("ImagesResponse")),
        "text/event-stream": {"schema": ref("ImageStreamEvent")}},
        {"X-Neurons": header_ref("X-Neurons"), "X-Image-Size": header_ref("X-Image-Size"),
         "X-Image-Links": header_ref("X-Image-Links")})


def _images_edits(max_images: int) -> dict:
    return _operation(
        "createImageEdit", "images", "Edit images (OpenAI Images API)",
        f"1 to {MAX_EDIT_IMAGES} images changed after a prompt: a multipart form with `image` or "
        "`image[]` files (PNG, JPEG, WebP or GIF) and an optional `mask` (fully transparent "
        "where the image should change), or JSON with `images: [{\"image_url\": ...}]` "
        "(`data:` URLs, this service's own `/image/{key}` links, other links only with "
        "FETCH_REMOTE_IMAGES). A model that takes no images is replaced by EDIT_MODEL "
        "(`requested_model` then names the one asked for). Uploads over MAX_UPLOAD_BYTES are "
        "refused with 413. Answers like `/v1/images/generations` (streamed events are "
        "`image_edit.completed`).",
        {"200": _images_ok(),
         **_errors(*sorted((*GENERATION_ERRORS, 404)))},
        secured=True,
        requestBody={"required": True, "content": {
            "multipart/form-data": {"schema": ref("ImageEditForm")},
            **json_content(ref("ImageEditJson"), examples={"data_url": {
                "summary": "data URL", "value": {
                    "prompt": "make it blue",
                    "images": [{"image_url": "data:image/png;base64,iVBORw0KGgo="}]}}}),
        }})


def _images_variations(max_images: int) -> dict:
    return _operation(
        "createImageVariation", "images", "Variations of an image (OpenAI Images API)",
        "`n` new takes on one image, each with its own seed. Answers like "
        "`/v1/images/generations`.",
        {"200": _images_ok(),
         **_errors(*sorted((*GENERATION_ERRORS, 404)))},
        secured=True,
        requestBody={"required": True, "content": {
            "multipart/form-data": {"schema": ref("ImageVariationForm")}}})


def _list_models() -> dict:
    return _operation(
        "listModels", "models", "List the image models offered",
        "The models in IMAGE_MODELS (default: the whole catalog), in OpenAI's list format.",
        {"200": _ok("The models.", json_content(ref("ModelList"))), **_errors(401, 500)},
        secured=True)


def _get_model() -> dict:
    return _operation(
        "retrieveModel", "models", "One model with its capabilities",
        "A model by id or alias. Ids contain slashes (`@cf/leonardo/phoenix-1.0`): send them "
        "as they are or percent-encoded. Unknown ids are 404 `model_not_found`.",
        {"200": _ok("The model.", json_content(ref("ModelDetail"))), **_errors(401, 404, 500)},
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
    headers = {name: header_ref(name) for name in
               ("ETag", "Cache-Control", "Expires", "Last-Modified", "Content-Disposition")}
    not_modified = _ok("The ETag still matches: no body.",
                       headers={"ETag": header_ref("ETag"),
                                "Cache-Control": header_ref("Cache-Control")})
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
        "getUsage", "models", "Neurons and US dollars spent today against the daily budgets",
        "With a client key: that key's spend today (by its short hash), its budgets and what is "
        "left, and nothing else. With ADMIN_API_KEY: the service's (DAILY_NEURONS, DAILY_USD), "
        "every key (short hashes, never a key), every model that drew today and every "
        "Cloudflare account (shortened ids, never a token). Days are UTC days; budgets reset "
        "at 00:00 UTC.",
        {"200": _ok("Today's usage.", json_content(ref("NeuronUsage"))), **_errors(401, 500)},
        secured=True)


def _healthz() -> dict:
    return _operation(
        "healthz", "service", "Liveness", "The process answers.",
        {"200": _ok("Alive.", json_content(obj({"status": {"const": "ok"}}, ["status"])))},
        secured=False)


def _readyz() -> dict:
    checks = obj({"config": string(), "backend": string(),
                  "storage": string("`ok`, or what is wrong with storage in general words."),
                  "accounts": string("Cloudflare backend: `ok`, or that some or all accounts are "
                                   "skipped for now (GET /v1/usage with ADMIN_API_KEY says "
                                   "which); does not make the service unready.")})
    return _operation(
        "readyz", "service", "Readiness",
        "Storage reachable and writable, configuration loaded. 503 while storage is down; the "
        "service recovers by itself. Open: says why in general words; with a configured key, "
        "the error names the cause.",
        {"200": _ok("Ready.", json_content(obj({"status": {"const": "ready"}, "checks": checks},
                                         ["status", "checks"]))),
         "503": _ok("Not ready: storage unavailable. The Error body carries `status` and "
                    "`checks` too.",
                    json_content({"allOf": [ref("Error"), obj(
                        {"status": {"const": "unavailable"}, "checks": checks},
                        ["status", "checks"])]}),
                    {"Retry-After": header_ref("Retry-After")}),
         **_errors(500)},
        secured=False)


def _openapi_json() -> dict:
    return _operation(
        "getOpenAPI", "service", "This document",
        "The OpenAPI description of the API, with the server URL of the request.",
        {"200": _ok("The OpenAPI document.",
                    json_content({"type": "object", "required": ["openapi"]}))},
        secured=False)


def _metrics() -> dict:
    return _operation(
        "metrics", "service", "Prometheus metrics",
        "Request counts and timings, generations, upstream calls, of every worker process, in "
        "the Prometheus text exposition format. No API key: keep it off the public edge at the "
        "proxy if the numbers should stay private.",
        {"200": _ok("The metrics.", {"text/plain": {"schema": {"type": "string"}}},
                    {"Cache-Control": header_ref("Cache-Control")}),
         **_errors(500)},
        secured=False)


