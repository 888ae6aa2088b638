"""GET /v1/usage: what a key has spent today against its budgets, and the service's.

Every line counts both units: neurons (Workers AI) and US dollars (every image). A client key
sees its own line only (by the key's short hash): what other keys, the service, the models and
the accounts spend is not its business. `ADMIN_API_KEY` sees the service's line, every key
(short hashes only, never a key), every model that drew today and every Cloudflare account
(shortened ids, never a token). The numbers come from the budget ledger every instance shares.
"""

from __future__ import annotations

from flask import Blueprint, Response, g, jsonify

from .admin_auth import bearer_is_admin
from .auth import caller_terms, prove_key, require_api_key
from .context import services

bp = Blueprint("usage", __name__)


@bp.get("/usage")
def usage() -> Response:
    """Today's spend in neurons and dollars: the caller's key's; everything for the admin."""
    svc = services()
    admin = bearer_is_admin()
    if admin:
        prove_key()
    else:
        require_api_key()
    books = svc.books
    spent = books.spent()
    body: dict = {"object": "usage", "day": books.today(), **books.resets()}
    key = g.get("api_key")
    if not admin and key:
        body["key"] = books.usage_of_key(key, spent, caller_terms())
    if admin:
        body["service"] = books.usage_of_service(spent)
        issued = svc.key_admin.all() if svc.key_admin is not None else []
        body["keys"] = books.all_keys(svc.config.api_keys, spent,
                                      {k.owner: k.terms for k in issued})
        body["models"] = books.usage_of_models(spent)
        body["accounts"] = svc.accounts.status() if svc.accounts else []
    return jsonify(body)

