"""Turn every error into the one OpenAI-shaped JSON answer, at Flask's boundary.

Routing errors (404, 405), the body limit (413) and malformed requests raised by Werkzeug get
the same `{"error": {message, type, param, code}}` body as the project's own errors, and an
unexpected exception becomes a 500 that reveals nothing but a request id. The answer itself is
built by `web.edge`, as on the image fast path and /mcp, so an error reads the same on all three.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from ..errors import (
    APIError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    ServerError,
    public_error,
)
from ..logs import printable
from . import edge
from .auth import caller_key, key_proved
from .body import too_large
from .context import services

log = logging.getLogger(__name__)


def error_response(exc: APIError) -> Response:
    """Build the JSON response for an APIError, as this request's caller may see it."""
    answer = edge.error_answer(exc, behind_key=key_proved())
    # Content-Length is left to Werkzeug, which also drops the body of an answer to HEAD.
    headers = [(n, v) for n, v in answer.headers if n != "Content-Length"]
    return Response(answer.body, status=answer.status, headers=headers)


def _from_http(exc: HTTPException) -> APIError:
    if exc.code == 404:
        return NotFound(f"No route {request.method} {printable(request.path, 200)}. "
                        "The API lives under /v1 (chat/completions, images/generations, models); "
                        "GET / describes the service.")
    if exc.code == 405:
        methods = getattr(exc, "valid_methods", None) or []
        allowed = ", ".join(sorted(methods))
        where = printable(request.path, 200)
        return MethodNotAllowed(f"{request.method} is not allowed on {where}"
                                + (f"; use {allowed}." if allowed else "."),
                                allow=tuple(methods))
    if exc.code == 413:
        return too_large()
    if exc.code and 400 <= exc.code < 500:
        return InvalidRequest(f"{exc.name}: {exc.description}")
    return ServerError("The server could not complete the request.")


def public(exc: APIError) -> APIError:
    """The error as this request's caller may see it (views that answer it themselves: /readyz)."""
    return public_error(exc, behind_key=key_proved())


def register(app: Flask) -> None:
    """Install the error handlers on `app`."""

    @app.errorhandler(APIError)
    def on_api_error(exc: APIError):
        edge.log_error(request.method, request.path, exc)
        activity = services().activity
        if activity is not None:
            activity.answered(caller_key(), request.method, request.path, exc)
        return error_response(exc)

    @app.errorhandler(HTTPException)
    def on_http_error(exc: HTTPException):
        return error_response(_from_http(exc))

    @app.errorhandler(Exception)
    def on_unexpected(exc: Exception):
        log.exception("unexpected error on %s %s", request.method, printable(request.path))
        rid = getattr(g, "request_id", "")
        return error_response(ServerError(
            "The server hit an unexpected error. Try again; if it persists, report request id "
            f"{rid} to the operator."))
