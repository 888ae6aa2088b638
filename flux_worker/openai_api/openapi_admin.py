"""The admin API and the admin page in the OpenAPI document: run-time keys under
/v1/admin/keys, the page's data under /v1/admin/, and the page itself (/admin, sign-in,
sign-out; docs/admin.md tells the rest).

Every admin route needs ADMIN_API_KEY (a Bearer key, or the admin page's session, with its CSRF
token for changes); without ADMIN_API_KEY the routes answer 404. The page's own routes answer
HTML and redirects and take no Bearer key. The request schemas come from the wire models
(keys/wire.py), so the document and the validation cannot disagree.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from ..keys.wire import KeyChange, KeyCreate
from .openapi_components import (
    SCHEMA_REF,
    header_ref,
    integer,
    json_content,
    nullable,
    obj,
    ref,
    string,
)

_KEY_ID = {"name": "key_id", "in": "path", "required": True,
           "description": "A key's id (`key_...`), as GET /v1/admin/keys lists it.",
           "schema": {"type": "string", "minLength": 1}}
_NUMBER = {"type": "number"}


def paths(operation: Callable[..., dict], ok: Callable[..., dict],
          errors: Callable[..., dict]) -> dict[str, dict]:
    """The admin API's and the admin page's path items, built with the document's helpers."""
    return {**_key_paths(operation, ok, errors), **_page_paths(operation, ok, errors)}


def _key_paths(operation: Callable[..., dict], ok: Callable[..., dict],
               errors: Callable[..., dict]) -> dict[str, dict]:
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
    return {"ApiKey": key, **_page_schemas(),
            "KeyCreate": KeyCreate.model_json_schema(ref_template=SCHEMA_REF),
            "KeyChange": KeyChange.model_json_schema(ref_template=SCHEMA_REF)}


_HTML = {"text/html": {"schema": {"type": "string"}}}
_AMOUNT = obj({"neurons": {"type": "number"}, "usd": {"type": "number"}}, ["neurons", "usd"])
_TALLY = {"today": _AMOUNT, "last_30_days": _AMOUNT}
_LIMIT = {"name": "limit", "in": "query", "required": False,
          "description": "How many, newest first (default 20, at most 100).",
          "schema": {"type": "integer", "minimum": 1, "maximum": 100}}


def _list(item: dict) -> dict:
    return obj({"object": {"const": "list"}, "data": {"type": "array", "items": item}},
               ["object", "data"])


def _page_paths(operation: Callable[..., dict], ok: Callable[..., dict],
                errors: Callable[..., dict]) -> dict[str, dict]:
    """The admin page's and its data's path items."""
    def page(status_text: str, error: bool = False) -> dict:
        # A refusal is the page for a browser, the Error JSON for `Accept: application/json`.
        return ok(status_text, {**_HTML, **json_content(ref("Error"))} if error else _HTML)

    back = ok("Back to the page (`Location: /admin`).")
    named = {"type": ["string", "null"], "description": "The run-time key's name."}
    return {
        "/admin": {"get": operation(
            "adminPage", "admin", "The admin page",
            "The sign-in form, or, with a signed-in session, the page whose script reads the "
            "admin routes below. 404 (HTML) when ADMIN_API_KEY is unset, saying how to turn it "
            "on.",
            {"200": page("The page."), "404": page("The admin page is off.", True),
             **errors(500)}, secured=False)},
        "/admin/login": {"post": operation(
            "adminSignIn", "admin", "Sign in with ADMIN_API_KEY",
            "Sets the session cookie (`HttpOnly`, `SameSite=Strict`, `Secure` over HTTPS, 12 "
            "hours) and redirects to the page. Failed attempts are counted per address.",
            {"303": back,
             "403": page("Not the admin key: the form again, with the reason.", True),
             "404": page("The admin page is off.", True),
             "429": {**page("Too many failed sign-ins from this address: the form, with the "
                            "wait.", True), "headers": {"Retry-After": header_ref("Retry-After")}},
             **errors(500)}, secured=False,
            requestBody={"required": True, "content": {
                "application/x-www-form-urlencoded": {"schema": obj(
                    {"key": string("ADMIN_API_KEY.")}, ["key"])}}})},
        "/admin/logout": {"post": operation(
            "adminSignOut", "admin", "Sign out",
            "Ends the session on every instance and drops its cookie. Needs the session's "
            "CSRF token (form field `csrf_token`, or the `X-CSRF-Token` header).",
            {"303": back, **errors(403, 500)}, secured=False)},
        "/v1/admin/generations": {"get": operation(
            "adminGenerations", "admin", "Recent generations of every key",
            "The newest kept images (`limit`, default 20, at most 100), newest first: the "
            "history's item with its owner (short hash), the key's name, the provider and the "
            "cost. 404 `history_unavailable` with IMAGE_HISTORY=off.",
            {"200": ok("The generations.", json_content(_list(obj(
                {"url": string(), "prompt": string(), "owner": string(), "name": named,
                 "model": string(), "provider": string(), "size": string(),
                 "created": {"type": "integer"}, "cost": obj(
                     {"neurons": {"type": ["number", "null"]},
                      "usd": {"type": ["number", "null"]}})},
                ["url", "prompt", "owner", "model", "size", "created", "cost"])))),
             **errors(400, 401, 404, 500, 503)}, secured=True, parameters=[_LIMIT])},
        "/v1/admin/activity": {"get": operation(
            "adminActivity", "admin", "Recent refusals and errors",
            "The newest errors the service answered (`limit`, default 20, at most 100), "
            "whoever asked: when, whose (short hash, or `anonymous`), method, path, status, "
            "code and the message the caller saw.",
            {"200": ok("The lines.", json_content(_list(obj(
                {"created": {"type": "integer"}, "owner": string(), "name": named,
                 "method": string(), "path": string(), "status": {"type": "integer"},
                 "code": {"type": ["string", "null"]}, "message": string()},
                ["created", "owner", "method", "path", "status", "message"])))),
             **errors(400, 401, 404, 500, 503)}, secured=True, parameters=[_LIMIT])},
        "/v1/admin/overview": {"get": operation(
            "adminOverview", "admin", "Spend, budgets, accounts and providers",
            "The last 30 UTC days' spend in neurons and US dollars (per day, and per key, "
            "model and provider, today and over the 30 days), today's budgets and what is left "
            "(the service's, each key's), the Cloudflare accounts and each provider's state. "
            "Keys appear by short hash and name, accounts by shortened id: never a secret.",
            {"200": ok("The overview.", json_content(ref("AdminOverview"))),
             **errors(401, 404, 500)}, secured=True)},
    }


def _page_schemas() -> dict[str, dict]:
    """The admin page's data's schemas."""
    named = {"type": ["string", "null"]}
    return {
        "AdminOverview": obj({
            "object": {"const": "admin.overview"}, "day": string("Today, the UTC day."),
            "resets_at": string(), "resets_in_seconds": {"type": "integer"},
            "spend": obj({
                "object": {"const": "admin.spend"}, "today": string(),
                "days": {"type": "array", "items": obj(
                    {"day": string(), **_AMOUNT["properties"]}, ["day", "neurons", "usd"])},
                "total": obj(_TALLY, list(_TALLY)),
                "keys": {"type": "array", "items": obj(
                    {"owner": string("The key's short hash."), "name": named, **_TALLY},
                    ["owner", "name", *_TALLY])},
                "models": {"type": "array", "items": obj(
                    {"model": string(), "provider": string(), **_TALLY},
                    ["model", "provider", *_TALLY])},
                "providers": {"type": "array", "items": obj(
                    {"provider": string(), **_TALLY}, ["provider", *_TALLY])},
            }, ["object", "today", "days", "total", "keys", "models", "providers"]),
            "budgets": obj({"service": ref("UsageLine"),
                            "keys": {"type": "array", "items": ref("UsageLine")}},
                           ["service", "keys"]),
            "accounts": {"type": "array", "items": ref("AccountUsage")},
            "providers": {"type": "array", "items": obj(
                {"provider": string(), "state": string("`ok`, or why it is skipped.")},
                ["provider", "state"])},
        }, ["object", "day", "spend", "budgets", "accounts", "providers"]),
    }
