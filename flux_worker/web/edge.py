"""What every answer carries, and how every error is answered, on each of the service's edges.

Three edges answer HTTP requests: Flask's error boundary (`web.errors`, `web.hooks`), the image
fast path in front of Flask (`web.image_files.ImageFastPath`) and the `/mcp` mount
(`web.mcp.McpMount`). The two WSGI layers run without an app or request context, so this module
imports no Flask: each edge gathers the few request facts it needs (the Origin, whether the caller
proved a key) and gets from here the same status, headers and JSON bytes for the same error, and
the same CORS headers for the same request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import orjson
from werkzeug.http import HTTP_STATUS_CODES

from ..errors import APIError, public_error
from ..logs import printable

log = logging.getLogger(__name__)

ALLOWED_HEADERS = "Authorization, Content-Type, X-Request-ID, OpenAI-Organization, OpenAI-Project"
_EXPOSED_HEADERS = "X-Request-ID, Retry-After, ETag, X-Neurons"

def cors_headers(origins: tuple[str, ...], origin: str | None,
                 requested: str | None = None) -> list[tuple[str, str]]:
    """The CORS headers of an answer to a request from `origin` (None: not from a browser).

    With a list of origins instead of `*`, whether Allow-Origin is sent depends on the request's
    Origin, so the answer also says `Vary: Origin`: a shared cache must not hand one origin's
    answer to another. `requested` is a preflight's Access-Control-Request-Headers, echoed so
    that any header a client adds (MCP's Mcp-Protocol-Version, SDKs' own) is allowed.
    """
    headers = []
    restricted = "*" not in origins
    if not restricted:
        headers.append(("Access-Control-Allow-Origin", "*"))
    elif origin and origin in origins:
        headers.append(("Access-Control-Allow-Origin", origin))
    headers += [
        ("Access-Control-Allow-Methods", "GET, HEAD, POST, OPTIONS"),
        ("Access-Control-Allow-Headers", requested or ALLOWED_HEADERS),
        ("Access-Control-Expose-Headers", _EXPOSED_HEADERS),
        ("Access-Control-Max-Age", "86400"),
    ]
    if restricted:
        headers.append(("Vary", "Origin"))
    return headers


def common_headers(origins: tuple[str, ...], origin: str | None, requested: str | None,
                   rid: str | None) -> list[tuple[str, str]]:
    """The headers every answer carries: CORS (with its Vary), nosniff and the request id."""
    headers = cors_headers(origins, origin, requested)
    headers.append(("X-Content-Type-Options", "nosniff"))
    if rid:
        headers.append(("X-Request-ID", rid))
    return headers


def with_headers(headers: list[tuple[str, str]],
                 extra: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """`headers` plus `extra`; a Vary in both is merged into one, any other `extra` header wins."""
    names = {name.lower() for name, _ in extra}
    merged = [(n, v) for n, v in headers if n.lower() not in names or n.lower() == "vary"]
    for name, value in extra:
        if name.lower() == "vary":
            merged = _add_vary(merged, value)
        else:
            merged.append((name, value))
    return merged


def _add_vary(headers: list[tuple[str, str]], value: str) -> list[tuple[str, str]]:
    for i, (name, old) in enumerate(headers):
        if name.lower() == "vary":
            present = {v.strip().lower() for v in old.split(",")}
            if value.lower() not in present:
                headers[i] = (name, f"{old}, {value}")
            return headers
    return [*headers, ("Vary", value)]


def encodable(text: str) -> str:
    """Text with anything UTF-8 cannot encode (a lone surrogate) replaced by `?`."""
    return text.encode("utf-8", "replace").decode("utf-8")


def error_json(exc: APIError) -> bytes:
    """The error's JSON body as UTF-8 bytes, whatever its message quotes.

    A message or param may quote client text or an OS error about a file name that is not
    UTF-8 (a lone surrogate): such text would make the answer itself fail to encode, so it is
    replaced, not refused.
    """
    body = exc.body()
    body["error"] = {k: encodable(v) if isinstance(v, str) else v
                     for k, v in body["error"].items()}
    return orjson.dumps(body)


@dataclass(frozen=True)
class ErrorAnswer:
    """An error's HTTP answer: status, headers and JSON body, for any edge to send."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def status_line(self) -> str:
        """The WSGI status line, such as `401 Unauthorized`."""
        return status_line(self.status)


def error_answer(exc: APIError, *, behind_key: bool) -> ErrorAnswer:
    """The answer to `exc`: public_error() text, repaired UTF-8 and the error's own headers.

    The error's headers come from the error tree: Retry-After, the 401's WWW-Authenticate
    challenge and the 405's Allow. CORS headers are not here: every answer carries them,
    errors or not, and each edge adds them to all it sends (`common_headers`).
    """
    shown = public_error(exc, behind_key=behind_key)
    body = error_json(shown)
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
               *shown.headers().items()]
    return ErrorAnswer(shown.status, headers, body)


def status_line(status: int) -> str:
    """A WSGI status line for `status` (499, which no client sees, has no reason phrase)."""
    return f"{status} {HTTP_STATUS_CODES.get(status, 'Unknown')}"


def log_error(method: str, path: str, exc: APIError) -> None:
    """Log an answered error once, whole: the log may name what the answer hides."""
    level = logging.WARNING if exc.status >= 500 else logging.INFO
    # A lone surrogate is written as its escape (\\udce9): the log shows exactly what was
    # there, and a handler writing UTF-8 does not fail on the line.
    message = printable(exc.message).encode("utf-8", "backslashreplace").decode("utf-8")
    log.log(level, "%s %s -> %d %s: %s", printable(method, 20), printable(path), exc.status,
            exc.code, message)
