"""Serve the OpenAPI description at /openapi.json (no auth: it describes, it grants nothing)."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from ..openai_api.openapi import openapi_spec
from .context import services
from .routes import unprefixed_aliases

bp = Blueprint("openapi", __name__)


@bp.get("/openapi.json")
def openapi_json():
    """The OpenAPI document, with the root of this request (proxy-aware) as its server."""
    config = services().config
    return jsonify(openapi_spec(request.url_root.rstrip("/"), max_images=config.max_images,
                                max_body_bytes=config.max_body_bytes,
                                aliases=unprefixed_aliases(current_app)))
