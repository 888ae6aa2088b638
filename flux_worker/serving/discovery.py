"""`flux-worker discover-models`: the text-to-image models a Cloudflare account offers.

Pages through `GET {CF_API_BASE}/accounts/{id}/ai/models/search?task=Text-to-Image` and reads
each model's input schema from `.../ai/models/schema?model=` (reference: image-providers.md
section 1, Discovery), so an operator can see which models, partner ones included, the account
can run and what each takes, and add a catalog entry without waiting for a release. It uses the
first account of the configuration (CF_ACCOUNTS, or CF_ACCOUNT_ID + CF_API_TOKEN) and never
prints the token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import quote

import requests

from ..cost.accounts import Account
from ..net.upstream import call
from ..redaction import redact

TEXT_TO_IMAGE = "Text-to-Image"
PER_PAGE = 100               # the most the search route gives at once
MAX_PAGES = 50               # a bound on a paging answer that never ends
TIMEOUT = 30.0               # seconds per call


class DiscoveryError(Exception):
    """Cloudflare refused or failed a discovery call; the message names what to check."""


@dataclass
class Discovered:
    """One model: what the search says of it and its input schema (None: not given)."""

    name: str
    description: str
    task: str
    properties: list = field(default_factory=list)
    input: dict | None = None

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "task": self.task,
                "properties": self.properties, "input": self.input}


def discover(session: requests.Session, api_base: str, account: Account, *,
             task: str = TEXT_TO_IMAGE) -> list[Discovered]:
    """Every model of `task` the account offers, each with its input schema."""
    base = f"{api_base.rstrip('/')}/accounts/{account.id}/ai/models"
    models: list[Discovered] = []
    page, pages = 1, 1
    while page <= min(pages, MAX_PAGES):
        data = _get(session, f"{base}/search", account,
                    {"task": task, "per_page": PER_PAGE, "page": page})
        for item in data.get("result") or []:
            task_of = item.get("task") or {}
            models.append(Discovered(
                name=str(item.get("name", "")), description=str(item.get("description", "")),
                task=str(task_of.get("name", "")) if isinstance(task_of, dict) else "",
                properties=list(item.get("properties") or [])))
        info = data.get("result_info") or {}
        pages = int(info.get("total_pages") or 1)
        page += 1
    for model in models:
        schema = _get(session, f"{base}/schema?model={quote(model.name, safe='@/')}", account,
                      None)
        result = schema.get("result") or {}
        model.input = result.get("input") if isinstance(result, dict) else None
    return models


def _get(session: requests.Session, url: str, account: Account,
         params: dict | None) -> dict[str, Any]:
    try:
        answer = call(session, "GET", url, params=params, timeout=TIMEOUT,
                      headers={"Authorization": f"Bearer {account.token}"})
    except requests.RequestException as exc:
        raise DiscoveryError(f"could not reach CF_API_BASE ({type(exc).__name__})") from None
    try:
        data = answer.json()
    except ValueError:
        data = None
    if answer.status_code >= 400 or not isinstance(data, dict):
        errors = data.get("errors") if isinstance(data, dict) else None
        first = errors[0] if isinstance(errors, list) and errors else {}
        message = redact(str(first.get("message", "")) if isinstance(first, dict) else "",
                         (account.token,))
        hint = (" (check the token: it needs Workers AI Read)"
                if answer.status_code in (401, 403) else
                " (check CF_ACCOUNT_ID)" if answer.status_code == 404 else "")
        raise DiscoveryError(f"Cloudflare answered HTTP {answer.status_code}"
                             f"{': ' + message if message else ''}{hint}")
    return data


def describe_field(name: str, schema: Any, required: bool) -> str:
    """One input field as a line: `size: string, one of 1024x1024 | auto (required)`."""
    if not isinstance(schema, dict):
        return f"{name}"
    kind = schema.get("type", "any")
    if kind == "array" and isinstance(schema.get("items"), dict):
        kind = f"array of {schema['items'].get('type', 'any')}"
    text = f"{name}: {kind}"
    if schema.get("enum"):
        text += ", one of " + " | ".join(str(v) for v in schema["enum"])
    bounds = [f"{word} {schema[key]}" for key, word in
              (("minimum", ">="), ("maximum", "<="), ("maxItems", "at most"))
              if key in schema]
    if bounds:
        text += ", " + ", ".join(bounds)
    if "default" in schema:
        text += f", default {schema['default']}"
    return text + (" (required)" if required else "")


def print_models(models: list[Discovered], out: TextIO, *, as_json: bool) -> None:
    """Print the list for a person, or as JSON (`--json`) for a program."""
    if as_json:
        json.dump([model.as_json() for model in models], out, indent=2)
        out.write("\n")
        return
    for model in models:
        out.write(f"{model.name}\n  {model.description}\n")
        schema = model.input or {}
        required = set(schema.get("required") or [])
        for name, prop in (schema.get("properties") or {}).items():
            out.write(f"    {describe_field(name, prop, name in required)}\n")
        out.write("\n")
    out.write(f"{len(models)} models. Add one to the catalog (flux_worker/catalog/) to offer "
              "it; see docs/adding-a-provider.md.\n")
