"""The links that answers give for stored images: the one place that knows IMAGE_LINKS.

    service    <base>/image/<key>, served by this service (ETag, 304, HEAD, lifetime-bound caching)
    direct     <S3_PUBLIC_BASE_URL>/<prefix><key>: straight from a public bucket, custom domain or
               CDN; the service serves no image bytes
    presigned  a presigned S3 GET URL, valid for the image's lifetime but at most the 7 days SigV4
               allows (the start-up check warns when images live longer)
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from .base import ImageStore

IMAGE_PATH = "/image/"  # the service's route for images (web/files.py serves it)
SERVICE, DIRECT, PRESIGNED = "service", "direct", "presigned"
# SigV4 presigned URLs live at most this long (an S3 rule that R2 and MinIO follow).
MAX_PRESIGN_SECONDS = 7 * 86400


class ImageLinks:
    """Turns an image key (and the request's base URL) into the link an answer carries."""

    def __init__(self, mode: str = SERVICE, store: ImageStore | None = None, *,
                 public_base: str = "", lifetime: int = 0):
        """Links of `mode`; `lifetime` is IMAGE_EXPIRATION (0: for ever)."""
        if mode != SERVICE and getattr(store, "kind", "") != "s3":
            raise ValueError(f"IMAGE_LINKS={mode} needs s3:// storage")
        if mode == DIRECT and not public_base:
            raise ValueError("IMAGE_LINKS=direct needs S3_PUBLIC_BASE_URL")
        self.mode = mode
        self._store = store
        self._public_base = public_base.rstrip("/")
        self._lifetime = lifetime

    def __call__(self, base: str, key: str) -> str:
        """The absolute URL of the image `key`; `base` is the service's own (proxy-aware) root."""
        if self.mode == DIRECT:
            return f"{self._public_base}/{quote(self._store.object_key(key))}"  # type: ignore[union-attr]
        if self.mode == PRESIGNED:
            # Presigned right after the image is stored, so its lifetime is the remaining one;
            # 0 (for ever) asks for the longest the store allows.
            seconds = min(self._lifetime or MAX_PRESIGN_SECONDS, MAX_PRESIGN_SECONDS)
            return self._store.presigned_url(key, seconds)  # type: ignore[union-attr]
        return f"{base}{IMAGE_PATH}{key}"

    def foreign_origin(self) -> str | None:
        """The origin images come from when it is not this service (for the page's CSP)."""
        if self.mode == SERVICE:
            return None
        parts = urlsplit(self("", "k" * 22))
        return f"{parts.scheme}://{parts.netloc}"

