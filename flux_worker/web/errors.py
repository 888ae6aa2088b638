"""Turn every error into the one OpenAI-shaped JSON answer, at the boundary.

Routing errors (404, 405), the body limit (413) and malformed requests raised by Werkzeug get
the same `{"error": {message, type, param, code}}` body as the project's own errors, and an
unexpected exception becomes a 500 that reveals nothing but a request id.
"""

from __future__ import annotations

import logging
import re

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException

from ..errors import (
    APIError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    ServerError,
    StorageError,
)
from ..logs import printable
from .body import too_large
from .context import services
from .routes import blueprint_of

# What a caller without a key learns when storage fails: what failed, not where it lives (a
# Redis error names host and port, an S3 one its endpoint, a disk one may name a path).
_ADDRESSES = re.compile(
    r"[A-Za-z][A-Za-z0-9+.-]*+://\S++"                    # URLs
    r"|\[[0-9A-Fa-f:.]++\](?::[0-9]++)?+"                   # [IPv6]:port
    r"|\b[0-9]{1,3}(?:\.[0-9]{1,3}){3}(?::[0-9]++)?+"       # IPv4[:port]
    r"|\b[A-Za-z0-9-]++(?:\.[A-Za-z0-9-]++)*+:[0-9]{2,5}\b"  # host:port
    r"|(?<![\w.])/[\w.~-]++(?:/[\w.~-]*+)++")              # absolute paths

log = logging.getLogger(__name__)


def error_response(exc: APIError):
    """Build the JSON response for an APIError."""
    body = exc.body()
    # A message or param may quote client text; text UTF-8 cannot encode (a lone surrogate)
    # would turn this answer itself into a 500.
    body["error"] = {k: v.encode("utf-8", "replace").decode("utf-8") if isinstance(v, str) else v
                     for k, v in body["error"].items()}
    response = jsonify(body)
    response.status_code = exc.status
    response.headers.update(exc.headers())
    return response


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
                                + (f"; use {allowed}." if allowed else "."))
    if exc.code == 413:
        return too_large()
    if exc.code and 400 <= exc.code < 500:
        return InvalidRequest(f"{exc.name}: {exc.description}")
    return ServerError("The server could not complete the request.")


def without_addresses(text: str) -> str:
    """Text with URLs, IP addresses, host:port pairs and absolute paths replaced."""
    return _ADDRESSES.sub("<address>", text)


def public(exc: APIError) -> APIError:
    """The error as a caller may see it: storage errors on open routes name no address."""
    if not isinstance(exc, StorageError):
        return exc
    behind_key = (blueprint_of(request.blueprint) == "api"
                  and services().config.auth_required)
    if behind_key:
        return exc
    hidden = type(exc)(without_addresses(exc.message), retry_after=exc.retry_after)
    hidden.status = exc.status
    return hidden


def register(app: Flask) -> None:
    """Install the error handlers on `app`."""

    @app.errorhandler(APIError)
    def on_api_error(exc: APIError):
        level = logging.WARNING if exc.status >= 500 else logging.INFO
        log.log(level, "%s %s -> %d %s: %s", request.method, printable(request.path),
                exc.status, exc.code, printable(exc.message))
        return error_response(public(exc))

    @app.errorhandler(HTTPException)
    def on_http_error(exc: HTTPException):
        response = error_response(_from_http(exc))
        methods = getattr(exc, "valid_methods", None)
        if exc.code == 405 and methods:
            response.headers["Allow"] = ", ".join(methods)
        return response

    @app.errorhandler(Exception)
    def on_unexpected(exc: Exception):
        log.exception("unexpected error on %s %s", request.method, printable(request.path))
        rid = getattr(g, "request_id", "")
        return error_response(ServerError(
            "The server hit an unexpected error. Try again; if it persists, report request id "
            f"{rid} to the operator."))
