"""GET /v1/images/history and DELETE /v1/images/history/{id}: a key's kept images.

A key sees and deletes only its own (by its short hash); another key's id answers exactly as an
unknown one. ADMIN_API_KEY sees and deletes everyone's, each item naming its owner. Without a
key (an open demo) nobody can be told apart, and with IMAGE_HISTORY=off nothing is kept: both
answer 404 `history_unavailable`, and the playground keeps its gallery in the browser.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from ..errors import InvalidRequest, NotFound
from ..history.entries import UnknownAfter, owner_of
from ..history.recorder import History
from ..openai_api.history import HistoryQuery, history_deleted, history_list
from ..openai_api.wording import validate
from .admin_auth import bearer_is_admin
from .auth import caller_key, prove_key, require_api_key
from .base_url import image_linker, public_base_url
from .context import services

bp = Blueprint("history", __name__)


@bp.get("/images/history")
def list_history() -> Response:
    """The caller's kept images, newest first (everyone's for the admin)."""
    history, owner = _history_and_owner()
    query = validate(HistoryQuery, request.args.to_dict())
    try:
        page = history.page(owner, query.limit, query.after)
    except UnknownAfter:
        raise InvalidRequest(
            "`after` is not an id of your history (deleted, expired or mistyped): use "
            "`last_id` of the previous page, or start again without `after`.",
            param="after") from None
    link = image_linker(public_base_url())
    return jsonify(history_list(page, link, admin=owner is None))


@bp.delete("/images/history/<entry_id>")
def delete_history(entry_id: str) -> Response:
    """Delete one of the caller's kept images (anyone's for the admin)."""
    history, owner = _history_and_owner()
    history.delete(entry_id, owner)
    return jsonify(history_deleted(entry_id))


def _history_and_owner() -> tuple[History, str | None]:
    """The history and whose entries the caller may see (None: everyone's, the admin).

    :raises NotFound: history_unavailable (IMAGE_HISTORY=off, or no API_KEY to tell keys apart).
    :raises AuthenticationError: a missing or wrong key.
    """
    svc = services()
    if svc.history is None:
        raise NotFound("This server keeps no image history (IMAGE_HISTORY=off): images are "
                       "listed only where they were made, such as the playground's gallery in "
                       "this browser. The operator can set IMAGE_HISTORY=on.",
                       code="history_unavailable")
    if bearer_is_admin():
        prove_key()
        return svc.history, None
    require_api_key()
    key = caller_key()
    if key is None:
        raise NotFound("This server asks for no API key, so it cannot tell whose images are "
                       "whose and lists none: the playground keeps its gallery in this browser. "
                       "The operator can set API_KEY, or hand out keys (ADMIN_API_KEY), to give "
                       "each user a history.", code="history_unavailable")
    return svc.history, owner_of(key)
