"""Absolute links to images, proxy-aware; IMAGE_LINKS (storage/links.py) decides their form."""

from __future__ import annotations

from typing import Callable

from flask import request

from .context import services


def public_base_url() -> str:
    """Base of absolute links: PUBLIC_BASE_URL, else this request's (proxy-aware) root URL."""
    configured = services().config.public_base_url
    return configured or request.url_root.rstrip("/")


def image_link(base: str, key: str) -> str:
    """The absolute URL of a stored image, as IMAGE_LINKS says (in the request's thread)."""
    return services().links(base, key)


def image_linker(base: str) -> Callable[[str], str]:
    """key -> absolute image URL for this request, callable from any thread (a generation's)."""
    links = services().links  # looked up now: other threads have no app context
    return lambda key: links(base, key)
