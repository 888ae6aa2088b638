"""Serve the Prometheus metrics at /metrics.

No API key: scrapers rarely send one, and the metrics hold only counts and timings under
bounded labels (routes, models, status codes), nothing secret: no label names a Cloudflare
account, so the neurons counted are the service's per model, never an account's (those are
ADMIN_API_KEY's, on GET /v1/usage). Keep it off the public edge at the proxy (an allow-list
of the scraper's addresses) if the numbers themselves should stay private.
"""

from __future__ import annotations

from flask import Blueprint, Response

from .. import metrics
from .context import services

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def serve_metrics():
    """The metrics of every worker process, in Prometheus text format."""
    svc = services()
    if svc.pipeline.providers is not None:
        # Read from the shared provider health now, so the gauge is current in every process.
        for provider in svc.config.image_providers:
            metrics.set_provider_up(provider, svc.pipeline.providers.usable(provider))
    body, content_type = metrics.render()
    response = Response(body, content_type=content_type)
    # A scrape must always see fresh numbers, never a cached copy.
    response.headers["Cache-Control"] = "no-store"
    return response
