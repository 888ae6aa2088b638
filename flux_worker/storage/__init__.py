"""Where generated images live until they expire, chosen by the scheme of STORAGE_URL.

    memory://                    this process only (one gunicorn worker), bounded by max_bytes
    disk://data                  a directory relative to the working directory, or
    disk:///var/lib/flux-worker  an absolute one; shared by the worker processes of one host
    redis://[:password@]host:port/db, rediss://... (TLS), unix:///path/redis.sock?db=0
                                 shared by every host; bounded by Redis's maxmemory

Each backend module is imported only when its scheme is used, so `redis` stays optional.
"""

from __future__ import annotations

import os
import time
from typing import Callable
from urllib.parse import unquote, urlsplit

from .base import ImageFile, ImageStore, StoredImage, is_valid_key, new_key

__all__ = ["ImageFile", "ImageStore", "StoredImage", "is_valid_key", "new_key", "storage_from_url"]

REDIS_SCHEMES = ("redis", "rediss", "unix")


def storage_from_url(url: str, *, max_bytes: int,
                     clock: Callable[[], float] = time.time) -> ImageStore:
    """Build the store that `url` names; `max_bytes` bounds memory:// and disk://.

    :raises ValueError: for an unknown scheme or a malformed URL (the message names the URL,
        without its password).
    :raises StorageError: when a disk:// directory cannot be created or opened.
    """
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme == "memory" and sep:
        if rest.strip("/"):
            raise ValueError(f"memory:// takes no path, got {url!r}")
        from .memory import MemoryStore
        return MemoryStore(max_bytes=max_bytes, clock=clock)
    if scheme == "disk" and sep:
        if not rest:
            raise ValueError(
                f"disk:// needs a directory, such as disk://data or disk:///var/lib/flux-worker, "
                f"got {url!r}")
        from .disk import DiskStore
        # Resolved now, so a later chdir cannot move the store.
        return DiskStore(os.path.abspath(os.path.expanduser(rest)), max_bytes=max_bytes,
                         clock=clock)
    if scheme in REDIS_SCHEMES and sep:
        try:
            from .redis import RedisStore
        except ImportError:
            raise ValueError(
                f"{scheme}:// needs the redis package: pip install 'redis>=5'") from None
        return RedisStore(f"{scheme}://{rest}", clock=clock)  # redis-py wants a lowercase scheme
    raise ValueError(
        f"unknown storage URL {redact(url, url)!r}: use memory://, disk://<directory>, "
        "redis://host:port/db, rediss://host:port/db or unix:///path/to/redis.sock")


def redact(text: str, url: str) -> str:
    """Return `text` with the password of `url` (as written and percent-decoded) replaced by ***."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    for secret in {password, unquote(password or "")} - {None, ""}:
        text = text.replace(secret, "***")
    return text
