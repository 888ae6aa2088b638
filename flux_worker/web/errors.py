"""Turn every error into the one OpenAI-shaped JSON answer, at the boundary.

Routing errors (404, 405), the body limit (413) and malformed requests raised by Werkzeug get
the same `{"error": {message, type, param, code}}` body as the project's own errors, and an
unexpected exception becomes a 500 that reveals nothing but a request id.
"""

from __future__ import annotations

import logging

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException

from ..errors import (
    APIError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ServerError,
)

log = logging.getLogger(__name__)


def error_response(exc: APIError):
    """Build the JSON response for an APIError."""
    response = jsonify(exc.body())
    response.status_code = exc.status
    response.headers.update(exc.headers())
    return response


def _from_http(exc: HTTPException) -> APIError:
    if exc.code == 404:
        return NotFound(f"No route {request.method} {request.path}. "
                        "The API lives under /v1 (chat/completions, images/generations, models); "
                        "GET / describes the service.")
    if exc.code == 405:
        allowed = ", ".join(sorted(exc.valid_methods or [])) if hasattr(exc, "valid_methods") else ""
        return MethodNotAllowed(f"{request.method} is not allowed on {request.path}"
                                + (f"; use {allowed}." if allowed else "."))
    if exc.code == 413:
        return PayloadTooLarge("The request body is too large. Send a shorter request "
                               "(the server's limit is MAX_BODY_BYTES).")
    if exc.code and 400 <= exc.code < 500:
        return InvalidRequest(f"{exc.name}: {exc.description}")
    return ServerError("The server could not complete the request.")


def register(app: Flask) -> None:
    """Install the error handlers on `app`."""

    @app.errorhandler(APIError)
    def on_api_error(exc: APIError):
        level = logging.WARNING if exc.status >= 500 else logging.INFO
        log.log(level, "%s %s -> %d %s: %s", request.method, request.path, exc.status,
                exc.code, exc.message)
        return error_response(exc)

    @app.errorhandler(HTTPException)
    def on_http_error(exc: HTTPException):
        response = error_response(_from_http(exc))
        if exc.code == 405 and getattr(exc, "valid_methods", None):
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(Exception)
    def on_unexpected(exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.path)
        rid = getattr(g, "request_id", "")
        return error_response(ServerError(
            "The server hit an unexpected error. Try again; if it persists, report request id "
            f"{rid} to the operator."))
