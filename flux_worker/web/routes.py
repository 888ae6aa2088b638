"""Where the API's routes live: under /v1 and at the root, from one registration each.

Clients disagree on whether the base URL they are given already ends in /v1, so every API
blueprint is registered twice: once under `/v1`, once at the root under a second name. The
OpenAPI document lists the root aliases from the same registrations.
"""

from __future__ import annotations

from flask import Blueprint, Flask

API_PREFIX = "/v1"
_UNPREFIXED = "_unprefixed"


def register_api(app: Flask, blueprint: Blueprint) -> None:
    """Serve `blueprint`'s routes under /v1 and, as aliases, at the root."""
    app.register_blueprint(blueprint, url_prefix=API_PREFIX)
    app.register_blueprint(blueprint, name=blueprint.name + _UNPREFIXED)


def unprefixed_aliases(app: Flask) -> dict[str, str]:
    """Each /v1 API path (OpenAPI style, `{param}`) and its root alias, from the URL map."""
    aliases = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint.split(".")[0].endswith(_UNPREFIXED):
            path = _openapi_path(rule.rule)
            aliases[API_PREFIX + path] = path
    return aliases


def _openapi_path(rule: str) -> str:
    """`/models/<path:model_id>` as OpenAPI writes it: `/models/{model_id}`."""
    parts = []
    for part in rule.split("/"):
        if part.startswith("<") and part.endswith(">"):
            part = "{" + part[1:-1].split(":")[-1] + "}"
        parts.append(part)
    return "/".join(parts)
