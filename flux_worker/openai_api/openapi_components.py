"""The components of the OpenAPI document: schemas, error responses, headers, security.

The request schemas are not written here: they are the JSON Schemas of the wire models that
validate the requests (generation_requests, edit_requests), made by pydantic from the field
declarations in fields.py, so the document cannot promise a limit the server does not keep.
The answers' schemas are written here, as the answer builders in answers.py have no models.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from pydantic import BaseModel

from .answers import OPENAI_IMAGE_SIZES, OPENAI_OUTPUT_FORMATS
from .edit_requests import EditRequest, VariationRequest
from .fields import MAX_EDIT_IMAGES, bound_n, without_nulls
from .generation_requests import ChatCompletionRequest, ImageGenerationRequest

# Status -> (component name, what it means here). Every one answers with the Error schema.
ERROR_RESPONSES = {
    400: ("BadRequest", "Malformed JSON, a missing or invalid field, no user message or an empty "
                        "prompt (`invalid_request_error`); `prompt_too_long`; "
                        "`content_policy_violation` (the upstream safety filter or this "
                        "server's MODERATION refused)."),
    401: ("Unauthorized", "Missing or wrong API key (`invalid_api_key`)."),
    403: ("Forbidden", "This run-time key may not use the model asked for "
                       "(`model_not_allowed`); the message names the ones it may use. Or the "
                       "admin page's session sent no CSRF token, or a wrong one "
                       "(`permission_denied`)."),
    404: ("NotFound", "Unknown route (`not_found`), image key (`image_not_found`, also once "
                      "expired) or model id (`model_not_found`)."),
    405: ("MethodNotAllowed", "The path exists, the method does not (`method_not_allowed`); "
                              "the `Allow` header lists the methods."),
    413: ("PayloadTooLarge", "The body is larger than MAX_BODY_BYTES (`payload_too_large`)."),
    429: ("TooManyRequests", "A rate limit (`rate_limit_exceeded`, with `Retry-After`), or "
                             "`insufficient_quota`: a daily budget in neurons or US dollars "
                             "(DAILY_NEURONS, DAILY_USD, the key's) or every Cloudflare "
                             "account's allocation is used up; the message says which, and "
                             "it resets 00:00 UTC."),
    500: ("ServerError", "A fault in this server (`server_error`): never caused by bad input; "
                         "the message carries a request id to report."),
    502: ("BadGateway", "The image provider failed or answered nonsense (`upstream_error`), or "
                        "refused the server's own credentials (`upstream_auth_failed`)."),
    503: ("ServiceUnavailable", "No capacity upstream or here (`rate_limit_exceeded`, with "
                                "`Retry-After`), storage unreachable (`storage_error`), or the "
                                "moderation service (`moderation_unavailable`)."),
    504: ("GatewayTimeout", "The image provider did not answer within UPSTREAM_TIMEOUT "
                           "(`upstream_error`)."),
    507: ("InsufficientStorage", "Image storage is full (`storage_error`)."),
}
RETRY_AFTER_STATUSES = (429, 503)

RETRY_AFTER_STATUSES = (429, 503)


def components(max_images: int) -> dict:
    """The document's `components`; `max_images` is the configuration's MAX_IMAGES."""
    return {
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
    }


# --- small builders, for the operations too -----------------------------------------------

SCHEMA_REF = "#/components/schemas/{model}"


def ref(name: str) -> dict:
    return {"$ref": SCHEMA_REF.format(model=name)}


def nullable(schema: dict) -> dict:
    """`schema` or null (OpenAPI 3.1 spells it as a type list)."""
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    out = dict(schema, type=[*types, "null"])
    if "enum" in schema:
        out["enum"] = [*schema["enum"], None]
    return out


def obj(properties: dict, required: tuple[str, ...] | list[str] = (), **extra) -> dict:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    schema.update(extra)
    return schema


def string(description: str | None = None, **extra) -> dict:
    return {"type": "string", **({"description": description} if description else {}), **extra}


def integer(description: str | None = None, **extra) -> dict:
    return {"type": "integer", **({"description": description} if description else {}), **extra}


def json_content(schema: dict, **extra) -> dict:
    return {"application/json": {"schema": schema, **extra}}


def header_ref(name: str) -> dict:
    return {"$ref": f"#/components/headers/{name}"}


# --- the components ---------------------------------------------------------------------------

def _error_responses() -> dict:
    error = json_content(ref("Error"))
    out = {}
    for status, (name, description) in ERROR_RESPONSES.items():
        out[name] = {"description": description, "content": error}
        if status in RETRY_AFTER_STATUSES:
            out[name]["headers"] = {"Retry-After": header_ref("Retry-After")}
        if status == 405:
            out[name]["headers"] = {"Allow": header_ref("Allow")}
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
        "X-Image-Size": header("The delivered size of every image, `WIDTHxHEIGHT`, also when "
                               "it is none of the sizes OpenAI's `size` field may carry."),
        "X-Image-Links": header("The stored images' links, space-separated (for answers that "
                                "carry only `b64_json`)."),
        "X-Neurons": header("Workers AI neurons the images cost: Cloudflare's figure when it "
                            "reports one, else the estimate from the catalog's price. In a "
                            "stream it is the estimate (headers precede the body). Absent for "
                            "models without a Workers AI price.",
                            {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?$"}),
    }


# The wire models and the component each one's JSON Schema becomes. The two edit forms get
# their schemas from the same models (see _edit_forms); their file parts are no model fields.
_WIRE_MODELS: dict[str, type[BaseModel]] = {
    "ChatCompletionRequest": ChatCompletionRequest,
    "ImageGenerationRequest": ImageGenerationRequest,
    "ImageEditJson": EditRequest,
}
# Fields of the JSON edit only: in the form, images come as files.
_JSON_ONLY = ("images", "image", "mask")


def _request_schemas(max_images: int) -> dict:
    """The request bodies' schemas, generated from the wire models that validate them."""
    schemas = copy.deepcopy(_model_schemas())
    schemas.update(_edit_forms(schemas["ImageEditJson"], copy.deepcopy(_variation_schema())))
    for name in ("ImageGenerationRequest", "ImageEditJson", "ImageEditForm",
                 "ImageVariationForm"):
        # MAX_IMAGES is configuration, so the models cannot state `n`'s upper bound themselves.
        bound_n(schemas[name], max_images)
    return schemas


@functools.cache
def _model_schemas() -> dict[str, Any]:
    """The wire models' JSON Schemas and their parts' (made once: it takes about 8 ms)."""
    schemas: dict[str, Any] = {}
    for name, model in _WIRE_MODELS.items():
        schema = model.model_json_schema(ref_template=SCHEMA_REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[name] = schema
    return schemas


@functools.cache
def _variation_schema() -> dict[str, Any]:
    return VariationRequest.model_json_schema(ref_template=SCHEMA_REF)


def _edit_forms(edit_json: dict, variation: dict) -> dict:
    """The multipart forms: the models' text fields, never null in a form, and the files."""
    binary = {"type": "string", "format": "binary"}
    edit = without_nulls({**edit_json, "properties": {
        k: v for k, v in edit_json["properties"].items() if k not in _JSON_ONLY}})
    edit["properties"].update({
        "image": binary,
        "image[]": {"type": "array", "items": binary, "maxItems": MAX_EDIT_IMAGES},
        "mask": dict(binary, description="Fully transparent where the image should change."),
    })
    form = without_nulls(variation)
    form["properties"]["image"] = binary
    form["required"] = ["image"]
    return {
        "ImageEditForm": dict(edit, description="The multipart form: text fields and 1 to "
                                                f"{MAX_EDIT_IMAGES} image files."),
        "ImageVariationForm": dict(form, description="The multipart form: one image file and "
                                                     "text fields."),
    }


def _schemas(max_images: int) -> dict:
    usage = obj({"prompt_tokens": integer(minimum=0), "completion_tokens": integer(minimum=0),
                 "total_tokens": integer(minimum=0)},
                ["prompt_tokens", "completion_tokens", "total_tokens"],
                description="Token estimates (one per four UTF-8 bytes): no language model "
                             "writes this text.")
    created = integer("Unix time in seconds.")
    num = {"type": "number"}
    return {
        **_request_schemas(max_images),
        "Error": obj({"error": obj(
            {"message": string("What went wrong and what to do."),
             "type": string(examples=["invalid_request_error", "rate_limit_exceeded",
                                      "insufficient_quota", "upstream_error", "storage_error",
                                      "server_error"]),
             "param": nullable(string("The request field at fault, if any.")),
             "code": nullable(string(examples=["invalid_api_key", "model_not_found",
                                               "prompt_too_long", "content_policy_violation"]))},
            ["message", "type", "param", "code"], additionalProperties=False)},
            ["error"], description="The one error shape of every 4xx and 5xx answer."),

        "Usage": usage,
        "ImageParts": {"type": "array", "minItems": 1, "description": (
            "Only when the request's `modalities` include `image`: the answer's image."),
            "items": obj({"type": {"const": "image_url"},
                          "image_url": obj({"url": string(format="uri")}, ["url"])},
                         ["type", "image_url"])},
        "ChatCompletion": obj(
            {"id": string(pattern="^chatcmpl-"), "object": {"const": "chat.completion"},
             "created": created, "model": string("The image model used."),
             "choices": {"type": "array", "minItems": 1, "maxItems": 1, "items": obj(
                 {"index": integer(minimum=0),
                  "message": obj({"role": {"const": "assistant"},
                                  "content": string("Markdown with the image link."),
                                  "refusal": {"type": "null"},
                                  "images": ref("ImageParts")},
                                 ["role", "content", "refusal"]),
                  "logprobs": {"type": "null"},
                  "finish_reason": string(enum=["stop", "length"])},
                 ["index", "message", "finish_reason"])},
             "usage": ref("Usage")},
            ["id", "object", "created", "model", "choices", "usage"]),
        "ChatCompletionChunk": obj(
            {"id": string(pattern="^chatcmpl-"), "object": {"const": "chat.completion.chunk"},
             "created": created, "model": string(),
             "choices": {"type": "array", "maxItems": 1, "items": obj(
                 {"index": integer(minimum=0),
                  "delta": obj({"role": {"const": "assistant"}, "content": string(),
                                "images": ref("ImageParts")}),
                  "logprobs": {"type": "null"},
                  "finish_reason": nullable(string(enum=["stop", "length"]))},
                 ["index", "delta", "finish_reason"]),
                 "description": "Empty in the usage chunk."},
             "usage": {"anyOf": [ref("Usage"), {"type": "null"}],
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
                                             "contentSchema": ref("ChatCompletionChunk")}}},
        },

        "ImageItem": obj(
            {"url": string("Absolute link to `/image/{key}`.", format="uri"),
             "b64_json": string("The image bytes, base64 (no `data:` prefix)."),
             "revised_prompt": string("The prompt after translation, when it was translated."),
             "seed": integer("The seed used, for models that take one.", minimum=0)},
            anyOf=[{"required": ["url"]}, {"required": ["b64_json"]}],
            description="`url`, `b64_json` or both (IMAGE_RESPONSE_FORMAT `both`)."),
        "ImagesUsage": obj(
            {"input_tokens": integer(minimum=0), "output_tokens": integer(minimum=0),
             "total_tokens": integer(minimum=0),
             "input_tokens_details": obj({"text_tokens": integer(minimum=0),
                                          "image_tokens": integer(minimum=0)},
                                         ["text_tokens", "image_tokens"]),
             "output_tokens_details": obj({"text_tokens": integer(minimum=0),
                                           "image_tokens": integer(minimum=0)})},
            ["input_tokens", "output_tokens", "total_tokens", "input_tokens_details"],
            description="Estimated: the prompt's text tokens, and 170 per 512x512 tile of "
                        "each input and output image."),
        "ImagesResponse": obj(
            {"created": created, "data": {"type": "array", "minItems": 1,
                                          "items": ref("ImageItem")},
             "size": string("The size of every image, present only when it is one of the "
                            "sizes OpenAI's answer allows (X-Image-Size always has it).",
                            enum=sorted(OPENAI_IMAGE_SIZES)),
             "output_format": string(enum=sorted(OPENAI_OUTPUT_FORMATS)),
             "quality": string("The quality tier drawn.", enum=["low", "medium", "high"]),
             "background": string(enum=["opaque", "transparent"]),
             "usage": ref("ImagesUsage"),
             "model": string("The model that drew (edits and variations, and whenever another "
                             "model than the one named drew)."),
             "requested_model": string("The model asked for, when another drew instead.")},
            ["created", "data"]),
        "ImageStreamEvent": {
            "type": "object", "required": ["data"],
            "description": "One server-sent event of a streamed Images answer: `event` "
                           "`image_generation.completed` or `image_edit.completed` with the "
                           "JSON of one image, or `error` with an OpenAI error object.",
            "properties": {"event": {"type": "string"},
                           "data": {"type": "string", "contentMediaType": "application/json",
                                    "contentSchema": ref("ImageCompletedEvent")}}},
        "ImageCompletedEvent": obj(
            {"type": string(enum=["image_generation.completed", "image_edit.completed",
                                  "error"]),
             "b64_json": string("The image bytes, base64."),
             "url": string("The stored image's link (this service's extra).", format="uri"),
             "created_at": created,
             "size": string("`auto` when the size is none of OpenAI's (see X-Image-Size).",
                            enum=[*sorted(OPENAI_IMAGE_SIZES), "auto"]),
             "quality": string(enum=["low", "medium", "high", "auto"]),
             "background": string(enum=["transparent", "opaque", "auto"]),
             "output_format": string(enum=sorted(OPENAI_OUTPUT_FORMATS)),
             "usage": ref("ImagesUsage"),
             "error": {"type": "object", "description": "In an `error` event: what failed."}},
            ["type"]),

        "Model": obj(
            {"id": string(examples=["@cf/black-forest-labs/flux-1-schnell"]),
             "object": {"const": "model"}, "created": created, "owned_by": string(),
             "backend": string("The backends on, joined by `+` (`cloudflare`, "
                               "`cloudflare+cloudflare-partner`, `openai`, `demo`)."),
             "provider": string("Who draws this model: `workers-ai`, `cloudflare-partner`, "
                                "`openai` (IMAGE_API_BASE) or `demo`.")},
            ["id", "object", "created", "owned_by"]),
        "ModelList": obj({"object": {"const": "list"},
                          "data": {"type": "array", "items": ref("Model")}},
                         ["object", "data"]),
        "ModelCapabilities": obj(
            {"encoding": string(enum=["json", "multipart"]),
             "size_control": {"type": "boolean"},
             "size_range": obj({"min": integer(), "max": integer()}, ["min", "max"]),
             "default_size": string(pattern="^[0-9]+x[0-9]+$"),
             "steps": {"anyOf": [obj({"field": string(), "min": integer(), "max": integer()}),
                                 {"type": "null"}]},
             "seed": {"type": "boolean"},
             "guidance": {"anyOf": [{"type": "array", "items": {"type": "number"},
                                     "minItems": 2, "maxItems": 2}, {"type": "null"}]},
             "negative_prompt": {"type": "boolean"},
             "sizes": nullable({"type": "array", "items": string(pattern="^[0-9]+x[0-9]+$"),
                                "description": "The only sizes the model draws (others are "
                                               "cropped and scaled from the nearest)."}),
             "aspect_ratios": nullable({"type": "array", "items": string(),
                                        "description": "The only aspect ratios it draws."}),
             "response": string(enum=["json", "binary"]),
             "max_prompt_chars": nullable(integer()),
             "image_input": obj({"reference_images": integer(), "source_image": {"type": "boolean"},
                                 "max_images": integer(), "mask": {"type": "boolean"},
                                 "strength": {"type": "boolean"},
                                 "requires_image": {"type": "boolean"}})}),
        "ModelDetail": {"allOf": [ref("Model"), obj(
            {"aliases": {"type": "array", "items": string()}, "description": string(),
             "capabilities": ref("ModelCapabilities"), "default": {"type": "boolean"},
             "cost": ref("ModelCost")},
            ["aliases", "description", "capabilities", "default", "cost"])]},
        "ModelCost": obj(
            {"price": nullable(obj(
                {"per_tile": num, "per_step": num, "per_tile_step": num, "per_input_tile": num,
                 "per_input_tile_step": num, "tile": string(), "formula": string(),
                 "listed": {"type": "boolean", "description": "false: Cloudflare lists no "
                                                              "price; the figure is assumed."},
                 "usd_per_neuron": num, "note": string()},
                ["formula", "listed"], description="Neurons per image, by term.")),
             "price_usd": nullable(obj(
                 {"per_image": num, "per_megapixel": num, "per_input_megapixel": num,
                  "formula": string(), "listed": {"type": "boolean"}, "note": string()},
                 ["formula", "listed"], description="US dollars per image, for providers that "
                                                    "bill dollars (null: the neurons' price).")),
             "default_size": string(), "estimate_neurons": nullable(num),
             "estimate_usd": nullable(num)},
            ["price", "default_size", "estimate_neurons", "estimate_usd"],
            description="The price formula and the estimate for the default size at "
                        "FLUX_NUM_STEPS."),
        "UsageLine": obj(
            {"key": string("The key's short hash (never the key)."), "spent_neurons": num,
             "budget_neurons": nullable(num), "left_neurons": nullable(num),
             "spent_usd": num, "budget_usd": nullable(num), "left_usd": nullable(num)},
            ["spent_neurons", "budget_neurons", "left_neurons", "spent_usd", "budget_usd",
             "left_usd"],
            description="Spent today, the daily budget and what is left, in Workers AI neurons "
                        "and in US dollars (every image; neurons at the paid rate)."),
        "ModelUsage": obj(
            {"model": string("The model id."), "spent_neurons": num, "spent_usd": num},
            ["model", "spent_neurons", "spent_usd"]),
        "AccountUsage": obj(
            {"account": string("The account id, shortened."),
             "state": {"enum": ["ok", "allocation_used_up", "budget_reached", "token_rejected"]},
             "spent_neurons": num, "allocation_neurons": num,
             "budget_neurons": nullable(num), "retry_in_seconds": integer(minimum=1)},
            ["account", "state", "spent_neurons", "allocation_neurons", "budget_neurons"]),
        "NeuronUsage": obj(
            {"object": {"const": "usage"}, "day": string("The UTC day counted."),
             "resets_at": string("The next 00:00 UTC."), "resets_in_seconds": integer(minimum=1),
             "service": ref("UsageLine"), "key": ref("UsageLine"),
             "keys": {"type": "array", "items": ref("UsageLine")},
             "models": {"type": "array", "items": ref("ModelUsage")},
             "accounts": {"type": "array", "items": ref("AccountUsage")}},
            ["object", "day", "resets_at", "resets_in_seconds"]),

        "ServiceStatus": obj(
            {"service": {"const": "flux-worker"}, "status": {"const": "ok"},
             "backend": string(), "demo": {"type": "boolean"}, "storage": string(),
             "image_expiration": integer("Seconds an image is kept; 0: kept for ever."),
             "auth_required": {"type": "boolean"},
             "translation": nullable(string("The translation model, or null when off.")),
             "default_model": string(), "models": {"type": "array", "items": string()},
             "base_url": string("The base URL to give an OpenAI client.")},
            ["service", "status", "backend", "storage", "models", "base_url"]),
    }
