"""Serve stored images at /image/<key>: the key is the capability, no auth.

Images are the hottest GET, so a found image is answered by `ImageFastPath`, a small WSGI layer
in front of Flask: it skips routing, contexts and hooks (measured: 0.76 -> 0.46 ms of server CPU
per 150 KB image, 1,712 -> 2,815 req/s; docs/benchmarks.md) and hands the open file to the
server's file wrapper, so gunicorn sends a disk image with sendfile() and an S3 object as it
streams in, never whole in memory. A storage failure is answered here too, with the JSON error
and headers Flask would send (`web.edge`): asking storage a second time, from Flask's view,
would double the wait when storage hangs. Everything else, including every 404, goes through
Flask and gets the usual JSON error.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from email.utils import formatdate

from flask import Blueprint
from werkzeug.http import is_resource_modified

from ..errors import APIError, NotFound
from ..storage import ImageFile, is_valid_key
from ..storage.links import IMAGE_PATH
from . import edge
from .context import services
from .hooks import request_done, request_id

bp = Blueprint("files", __name__)

PREFIX = IMAGE_PATH
ROUTE = PREFIX + "<key>"
EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/gif": "gif"}


def image_headers(key: str, image: ImageFile, now: float) -> list[tuple[str, str]]:
    """Content and cache headers of an image; the key is a strong ETag (content never changes).

    Caches keep it no longer than it lives; one kept for ever gets a year, HTTP's "never expires".
    """
    ext = EXTENSIONS.get(image.content_type, "bin")
    max_age = image.ttl(now)
    return [
        ("Content-Type", image.content_type),
        ("Content-Length", str(image.size)),
        ("ETag", f'"{key}"'),
        ("Last-Modified", formatdate(image.created, usegmt=True)),
        ("Cache-Control", f"public, max-age={max_age}, immutable"),
        ("Expires", formatdate(now + max_age if image.forever else image.expires, usegmt=True)),
        ("Content-Disposition", f'inline; filename="{key}.{ext}"'),
    ]


@bp.route(ROUTE, methods=["GET", "HEAD"])
def image(key: str):
    """Reached only when the fast path found no image: answer 404 (or a storage error)."""
    svc = services()
    if is_valid_key(key):
        found = svc.store.open(key)  # raises StorageError when storage is down
        if found is not None:
            found.file.close()  # stored meanwhile: the next request's fast path serves it
    kept = svc.config.image_expiration
    why = (f"or has expired (images are kept {kept} seconds)" if kept else
           "or was removed to make room for newer ones")
    raise NotFound(f"This image does not exist {why}. Generate it again.", code="image_not_found")


class ImageFastPath:
    """WSGI layer that serves found images directly and passes every other request on."""

    def __init__(self, app, flask_app):
        self.app = app
        self.services = flask_app.extensions["flux_worker"]

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD")
        if method in ("GET", "HEAD") and path.startswith(PREFIX):
            started = time.monotonic()
            key = path[len(PREFIX):]
            if is_valid_key(key):
                try:
                    image = self.services.store.open(key)
                except APIError as exc:  # storage down or failing (StorageError)
                    return self._fail(environ, start_response, exc, started)
                if image is not None:
                    return self._serve(environ, start_response, key, image, started)
        return self.app(environ, start_response)

    def _headers(self, environ, rid: str) -> list[tuple[str, str]]:
        """The headers every answer carries, with Vary: Origin under a CORS list."""
        return edge.common_headers(self.services.config.cors_origins, environ.get("HTTP_ORIGIN"),
                                   environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS"), rid)

    def _fail(self, environ, start_response, exc: APIError, started: float):
        """Answer an error as Flask's boundary would; images are open, so no key was proved."""
        rid = request_id(environ.get("HTTP_X_REQUEST_ID", ""))
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "")
        edge.log_error(method, path, exc)
        answer = edge.error_answer(exc, behind_key=False)
        start_response(answer.status_line,
                       edge.with_headers(answer.headers, self._headers(environ, rid)))
        request_done(started, rid, method, path, ROUTE, answer.status, "-")()
        return [] if method == "HEAD" else [answer.body]

    def _serve(self, environ, start_response, key, image: ImageFile, started: float):
        rid = request_id(environ.get("HTTP_X_REQUEST_ID", ""))
        headers = image_headers(key, image, time.time()) + self._headers(environ, rid)
        fresh = not is_resource_modified(
            environ, etag=key, last_modified=datetime.fromtimestamp(image.created, timezone.utc))
        status = 304 if fresh else 200
        if fresh or environ["REQUEST_METHOD"] == "HEAD":
            image.file.close()
            if fresh:
                headers = [h for h in headers if h[0] != "Content-Length"]
            body = []
        else:
            wrapper = environ.get("wsgi.file_wrapper")
            body = wrapper(image.file, 1 << 16) if wrapper else _chunks(image.file)
        start_response("304 Not Modified" if fresh else "200 OK", headers)
        request_done(started, rid, environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""),
                     ROUTE, status, "-")()
        return body


def _chunks(file, size: int = 1 << 16):
    """Iterate a file in chunks and close it (servers without a file wrapper)."""
    with file:
        while chunk := file.read(size):
            yield chunk
