"""What a view needs from the running app: its services (built once by create_app)."""

from __future__ import annotations

from flask import current_app

from ..services import Services


def services() -> Services:
    """The services of the running app."""
    return current_app.extensions["flux_worker"]
