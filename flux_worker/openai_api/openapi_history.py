"""The image history in the OpenAPI document: its two paths and the shapes they answer.

The query's parameters come from the wire model (`openai_api.history.HistoryQuery`), so a
limit is stated once.
"""

from __future__ import annotations

from typing import Callable

from .history import HistoryQuery
from .openapi_components import integer, json_content, nullable, obj, string

_ITEM = obj({
    "id": string("The entry's id (`gen_...`): `after` and DELETE take it."),
    "object": {"const": "image.history"},
    "url": string("The image's link, as the Images API gives it (IMAGE_LINKS)."),
    "prompt": string("The prompt as the user typed it."),
    "revised_prompt": nullable(string("What the model drew from, when it was rewritten.")),
    "model": string(), "size": string("`WIDTHxHEIGHT`."),
    "created": integer("Unix seconds."),
    "expires_at": nullable(integer("Unix seconds when the image goes; null: kept for ever.")),
    "owner": string("Only for ADMIN_API_KEY: the short hash of the key that made it, or "
                    "`anonymous`."),
}, ["id", "object", "url", "prompt", "revised_prompt", "model", "size", "created",
    "expires_at"])
_LIST = obj({"object": {"const": "list"}, "data": {"type": "array", "items": _ITEM},
             "first_id": nullable(string()), "last_id": nullable(string()),
             "has_more": {"type": "boolean"}},
            ["object", "data", "first_id", "last_id", "has_more"])
_DELETED = obj({"id": string(), "object": {"const": "image.history.deleted"},
                "deleted": {"const": True}}, ["id", "object", "deleted"])
_UNAVAILABLE = (" 404 `history_unavailable` when the server keeps no history (IMAGE_HISTORY=off) "
                "or has no API_KEY to tell users apart.")


def _query_parameters() -> list[dict]:
    schema = HistoryQuery.model_json_schema()["properties"]
    return [{"name": name, "in": "query", "required": False,
             "description": field.get("description", ""),
             "schema": {k: v for k, v in field.items() if k not in ("description", "title")}}
            for name, field in schema.items()]


def paths(operation: Callable[..., dict], ok: Callable[..., dict],
          errors: Callable[..., dict]) -> dict[str, dict]:
    """The history's path items, built with the document's own helpers."""
    listing = operation(
        "listImageHistory", "images", "The caller's generated images, newest first",
        "Each image this key generated while it is kept (Images API, chat, edits, MCP). A key "
        "sees only its own; ADMIN_API_KEY sees every key's, each with `owner`. Page with "
        "`limit` and `after` (the previous page's `last_id`)." + _UNAVAILABLE,
        {"200": ok("A page of the history.", json_content(_LIST)),
         **errors(400, 401, 404, 500, 503)},
        secured=True, parameters=_query_parameters())
    delete = operation(
        "deleteImageHistory", "images", "Delete one of the caller's images",
        "Removes the entry and its image from storage: its link answers 404 from then on. "
        "Another key's id answers 404 like an unknown one; the admin may delete any."
        + _UNAVAILABLE,
        {"200": ok("Deleted.", json_content(_DELETED)), **errors(401, 404, 500, 503)},
        secured=True, parameters=[{
            "name": "entry_id", "in": "path", "required": True,
            "description": "An entry id (`gen_...`).",
            "schema": {"type": "string", "minLength": 1}}])
    return {"/v1/images/history": {"get": listing},
            "/v1/images/history/{entry_id}": {"delete": delete}}
