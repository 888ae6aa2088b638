"""The admin API for run-time keys: /v1/admin/keys (list, create) and /v1/admin/keys/{id}
(read, change, revoke). Every route needs ADMIN_API_KEY (web/admin_auth.py).

The secret of a new key is in the create's answer only; afterwards the service knows its hash.
Each key object also carries today's spend and what its budgets leave, from the shared books.
"""

from __future__ import annotations

import logging
import time

from flask import Blueprint, Response, jsonify

from ..keys.admin import KeyAdmin
from ..keys.records import IssuedKey
from ..keys.wire import KeyChange, KeyCreate, key_object
from ..openai_api.wording import validate
from .admin import private
from .admin_auth import require_admin
from .body import json_body
from .context import services

bp = Blueprint("admin_keys", __name__)
bp.after_request(private)  # no-store, no frames, no Referer: as every admin answer
log = logging.getLogger(__name__)


@bp.before_request
def authenticate() -> None:
    require_admin()


@bp.get("/admin/keys")
def list_keys() -> Response:
    """Every run-time key, revoked ones too, oldest first."""
    keys = _admin().all()
    spent = services().books.spent()
    return jsonify({"object": "list", "data": [_shown(key, spent) for key in keys]})


@bp.post("/admin/keys")
def create_key() -> Response:
    """A new key; its secret is in this answer and never again."""
    key, secret = _admin().create(validate(KeyCreate, json_body()))
    log.info("admin: key %s (%s) created", key.id, key.owner)
    answer = jsonify({**_shown(key), "secret": secret})
    answer.status_code = 201
    answer.headers["Cache-Control"] = "no-store"
    return answer


@bp.get("/admin/keys/<key_id>")
def get_key(key_id: str) -> Response:
    return jsonify(_shown(_admin().get(key_id)))


@bp.patch("/admin/keys/<key_id>")
def change_key(key_id: str) -> Response:
    """Change a key's name, budgets, rate limit, models or expiry; `null` clears a limit."""
    key = _admin().change(key_id, validate(KeyChange, json_body()))
    log.info("admin: key %s (%s) changed", key.id, key.owner)
    return jsonify(_shown(key))


@bp.delete("/admin/keys/<key_id>")
def revoke_key(key_id: str) -> Response:
    """Revoke a key: refused from its next request on, on every instance; its record stays."""
    key = _admin().revoke(key_id)
    log.info("admin: key %s (%s) revoked", key.id, key.owner)
    return jsonify(_shown(key))


def _admin() -> KeyAdmin:
    admin = services().key_admin
    assert admin is not None          # require_admin: ADMIN_API_KEY is set, so keys are on
    return admin


def _shown(key: IssuedKey, spent: dict[str, float] | None = None) -> dict:
    """The key object, with today's spend and what its budgets leave."""
    usage = services().books.usage_of_hash(key.owner, spent, key.terms)
    usage.pop("key", None)
    return {**key_object(key, time.time()), "usage": usage}
