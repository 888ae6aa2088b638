"""Serve stored images at /image/<key>: the key is the capability, no auth."""

from __future__ import annotations

import time
from email.utils import formatdate

from flask import Blueprint, Response, request

from ..errors import NotFound
from ..storage import is_valid_key
from .common import services

bp = Blueprint("files", __name__)

EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/gif": "gif"}


@bp.route("/image/<key>", methods=["GET", "HEAD"])
def image(key: str):
    """The image bytes with their content type, cache headers and ETag."""
    svc = services()
    stored = svc.store.get(key) if is_valid_key(key) else None
    if stored is None:
        raise NotFound(
            "This image does not exist or has expired (images are kept "
            f"{svc.config.image_expiration} seconds). Generate it again.", code="image_not_found")
    now = time.time()
    ttl = stored.ttl(now)
    response = Response(stored.data, mimetype=stored.content_type)
    # The content behind a key never changes, so the key itself is a strong validator.
    response.set_etag(key)
    response.last_modified = stored.created
    response.headers["Cache-Control"] = f"public, max-age={ttl}, immutable"
    response.headers["Expires"] = formatdate(stored.expires, usegmt=True)
    ext = EXTENSIONS.get(stored.content_type, "bin")
    response.headers["Content-Disposition"] = f'inline; filename="{key}.{ext}"'
    return response.make_conditional(request)
