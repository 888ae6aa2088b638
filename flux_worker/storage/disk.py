"""Images kept on local disk with diskcache, shared by every worker process of one host.

diskcache keeps an SQLite index plus one plain file per value of 32 KB or more, and is safe for
many threads and processes (it reopens SQLite after a fork). Each image is stored as its raw
bytes (never pickled), with its metadata in the row's `tag`: one SELECT returns bytes and
metadata together, so a reader never pairs an image with another entry's content type. Because
the bytes stay raw, large images sit in a plain file that `Cache.get(key, read=True)` can open,
so serving them without reading them into memory can be added later without a migration.

The bound (`max_bytes`, STORAGE_MAX_BYTES) is diskcache's `size_limit`: it counts the image files
and the SQLite file, and after each write that ends above it the least recently stored images are
removed (up to ten per write), so it is a soft bound. Images kept for ever are never removed so:
one that would pass the bound is refused instead (base.py), checked in the same transaction as
its write, so processes cannot both pass the check.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import secrets
import shutil
import sqlite3
import time
from typing import Callable, Iterator

import diskcache

from ..errors import StorageError, StorageFull
from .base import KEEP_FOREVER, ImageFile, StoredImage, kept_for_ever_full, new_entry
from .diskcaches import OwnThreadsCache

FULL_MESSAGE = "Image storage is full: free disk space or lower STORAGE_MAX_BYTES."
# How long a write waits for another process's SQLite write lock. diskcache's default, 60 s,
# would hold a request far beyond the gunicorn timeout; writes hold the lock for milliseconds.
LOCK_TIMEOUT = 10.0
# ping() reports the disk as full below this much free space: a JPEG would no longer fit.
MIN_FREE_BYTES = 4 << 20
PING_KEY = "flux-worker:ping"  # never a valid image key (it contains ':')
# Room kept free when an image kept for ever is written, because the SQLite file grows with the
# row and diskcache evicts once the total passes the bound: measured at most 12 KiB (3 pages)
# per write over 1,200 writes of 100 B to 300 KB.
FOREVER_SLACK = 16 << 10
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_ACCESS_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS}


class _ImageDisk(diskcache.Disk):
    """diskcache's Disk, with two changes measured on the write path (docs/benchmarks.md).

    - One level of 256 directories instead of diskcache's two random levels (65,536): with two,
      nearly every new image created directories until tens of thousands existed (~0.7 ms
      each on ext4); a store holds a few thousand images, so 256 directories suffice.
    - An image is written with one write() call; diskcache iterates a BytesIO, which splits
      binary data at every newline byte (hundreds of small writes per JPEG).
    """

    def filename(self, key=diskcache.core.UNKNOWN, value=diskcache.core.UNKNOWN):
        hex_name = secrets.token_hex(16)
        filename = os.path.join(hex_name[:2], hex_name[2:] + ".val")
        return filename, os.path.join(self._directory, filename)

    def store(self, value, read, key=diskcache.core.UNKNOWN):
        if type(value) is not bytes or len(value) < self.min_file_size:
            return super().store(value, read, key)
        filename, full_path = self.filename()
        for attempt in range(3):
            # Another process may remove an emptied directory between makedirs and open.
            os.makedirs(os.path.dirname(full_path), exist_ok=True)
            try:
                with open(full_path, "xb") as writer:
                    writer.write(value)
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
        return len(value), diskcache.core.MODE_BINARY, filename, None


class DiskStore:
    """A store in a local directory, bounded by bytes, evicting the least recently stored."""

    kind = "disk"

    def __init__(self, directory: str | os.PathLike, *, max_bytes: int,
                 clock: Callable[[], float] = time.time):
        """Open (and create if missing) the store in `directory`.

        :raises StorageError: when the directory cannot be created or opened.
        """
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.directory = os.path.abspath(os.fspath(directory))
        self.max_bytes = max_bytes
        self._clock = clock
        # The size of the last image kept for ever that did not fit (0: none), for `ping`.
        self._refused = 0
        with self._errors("open"):
            # Writes run on the cache's own thread (storage/diskcaches.py), so the threads that
            # generate images open no SQLite connection. Reads stay on the calling thread: a
            # hand-off to another thread costs 50-85 us of CPU on a VM, a fifth of serving an
            # image, and only the threads that serve images open a (read) connection.
            self._shared = OwnThreadsCache(
                self.directory, disk=_ImageDisk, timeout=LOCK_TIMEOUT, size_limit=max_bytes,
                # Least recently stored, not least recently used: LRU would turn every read
                # into a write transaction on the shared SQLite file.
                eviction_policy="least-recently-stored")

    def put(self, key: str, data: bytes, content_type: str, ttl: int) -> StoredImage:
        """Store `data` under `key` for `ttl` seconds (KEEP_FOREVER: for ever).

        :raises StorageFull: when the disk (or quota) is full, the image exceeds the bound, or
            an image kept for ever would pass it.
        :raises StorageError: when the directory is not writable or is locked too long.
        """
        item = new_entry(data, content_type, ttl, self._clock(), self.max_bytes)
        tag = json.dumps({"type": content_type, "created": item.created, "expires": item.expires})
        if ttl != KEEP_FOREVER:
            with self._errors("store an image in"):
                # `expire` lets diskcache drop the entry by itself (judged by its wall clock);
                # `get` judges the tag's `expires` by our clock, so a fake clock works in tests.
                self._shared.write(lambda cache: cache.set(key, item.data, expire=ttl, tag=tag))
            return item

        def keep(cache: diskcache.Cache) -> bool:
            with cache.transact():
                if not self._fits(cache, len(item.data)):
                    return False
                cache.set(key, item.data, expire=None, tag=tag)
                return True

        with self._errors("store an image in"):
            kept = self._shared.write(keep)
        if not kept:
            self._refused = len(item.data)
            raise kept_for_ever_full()
        return item

    def _fits(self, cache: diskcache.Cache, size: int) -> bool:
        """Whether `size` more bytes fit without evicting a live image (expired ones go first)."""
        if cache.volume() + size + FOREVER_SLACK <= self.max_bytes:
            return True
        cache.expire(now=self._clock())
        return cache.volume() + size + FOREVER_SLACK <= self.max_bytes

    def get(self, key: str) -> StoredImage | None:
        """Return the entry, or None when it is missing or expired.

        :raises StorageError: when the store cannot be read.
        """
        with self._errors("read an image from"):
            data, tag = self._shared.cache.get(key, default=None, tag=True)
        meta = self._live_meta(data, tag)
        if meta is None or not isinstance(data, bytes):
            return None
        return StoredImage(data, *meta)

    def open(self, key: str) -> ImageFile | None:
        """Return the entry opened for sending: images of 32 KB or more as their own file.

        :raises StorageError: when the store cannot be read.
        """
        with self._errors("read an image from"):
            # read=True hands out diskcache's own file (for values stored as files) rather than
            # its contents; eviction may unlink it meanwhile, which the open handle survives.
            value, tag = self._shared.cache.get(key, default=None, read=True, tag=True)
        meta = self._live_meta(value, tag)
        if meta is None:
            if hasattr(value, "close"):
                value.close()
            return None
        if isinstance(value, bytes):
            return ImageFile(io.BytesIO(value), len(value), *meta)
        with self._errors("read an image from"):
            size = os.fstat(value.fileno()).st_size
        return ImageFile(value, size, *meta)

    def _live_meta(self, value, tag) -> tuple[str, float, float] | None:
        """The (content type, created, expires) of a live entry written by put(), else None."""
        if value is None or not isinstance(tag, str):
            return None
        try:
            meta = json.loads(tag)
            found = (str(meta["type"]), float(meta["created"]), float(meta["expires"]))
        except (ValueError, KeyError, TypeError):
            return None  # not written by put(): treat as missing rather than serve garbage
        return found if found[2] > self._clock() else None

    def delete(self, key: str) -> None:
        """Remove the entry if present.

        :raises StorageError: when the store cannot be written.
        """
        with self._errors("delete an image from"):
            self._shared.write(lambda cache: cache.delete(key))

    def ping(self) -> None:
        """Check that an image could be written now: free space, then a tiny write and delete.

        :raises StorageFull: when the disk has (almost) no free space, or the last image kept
            for ever that was refused would still not fit.
        :raises StorageError: when the directory is missing, read-only or locked.
        """
        with self._errors("check"):
            if shutil.disk_usage(self.directory).free < MIN_FREE_BYTES:
                raise StorageFull(FULL_MESSAGE)
            refused = self._refused
            if refused and not self._shared.write(lambda cache: self._fits(cache, refused)):
                # The last image kept for ever that was refused would still not fit.
                raise kept_for_ever_full()
            self._refused = 0
            # A real write catches a read-only mount or database that os.access() would miss
            # (and os.access() says yes to root regardless of the mode bits).
            self._shared.write(lambda cache: (cache.set(PING_KEY, b"", expire=60),
                                              cache.delete(PING_KEY)))

    def close(self) -> None:
        """Close the SQLite connections (they reopen when the store is used again)."""
        self._shared.close()

    def __repr__(self) -> str:
        return f"DiskStore({self.directory!r}, max_bytes={self.max_bytes})"

    def _nearly_full(self) -> bool:
        try:
            return shutil.disk_usage(self.directory).free < MIN_FREE_BYTES
        except OSError:
            return False

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn diskcache, SQLite and OS errors into StorageError / StorageFull."""
        # The directory stays out of messages that reach clients; the log has it.
        where = f"Image storage (disk) could not {action} its directory"
        try:
            yield
        except StorageError:
            raise
        except diskcache.Timeout as exc:
            # diskcache raises Timeout (without the cause) whenever SQLite refuses to begin a
            # write: a lock held too long, but also a read-only or full database.
            if self._nearly_full():
                raise StorageFull(FULL_MESSAGE) from exc
            raise StorageError(
                f"{where}: the database stayed locked or refused writes. Check that the "
                "directory is writable, on a local filesystem (not NFS), and has free space."
            ) from exc
        except sqlite3.OperationalError as exc:
            text = str(exc).lower()
            if "full" in text:
                raise StorageFull(FULL_MESSAGE) from exc
            if "readonly" in text or "read-only" in text:
                raise StorageError(
                    f"{where}: it is read-only. Make it writable by the user running the service."
                ) from exc
            raise StorageError(
                f"{where}: {exc}. Check that the directory exists, is writable by the service "
                "and is on a local filesystem.") from exc
        except sqlite3.DatabaseError as exc:
            raise StorageError(
                f"{where}: the database is damaged ({exc}). Stop the service and delete the "
                "directory: it only holds temporary images.") from exc
        except OSError as exc:
            if exc.errno in _FULL_ERRNOS:
                raise StorageFull(FULL_MESSAGE) from exc
            reason = exc.strerror or str(exc)
            if exc.errno in _ACCESS_ERRNOS:
                raise StorageError(
                    f"{where}: {reason}. Make the directory writable by the user running the "
                    "service, or point STORAGE_URL elsewhere.") from exc
            raise StorageError(
                f"{where}: {reason}. Check the directory and its filesystem.") from exc
