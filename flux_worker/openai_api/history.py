"""The image history on the wire: the list query, the list in OpenAI's style, the deletion.

    GET /v1/images/history?limit=&after=    {"object": "list", "data": [...], "first_id",
                                            "last_id", "has_more"}
    DELETE /v1/images/history/{id}          {"id", "object": "image.history.deleted", "deleted"}

An item never carries an image key, a key hash (but for the admin's `owner`) or a cost:
what a client sees is its own link, prompt, model, size and times.
"""

from __future__ import annotations

from typing import Annotated, Any, Callable

from pydantic import BaseModel, ConfigDict, Field

from ..history.entries import HistoryEntry, Page
from .fields import WHOLE_NUMBER
from .wording import Say

MAX_LIMIT = 100
DEFAULT_LIMIT = 20


class HistoryQuery(BaseModel):
    """The query of `GET /v1/images/history`."""

    model_config = ConfigDict(extra="ignore")

    limit: Annotated[int, WHOLE_NUMBER] = Field(
        DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="How many images, newest first.")
    after: Annotated[str | None, Say("must be an id from `last_id` of the previous page.")] = (
        Field(None, min_length=1, max_length=64,
              description="The `last_id` of the previous page: list the images older than it."))


def history_item(entry: HistoryEntry, link: Callable[[str], str], *,
                 admin: bool = False) -> dict[str, Any]:
    """One entry as a client sees it; the admin also sees whose (a short hash)."""
    item: dict[str, Any] = {
        "id": entry.id, "object": "image.history", "url": link(entry.image_keys[0]),
        "prompt": entry.prompt, "revised_prompt": entry.revised_prompt, "model": entry.model,
        "size": entry.size, "created": int(entry.created), "expires_at": entry.expires_at}
    if admin:
        item["owner"] = entry.owner
    return item


def history_list(page: Page, link: Callable[[str], str], *, admin: bool = False) -> dict:
    """A page of entries in OpenAI's list style."""
    data = [history_item(e, link, admin=admin) for e in page.entries]
    return {"object": "list", "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": page.has_more}


def history_deleted(entry_id: str) -> dict:
    """The answer to a deletion."""
    return {"id": entry_id, "object": "image.history.deleted", "deleted": True}
