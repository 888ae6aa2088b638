"""Images kept in this process's memory: fast, lost on restart, one process only.

Each gunicorn worker process has its own memory, so an image stored by one worker is not found
by another: use this backend with a single worker process (and many threads), or in tests.
`disk://` shares images between the processes of one host, `redis://` between hosts.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from cachetools import TLRUCache

from .base import OpensFromMemory, StoredImage, new_entry


def _expires(_key: str, value: StoredImage, _now: float) -> float:
    return value.expires


def _size(value: StoredImage) -> int:
    return len(value.data)


class MemoryStore(OpensFromMemory):
    """An in-process store bounded by the total bytes of the images it holds.

    The least recently used image goes first when a new one does not fit; expired images go
    before any live one.
    """

    kind = "memory"

    def __init__(self, *, max_bytes: int, clock: Callable[[], float] = time.time):
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.max_bytes = max_bytes
        self._clock = clock
        # TLRUCache, not TTLCache: TTLCache has one lifetime for the whole cache, while `put`
        # takes a ttl per image; TLRUCache reads each entry's own `expires`.
        self._cache: TLRUCache[str, StoredImage] = TLRUCache(
            maxsize=max_bytes, ttu=_expires, timer=clock, getsizeof=_size)
        # cachetools caches are not thread-safe, and gunicorn threads share this store.
        self._lock = threading.Lock()

    def put(self, key: str, data: bytes, content_type: str, ttl: int) -> StoredImage:
        """Store `data` under `key` for `ttl` seconds, evicting older images to make room.

        :raises StorageFull: when the image alone is larger than the whole store.
        """
        item = new_entry(data, content_type, ttl, self._clock(), self.max_bytes)
        with self._lock:
            self._cache[key] = item
        return item

    def get(self, key: str) -> StoredImage | None:
        """Return the entry, or None when it is missing or expired."""
        with self._lock:
            item = self._cache.get(key)
        if item is None or item.expires <= self._clock():
            return None
        return item

    def delete(self, key: str) -> None:
        """Remove the entry if present."""
        with self._lock:
            self._cache.pop(key, None)

    def ping(self) -> None:
        """Do nothing: memory is always reachable."""

    def close(self) -> None:
        """Drop every image."""
        with self._lock:
            self._cache.clear()

    def __repr__(self) -> str:
        return f"MemoryStore(max_bytes={self.max_bytes})"
