"""Serve stored images at /image/<key>: the key is the capability, no auth."""

from __future__ import annotations

import time
from email.utils import formatdate

from flask import Blueprint, Response, request
from werkzeug.wsgi import wrap_file

from ..errors import NotFound
from ..storage import is_valid_key
from .common import services

bp = Blueprint("files", __name__)

EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/gif": "gif"}


@bp.route("/image/<key>", methods=["GET", "HEAD"])
def image(key: str):
    """The image bytes with their content type, cache headers and ETag."""
    svc = services()
    stored = svc.store.open(key) if is_valid_key(key) else None
    if stored is None:
        raise NotFound(
            "This image does not exist or has expired (images are kept "
            f"{svc.config.image_expiration} seconds). Generate it again.", code="image_not_found")
    now = time.time()
    ttl = stored.ttl(now)
    # wrap_file hands the open file to the server's wsgi.file_wrapper: gunicorn sends a disk
    # image with sendfile(); the wrapper closes the file when the response is done.
    response = Response(wrap_file(request.environ, stored.file), mimetype=stored.content_type,
                        direct_passthrough=True)
    response.content_length = stored.size
    # The content behind a key never changes, so the key itself is a strong validator.
    response.set_etag(key)
    response.last_modified = stored.created
    response.headers["Cache-Control"] = f"public, max-age={ttl}, immutable"
    response.headers["Expires"] = formatdate(stored.expires, usegmt=True)
    ext = EXTENSIONS.get(stored.content_type, "bin")
    response.headers["Content-Disposition"] = f'inline; filename="{key}.{ext}"'
    return response.make_conditional(request)
