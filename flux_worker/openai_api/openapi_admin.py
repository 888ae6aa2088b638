"""The admin API in the OpenAPI document: run-time keys under /v1/admin/keys.

Every admin route needs ADMIN_API_KEY (a Bearer key, or the admin page's session); without
ADMIN_API_KEY the routes answer 404. The request schemas come from the wire models
(keys/wire.py), so the document and the validation cannot disagree.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from ..keys.wire import KeyChange, KeyCreate
from .openapi_components import SCHEMA_REF, integer, json_content, nullable, obj, ref, string

_KEY_ID = {"name": "key_id", "in": "path", "required": True,
           "description": "A key's id (`key_...`), as GET /v1/admin/keys lists it.",
           "schema": {"type": "string", "minLength": 1}}
_NUMBER = {"type": "number"}


def paths(operation: Callable[..., dict], ok: Callable[..., dict],
          errors: Callable[..., dict]) -> dict[str, dict]:
    """The admin API's path items, built with the document's own helpers."""
    def key(description: str) -> dict:
        return ok(description, json_content(ref("ApiKey")))

    def op(operation_id: str, summary: str, description: str, responses: dict, **extra) -> dict:
        return operation(operation_id, "admin", summary, description, responses, secured=True,
                         **extra)

    def body(schema: str, description: str) -> dict:
        return {"required": True, "description": description,
                "content": json_content(ref(schema))}

    return {
        "/v1/admin/keys": {
            "get": op("listKeys", "Run-time keys",
                      "Every key the admin created, revoked ones too, oldest first, with "
                      "today's spend. Never a secret.",
                      {"200": ok("The keys.", json_content(obj(
                          {"object": {"const": "list"},
                           "data": {"type": "array", "items": ref("ApiKey")}},
                          ["object", "data"]))), **errors(401, 404, 500, 503)}),
            "post": op("createKey", "Create a key",
                       "A new key; `secret` is in this answer only (the server keeps a hash).",
                       {"201": ok("The key and its secret.", json_content({"allOf": [
                           ref("ApiKey"), obj({"secret": string("The key, shown once.")},
                                              ["secret"])]})),
                        **errors(400, 401, 404, 500, 503)},
                       requestBody=body("KeyCreate", "The key's name and terms.")),
        },
        "/v1/admin/keys/{key_id}": {
            "get": op("getKey", "A run-time key", "The key and today's spend.",
                      {"200": key("The key."), **errors(401, 404, 500, 503)},
                      parameters=[_KEY_ID]),
            "patch": op("changeKey", "Change a key",
                        "Change its name, budgets, rate limit, models or expiry; `null` clears "
                        "a limit. Holds from the next request on every instance.",
                        {"200": key("The key as changed."), **errors(400, 401, 404, 500, 503)},
                        parameters=[_KEY_ID],
                        requestBody=body("KeyChange", "The fields to change.")),
            "delete": op("revokeKey", "Revoke a key",
                         "Refused from its next request on, on every instance; the record "
                         "stays (its name labels its spending).",
                         {"200": key("The revoked key."), **errors(401, 404, 500, 503)},
                         parameters=[_KEY_ID]),
        },
    }


@functools.cache
def schemas() -> dict[str, Any]:
    """The admin API's schemas: the key object and the request bodies."""
    number = nullable(_NUMBER)
    usage = {f"{what}_{unit}": (number if what != "spent" else _NUMBER)
             for what in ("spent", "budget", "left") for unit in ("neurons", "usd")}
    key = obj({
        "id": string("`key_...`"), "object": {"const": "api_key"}, "name": string(),
        "prefix": string("The secret's start, to recognise it."),
        "owner": string("The short hash that /v1/usage and the history name the key by."),
        "created": integer(), "expires_at": nullable(integer()),
        "revoked_at": nullable(integer()),
        "status": {"type": "string", "enum": ["active", "expired", "revoked"]},
        "daily_neurons": number, "daily_usd": number, "rate_limit": nullable(string()),
        "models": nullable({"type": "array", "items": string()}),
        "usage": obj(usage, list(usage)),
    }, ["id", "object", "name", "prefix", "owner", "created", "expires_at", "revoked_at",
        "status", "daily_neurons", "daily_usd", "rate_limit", "models", "usage"])
    return {"ApiKey": key,
            "KeyCreate": KeyCreate.model_json_schema(ref_template=SCHEMA_REF),
            "KeyChange": KeyChange.model_json_schema(ref_template=SCHEMA_REF)}
