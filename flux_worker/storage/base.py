"""The storage interface every backend implements, and the key format they share."""

from __future__ import annotations

import io
import math
import re
import secrets
from dataclasses import dataclass
from typing import BinaryIO, Protocol, runtime_checkable

from ..errors import StorageFull

# 16 random bytes = 128 bits, URL-safe base64 without padding: 22 characters.
KEY_BYTES = 16
_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{22,64}$")
# A ttl of 0 (IMAGE_EXPIRATION=0) keeps an image for ever: its `expires` is infinite. A store
# bounded by STORAGE_MAX_BYTES (memory, disk) never evicts such an image for another one: once
# full it refuses new ones (`kept_for_ever_full`), so one key cannot push out everybody's images.
# Redis's maxmemory and a bucket's lifecycle are their operators' own rules.
KEEP_FOREVER = 0
NEVER = math.inf
# What `ttl` reports for an image kept for ever: a year, the longest lifetime HTTP caches honour.
FOREVER_TTL = 365 * 86400


def seconds_left(expires: float, now: float) -> int:
    """Whole seconds from `now` until `expires` (never negative; FOREVER_TTL for NEVER)."""
    if expires == NEVER:
        return FOREVER_TTL
    return max(0, int(expires - now))


def new_key() -> str:
    """Return a fresh unguessable image key (128 random bits)."""
    return secrets.token_urlsafe(KEY_BYTES)


def is_valid_key(key: str) -> bool:
    """Whether `key` has the shape of a key this service hands out."""
    return bool(_KEY_RE.fullmatch(key or ""))


@dataclass(frozen=True)
class StoredImage:
    """Image bytes with what is needed to serve them."""

    data: bytes
    content_type: str
    created: float   # unix time it was stored
    expires: float   # unix time it stops being served (NEVER when kept for ever)

    @property
    def forever(self) -> bool:
        """Whether the image is kept for ever (IMAGE_EXPIRATION=0)."""
        return self.expires == NEVER

    def ttl(self, now: float) -> int:
        """Whole seconds left to live at `now` (never negative; FOREVER_TTL when kept for ever)."""
        return seconds_left(self.expires, now)


def new_entry(data: bytes, content_type: str, ttl: int, now: float,
              max_bytes: int | None = None) -> StoredImage:
    """Check what `put` was given and build the entry to keep.

    `ttl` is in seconds; KEEP_FOREVER (0) keeps the image until the store's bound removes it.

    :raises ValueError: for a negative ttl (a caller's bug, not the client's).
    :raises StorageFull: when the image alone is larger than the whole store.
    """
    if ttl < 0:
        raise ValueError(f"ttl must be positive, or 0 for ever, got {ttl}")
    if max_bytes is not None and len(data) > max_bytes:
        raise StorageFull(
            f"Image storage is full: the image ({len(data)} bytes) is larger than "
            f"STORAGE_MAX_BYTES ({max_bytes}); raise STORAGE_MAX_BYTES.")
    # bytes(...) because a bytearray or memoryview would be pickled or aliased, not kept raw.
    return StoredImage(bytes(data), content_type, now, NEVER if ttl == KEEP_FOREVER else now + ttl)


def kept_for_ever_full() -> StorageFull:
    """The refusal of a store full of images kept for ever (507), for the operator to act on."""
    return StorageFull(
        "Image storage is full of images kept for ever (IMAGE_EXPIRATION=0), and none is removed "
        "to make room for another. Try again later; the operator can raise STORAGE_MAX_BYTES or "
        "set IMAGE_EXPIRATION so that images expire.")


@dataclass(frozen=True)
class ImageFile:
    """A stored image opened for sending: a binary file and what is needed to serve it.

    Whoever receives it closes `file`. A disk store hands out the real file, so the server can
    send it with sendfile() instead of copying it through Python.
    """

    file: BinaryIO
    size: int
    content_type: str
    created: float
    expires: float

    @classmethod
    def of(cls, item: StoredImage) -> "ImageFile":
        """Wrap an in-memory image."""
        return cls(io.BytesIO(item.data), len(item.data), item.content_type, item.created,
                   item.expires)

    @property
    def forever(self) -> bool:
        """Whether the image is kept for ever (IMAGE_EXPIRATION=0)."""
        return self.expires == NEVER

    def ttl(self, now: float) -> int:
        """Whole seconds left to live at `now` (never negative; FOREVER_TTL when kept for ever)."""
        return seconds_left(self.expires, now)


class OpensFromMemory:
    """For stores that hold images as bytes: `open` wraps what `get` returns."""

    def get(self, key: str) -> StoredImage | None:  # pragma: no cover - every store defines it
        """Return the entry, or None when it is missing or expired."""
        raise NotImplementedError

    def open(self, key: str) -> ImageFile | None:
        """Return the entry wrapped as a file, or None when it is missing or expired."""
        item = self.get(key)
        return ImageFile.of(item) if item else None


@runtime_checkable
class ImageStore(Protocol):
    """Where generated images live until they expire.

    Implementations are safe to call from many threads, never return an expired or partly
    written entry, and raise `errors.StorageError` (or `StorageFull`) when they cannot work.
    """

    kind: str  # "memory", "disk", "redis", "s3": shown on the welcome page and /readyz

    def put(self, key: str, data: bytes, content_type: str, ttl: int) -> StoredImage:
        """Store `data` under `key` for `ttl` seconds (KEEP_FOREVER: for ever).

        A bounded store refuses (StorageFull) an image kept for ever that does not fit, rather
        than evict another one kept for ever.
        """

    def get(self, key: str) -> StoredImage | None:
        """Return the entry, or None when it is missing or expired."""

    def open(self, key: str) -> ImageFile | None:
        """Return the entry opened for sending, or None when it is missing or expired."""

    def delete(self, key: str) -> None:
        """Remove the entry if present."""

    def ping(self) -> None:
        """Raise StorageError when the store cannot be used right now."""

    def close(self) -> None:
        """Release connections and files."""
