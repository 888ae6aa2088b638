"""The request's JSON body, parsed once, with errors that say what to send."""

from __future__ import annotations

from flask import request

from ..errors import InvalidRequest


def json_body() -> dict:
    """The request's JSON object, or InvalidRequest saying what is wrong with it."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise InvalidRequest("The request body is empty: send a JSON object with "
                             "Content-Type: application/json.")
    data = request.get_json(force=True, silent=True)
    if data is None:
        raise InvalidRequest("The request body is not valid JSON: send a JSON object with "
                             "Content-Type: application/json.")
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object, such as "
                             '{"model": "...", "messages": [...]}.')
    return data
