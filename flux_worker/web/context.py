"""What a view needs from the running app: its services (built once by create_app), its JSON."""

from __future__ import annotations

from flask import current_app
from flask.json.provider import DefaultJSONProvider

from ..services import Services


def services() -> Services:
    """The services of the running app."""
    return current_app.extensions["flux_worker"]


class AnswerJSON(DefaultJSONProvider):
    """Write JSON answers as UTF-8 text with their fields in the order they were built."""

    ensure_ascii = False  # prompts in any language stay readable in answers and logs
    sort_keys = False  # answers keep the field order of OpenAI's documented examples
