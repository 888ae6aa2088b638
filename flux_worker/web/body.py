"""The request's JSON body, parsed once, with errors that say what to send.

Every route with a body reads it here, so every route gets the same guarantees before any of its
own code runs: at most MAX_BODY_BYTES (413, chunked bodies too), valid JSON, an object, nested at
most MAX_DEPTH levels, and text that is valid Unicode (a lone surrogate such as `"\\ud83d"` parses
as JSON but cannot be encoded, stored or sent upstream).

Under gunicorn.conf.py's worker every body arrives whole and with its length (a chunked one too);
`with_length` gives one the same where another server passes it on chunked (TLS, tests).
"""

from __future__ import annotations

import io
import json
from typing import IO, Callable

from flask import current_app, request
from werkzeug.wsgi import get_content_length

from ..errors import APIError, InvalidRequest, PayloadTooLarge

# No OpenAI request nests deeper than a handful of levels (messages -> content -> part -> url).
MAX_DEPTH = 32
_EXAMPLE = '{"model": "...", "messages": [...]}'


def too_large() -> PayloadTooLarge:
    """The 413 for a body over MAX_BODY_BYTES (one wording, whoever notices it)."""
    return PayloadTooLarge("The request body is too large. Send a shorter request "
                           "(the server's limit is MAX_BODY_BYTES).")


def json_body() -> dict:
    """The request's JSON object, or InvalidRequest / PayloadTooLarge saying what is wrong."""
    raw = _raw_body()
    if not raw.strip():
        raise InvalidRequest("The request body is empty: send a JSON object with "
                             "Content-Type: application/json.")
    try:
        data = json.loads(raw)
    except RecursionError:
        raise _too_deep() from None
    except ValueError:  # JSONDecodeError and UnicodeDecodeError (bytes that are not UTF-8)
        raise InvalidRequest("The request body is not valid JSON: send a JSON object with "
                             "Content-Type: application/json.") from None
    if not isinstance(data, dict):
        raise InvalidRequest(f"The request body must be a JSON object, such as {_EXAMPLE}.")
    _check_values(data)
    return data


def incomplete() -> InvalidRequest:
    """The 400 for a body that ended early (the client stopped sending, or was too slow)."""
    return InvalidRequest("The request body ended before it was complete: send the whole body "
                          "(within REQUEST_READ_TIMEOUT seconds).")


def read_stream(stream: IO[bytes], size: int) -> bytes:
    """Up to `size` bytes of a body; an error of the socket under it is the client's (400)."""
    try:
        return stream.read(size)
    except OSError:   # gunicorn's NoMoreData, a reset, a timeout: not the server's fault (500)
        raise incomplete() from None


def with_length(environ: dict, limit: int, too_large: Callable[[], APIError]) -> None:
    """Give a body sent without a length (chunked) its length: read it whole, at most `limit`.

    Werkzeug's own limit would cut such a body short silently (a "not valid JSON" 400), and the
    MCP transport reads a body by its Content-Length (a chunked one arrived empty): so read one
    byte past the limit to tell, and keep the body as if its length had been sent.
    """
    if get_content_length(environ) is not None or not environ.get("wsgi.input_terminated"):
        return
    raw = read_stream(environ["wsgi.input"], limit + 1)
    if len(raw) > limit:
        raise too_large()
    environ["wsgi.input"] = io.BytesIO(raw)
    environ["CONTENT_LENGTH"] = str(len(raw))
    environ.pop("HTTP_TRANSFER_ENCODING", None)    # or Werkzeug would still see no length


def _raw_body() -> bytes:
    """The body bytes, at most MAX_BODY_BYTES; raise PayloadTooLarge beyond."""
    cached = request.environ.get("flux_worker.body")
    if cached is not None:
        return cached
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is None:
        with_length(request.environ, limit, too_large)
    if request.content_length is not None and request.content_length > limit:
        raise too_large()  # before Werkzeug, whose limit may be raised (a form's, on edits)
    try:
        raw = request.get_data(cache=True)
    except OSError:
        raise incomplete() from None
    request.environ["flux_worker.body"] = raw
    return raw


def _too_deep() -> InvalidRequest:
    return InvalidRequest(f"The request body is nested too deeply (more than {MAX_DEPTH} levels "
                          f"of objects and lists): send a flat JSON object such as {_EXAMPLE}.")


def _check_values(data: dict) -> None:
    """Refuse deep nesting and strings that are not valid Unicode, naming the field."""
    stack: list[tuple[object, str, int]] = [(data, "", 1)]
    while stack:
        value, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _too_deep()
        if isinstance(value, dict):
            for key, item in value.items():
                path = f"{where}.{key}" if where else key
                _check_text(key, path)
                stack.append((item, path, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value))
        elif isinstance(value, str):
            _check_text(value, where)


def _encodable(text: str) -> str:
    """Text with anything UTF-8 cannot encode replaced by `?`."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _check_text(text: str, where: str) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        field = _encodable(where.split(".")[0].split("[")[0]) or None
        shown = "".join(c if c.isascii() and (c.isalnum() or c in "._[]") else "?"
                        for c in where[:80])
        raise InvalidRequest(
            f"The field {shown or 'name'} holds a lone UTF-16 surrogate (such as \\ud83d "
            "without its pair), which is not valid Unicode: send the whole character, "
            "or both halves of its escape.", param=field) from None
