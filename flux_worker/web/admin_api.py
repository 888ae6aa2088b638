"""The admin page's data as JSON under /v1/admin/: what was spent, budgets, accounts, providers.

Every route calls `require_admin` (web/admin_auth.py): ADMIN_API_KEY as a Bearer key for
scripts, or the admin page's signed-in session. Keys appear by their short hash and the name an
admin gave them, accounts by their shortened id: never a key, a secret or a token.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from ..cost.spend import spend_report
from ..services import Services
from .admin import private
from .admin_auth import require_admin
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


def provider_of(svc: Services, model: str) -> str | None:
    """Who draws `model`, as the catalog says (None: a model no longer offered)."""
    spec = svc.models.get(model)
    return spec.provider if spec is not None else None


def provider_state(svc: Services, provider: str) -> str:
    """A provider's state: "ok", or "skipped for N s after K failures" (as /readyz says)."""
    health = svc.pipeline.providers
    return health.state(provider) if health is not None else "ok"
