"""Absolute links to this service's images, proxy-aware."""

from __future__ import annotations

from flask import request

from .context import services


def public_base_url() -> str:
    """Base of absolute links: PUBLIC_BASE_URL, else this request's (proxy-aware) root URL."""
    configured = services().config.public_base_url
    return configured or request.url_root.rstrip("/")


def image_link(base: str, key: str) -> str:
    """The absolute URL of a stored image."""
    return f"{base}/image/{key}"
