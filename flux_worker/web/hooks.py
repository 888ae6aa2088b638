"""Every request's frame: request ids, CORS and preflights, and the access log."""

from __future__ import annotations

import logging
import re
import secrets
import time

from flask import Flask, Response, g, request

from .. import metrics
from ..logs import printable
from .edge import common_headers

# A deliberately named logger: operators route access lines apart from the rest.
log = logging.getLogger("flux_worker.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def install(app: Flask) -> None:
    """Install request ids, CORS, preflight answers and the access log on `app`."""
    config = app.extensions["flux_worker"].config
    origins = config.cors_origins

    @app.before_request
    def start_request():
        g.started = time.monotonic()
        g.request_id = request_id(request.headers.get("X-Request-ID", ""))
        if request.method == "OPTIONS":
            # Preflight for any path, known or not: browsers only need the CORS headers. No
            # Content-Type for no content, as /mcp answers its preflights.
            preflight = Response(status=204)
            del preflight.headers["Content-Type"]
            return preflight
        return None

    @app.after_request
    def finish_request(response: Response):
        rid = getattr(g, "request_id", None)
        # The same headers the fast path and /mcp add (web.edge); a view's own Vary is kept.
        for name, value in common_headers(origins, request.headers.get("Origin"),
                                          request.headers.get("Access-Control-Request-Headers"),
                                          rid):
            if name == "Vary":
                response.vary.add(value)
            else:
                response.headers[name] = value
        started = getattr(g, "started", None)
        if started is not None:
            done = request_done(started, rid, request.method, request.path,
                                request.url_rule.rule if request.url_rule else "unmatched",
                                response.status_code, getattr(g, "model", "-"))
            if response.is_streamed and not response.direct_passthrough:
                # A stream's body (the generation itself) is produced after this hook: log and
                # time it when the server closes the response, whether it ended or was cut.
                response.call_on_close(done)
            else:
                done()
        return response


def request_id(incoming: str) -> str:
    """The client's X-Request-ID when it is sane, else a fresh one."""
    return incoming if _REQUEST_ID.match(incoming or "") else secrets.token_hex(8)


def request_done(started: float, rid: str | None, method: str, path: str, route: str,
                  status: int, model: str):
    """A callback that writes the access-log line and the request metrics.

    Everything is captured now: the request context may be gone when a stream closes.
    """

    def done() -> None:
        duration = time.monotonic() - started
        metrics.observe_request(method, route, status, duration)
        # Preflights are counted in the metrics but would only crowd the log.
        if method != "OPTIONS":
            # Path and model come from the client: escaped, so they cannot forge log lines.
            log.info("%s %s %s %d %.0fms model=%s", rid, printable(method, 20),
                     printable(path), status, duration * 1000, printable(model, 200))

    return done
