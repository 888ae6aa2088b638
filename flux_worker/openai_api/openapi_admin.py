"""The admin page and its JSON routes in the OpenAPI document (docs/admin.md tells the rest).

The page's routes (/admin, sign-in, sign-out) answer HTML and redirects and take no Bearer
key; the data routes under /v1/admin/ take ADMIN_API_KEY as a Bearer key, or the page's
session cookie (with its CSRF token for changes), and answer 404 while ADMIN_API_KEY is unset.
"""

from __future__ import annotations

from typing import Callable

from .openapi_components import header_ref, json_content, obj, ref, string

_HTML = {"text/html": {"schema": {"type": "string"}}}
_AMOUNT = obj({"neurons": {"type": "number"}, "usd": {"type": "number"}}, ["neurons", "usd"])
_TALLY = {"today": _AMOUNT, "last_30_days": _AMOUNT}


def paths(operation: Callable[..., dict], ok: Callable[..., dict],
          errors: Callable[..., dict]) -> dict[str, dict]:
    """The admin page's and the admin data's path items, built with the document's helpers."""
    def page(status_text: str, error: bool = False) -> dict:
        # A refusal is the page for a browser, the Error JSON for `Accept: application/json`.
        return ok(status_text, {**_HTML, **json_content(ref("Error"))} if error else _HTML)

    back = ok("Back to the page (`Location: /admin`).")
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
        "/v1/admin/overview": {"get": operation(
            "adminOverview", "admin", "Spend, budgets, accounts and providers",
            "The last 30 UTC days' spend in neurons and US dollars (per day, and per key, "
            "model and provider, today and over the 30 days), today's budgets and what is left "
            "(the service's, each key's), the Cloudflare accounts and each provider's state. "
            "Keys appear by short hash and name, accounts by shortened id: never a secret.",
            {"200": ok("The overview.", json_content(ref("AdminOverview"))),
             **errors(401, 404, 500)}, secured=True)},
    }


def schemas() -> dict[str, dict]:
    """The admin answers' schemas."""
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
