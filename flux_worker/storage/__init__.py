"""Where generated images live until they expire, chosen by STORAGE_URL (parsed in location.py).

    memory://                    this process only (one gunicorn worker), bounded by max_bytes
    disk://data                  a directory relative to the working directory, or
    disk:///var/lib/flux-worker  an absolute one; shared by the worker processes of one host
    redis://[:password@]host:port/db, rediss://... (TLS), unix:///path/redis.sock?db=0
                                 shared by every host; bounded by Redis's maxmemory
    s3://bucket/optional/prefix  any S3-compatible object store (AWS S3, Cloudflare R2, MinIO)

Each backend module is imported only when its scheme is used, so `redis` and `boto3` stay
optional.
"""

from __future__ import annotations

import time
from typing import Callable

from .base import KEEP_FOREVER, ImageFile, ImageStore, StoredImage, is_valid_key, new_key
from .location import DISK, MEMORY, REDIS, S3, CountersLocation, S3Options, StorageLocation, redact

__all__ = ["KEEP_FOREVER", "CountersLocation", "ImageFile", "ImageStore", "S3Options",
           "StorageLocation", "StoredImage", "is_valid_key", "new_key", "open_store", "redact",
           "storage_from_url"]


def open_store(location: StorageLocation, *, max_bytes: int, s3: S3Options | None = None,
               clock: Callable[[], float] = time.time) -> ImageStore:
    """Build the store at `location`; `max_bytes` bounds memory:// and disk://.

    :raises ValueError: when the scheme's library is missing or a Redis URL is malformed.
    :raises StorageError: when a disk:// directory cannot be created or opened.
    """
    if location.scheme == MEMORY:
        from .memory import MemoryStore
        return MemoryStore(max_bytes=max_bytes, clock=clock)
    if location.scheme == DISK:
        from .disk import DiskStore
        return DiskStore(location.path, max_bytes=max_bytes, clock=clock)
    if location.scheme == REDIS:
        try:
            from .redis import RedisStore
        except ImportError:
            raise ValueError("redis:// needs the redis package: pip install 'redis>=5'") from None
        return RedisStore(location.url, clock=clock)
    if location.scheme == S3:
        try:
            from .s3 import S3Store
        except ImportError:
            raise ValueError("s3:// needs the boto3 package: pip install 'boto3>=1.34'") from None
        return S3Store(location.bucket, location.prefix, s3 or S3Options(), clock=clock)
    raise ValueError(f"no store for scheme {location.scheme!r}")  # parse() allows no other


def storage_from_url(url: str, *, max_bytes: int, s3: S3Options | None = None,
                     clock: Callable[[], float] = time.time) -> ImageStore:
    """Parse `url` and build its store (for tests and tools; the service parses in Config).

    :raises ValueError: for an unknown scheme or a malformed URL (the message names the URL,
        without its password).
    :raises StorageError: when a disk:// directory cannot be created or opened.
    """
    return open_store(StorageLocation.parse(url), max_bytes=max_bytes, s3=s3, clock=clock)
