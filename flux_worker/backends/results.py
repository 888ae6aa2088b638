"""What every backend does with a provider's answer: tell a link from inline bytes, and refuse
an image no model makes, in the same words for every provider."""

from __future__ import annotations

import binascii

import pybase64

from ..catalog.spec import ModelSpec
from ..errors import UpstreamError
from ..generation import fitting


class Malformed(Exception):
    """A 2xx answer that carries no usable image or link."""


def link_or_bytes(text: str, where: str, *, bare_base64: bool = False) -> tuple[str | None, bytes]:
    """(link, b"") for an http(s) link, else (None, bytes) of a base64 `data:` URL (or of bare
    base64 where the provider may send it); raise Malformed naming `where` otherwise."""
    text = text.strip()
    if text.lower().startswith(("https://", "http://")):
        return text, b""
    header, sep, payload = text.partition(",")
    if header.lower().startswith("data:"):
        if not sep or ";base64" not in header.lower():
            raise Malformed(f"{where} is a data: URL without base64")
    elif bare_base64:
        payload = text
    else:
        raise Malformed(f"{where} is neither a link nor a base64 data: URL")
    try:
        raw = pybase64.b64decode(payload.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        raise Malformed(f"{where} is neither a link nor base64") from exc
    if not raw:
        raise Malformed(f"{where} is empty")
    return None, raw


def malformed(provider: str, model: ModelSpec, detail: str) -> UpstreamError:
    """The error for a 2xx answer that carries no usable image."""
    return UpstreamError(f"{provider} returned a malformed answer for {model.id}: {detail}.")


def oversized(provider: str, model: ModelSpec, data: bytes) -> UpstreamError | None:
    """The error for an image larger than any model makes (decoding it could take gigabytes)."""
    size = fitting.oversized(data)
    if size is None:
        return None
    return UpstreamError(
        f"{provider} returned a {size[0]}x{size[1]} image for {model.id}; no image model makes "
        f"more than {fitting.MAX_GENERATED_SIDE} pixels a side, so it was refused undecoded.")
