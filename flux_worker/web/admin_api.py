"""The admin page's data as JSON under /v1/admin/: what was spent, budgets, accounts, providers,
the recent generations of every key and the recent refusals and errors.

Every route calls `require_admin` (web/admin_auth.py): ADMIN_API_KEY as a Bearer key for
scripts, or the admin page's signed-in session. Keys appear by their short hash and the name an
admin gave them, accounts by their shortened id: never a key, a secret or a token.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from ..cost.spend import spend_report
from ..errors import NotFound, StorageError
from ..openai_api.history import HistoryQuery, history_item
from ..openai_api.wording import validate
from ..services import Services
from .admin import private
from .admin_auth import require_admin
from .base_url import image_linker, public_base_url
from .context import services

bp = Blueprint("admin_api", __name__)
bp.after_request(private)


@bp.get("/admin/overview")
def overview() -> Response:
    """The last 30 days' spend, budgets and what is left, accounts and providers."""
    require_admin()
    svc = services()
    books = svc.books
    issued = svc.key_admin.all() if svc.key_admin is not None else []
    names = {key.owner: key.name for key in issued}
    spent = books.spent()
    lines = books.all_keys(svc.config.api_keys, spent, {key.owner: key.terms for key in issued})
    keys = [{**line, "name": names.get(line["key"])} for line in lines]
    return jsonify({
        "object": "admin.overview", "day": books.today(), **books.resets(),
        "spend": spend_report(books, lambda model: provider_of(svc, model), names),
        "budgets": {"service": books.usage_of_service(spent), "keys": keys},
        "accounts": svc.accounts.status() if svc.accounts else [],
        "providers": [{"provider": provider, "state": provider_state(svc, provider)}
                      for provider in svc.config.image_providers],
    })


def key_names(svc: Services) -> dict[str, str]:
    """Each run-time key's short hash -> its name (API_KEY's keys have none)."""
    return {key.owner: key.name for key in svc.key_admin.all()} if svc.key_admin else {}


def provider_of(svc: Services, model: str) -> str | None:
    """Who draws `model`, as the catalog says (None: a model no longer offered)."""
    spec = svc.models.get(model)
    return spec.provider if spec is not None else None


def provider_state(svc: Services, provider: str) -> str:
    """A provider's state: "ok", or "skipped for N s after K failures" (as /readyz says)."""
    health = svc.pipeline.providers
    return health.state(provider) if health is not None else "ok"


@bp.get("/admin/generations")
def generations() -> Response:
    """The newest generations of every key: link, prompt, key, model, size, cost."""
    require_admin()
    svc = services()
    if svc.history is None:
        raise NotFound("This server keeps no image history (IMAGE_HISTORY=off), so there are no "
                       "recent generations to show. The operator can set IMAGE_HISTORY=on.",
                       code="history_unavailable")
    query = validate(HistoryQuery, request.args.to_dict())
    names = key_names(svc)
    link = image_linker(public_base_url())
    # The newest only: the page shows a glance, GET /v1/images/history pages through all.
    return jsonify({"object": "list", "data": [
        {**history_item(entry, link, admin=True), "name": names.get(entry.owner),
         "provider": entry.provider, "cost": {"neurons": entry.neurons, "usd": entry.usd}}
        for entry in svc.history.page(None, query.limit, None).entries]})


@bp.get("/admin/activity")
def activity() -> Response:
    """The newest refusals and errors the service answered, whoever asked."""
    require_admin()
    svc = services()
    query = validate(HistoryQuery, request.args.to_dict())
    names = key_names(svc)
    try:
        lines = svc.activity.newest(query.limit) if svc.activity is not None else []
    except Exception as exc:  # Redis, SQLite and OS errors alike: the log is down
        raise StorageError("The activity log cannot be read right now; try again shortly.") \
            from exc
    return jsonify({"object": "list", "data": [
        {"created": int(line.time), "owner": line.owner, "name": names.get(line.owner),
         "method": line.method, "path": line.path, "status": line.status, "code": line.code,
         "message": line.message} for line in lines]})
