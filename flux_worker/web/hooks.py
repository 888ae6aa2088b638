"""Every request's frame: request ids, CORS and preflights, and the access log."""

from __future__ import annotations

import logging
import re
import secrets
import time

from flask import Flask, Response, g, request

from .. import metrics
from ..logs import printable

# A deliberately named logger: operators route access lines apart from the rest.
log = logging.getLogger("flux_worker.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_ALLOWED_HEADERS = "Authorization, Content-Type, X-Request-ID, OpenAI-Organization, OpenAI-Project"


def install(app: Flask) -> None:
    """Install request ids, CORS, preflight answers and the access log on `app`."""
    config = app.extensions["flux_worker"].config
    origins = config.cors_origins
    allow_any = "*" in origins

    @app.before_request
    def start_request():
        g.started = time.monotonic()
        g.request_id = request_id(request.headers.get("X-Request-ID", ""))
        if request.method == "OPTIONS":
            # Preflight for any path, known or not: browsers only need the CORS headers.
            return Response(status=204)
        return None

    @app.after_request
    def finish_request(response: Response):
        rid = getattr(g, "request_id", None)
        for name, value in common_headers(origins, request.headers.get("Origin"),
                                          request.headers.get("Access-Control-Request-Headers"),
                                          rid):
            response.headers[name] = value
        if not allow_any:
            response.vary.add("Origin")
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


def common_headers(origins: tuple[str, ...], origin: str | None, requested: str | None,
                   rid: str | None) -> list[tuple[str, str]]:
    """CORS, request id and nosniff headers that every answer carries."""
    headers = []
    if "*" in origins:
        headers.append(("Access-Control-Allow-Origin", "*"))
    elif origin and origin in origins:
        headers.append(("Access-Control-Allow-Origin", origin))
    headers += [
        ("Access-Control-Allow-Methods", "GET, HEAD, POST, OPTIONS"),
        ("Access-Control-Allow-Headers", requested or _ALLOWED_HEADERS),
        ("Access-Control-Expose-Headers", "X-Request-ID, Retry-After, ETag, X-Neurons"),
        ("Access-Control-Max-Age", "86400"),
        ("X-Content-Type-Options", "nosniff"),
    ]
    if rid:
        headers.append(("X-Request-ID", rid))
    return headers


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
