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

from .base import KEEP_FOREVER, OpensFromMemory, StoredImage, kept_for_ever_full, new_entry


def _expires(_key: str, value: StoredImage, _now: float) -> float:
    return value.expires


def _size(value: StoredImage) -> int:
    return len(value.data)


class MemoryStore(OpensFromMemory):
    """An in-process store bounded by the total bytes of the images it holds.

    The least recently used image goes first when a new one does not fit; expired images go
    before any live one. An image kept for ever (KEEP_FOREVER) that does not fit is refused
    instead: images kept for ever are never evicted (base.py).
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
        # The size of the last image kept for ever that did not fit: until it would, `ping`
        # says the store is full, so generations stop before anything is bought upstream.
        self._refused = 0

    def put(self, key: str, data: bytes, content_type: str, ttl: int) -> StoredImage:
        """Store `data` under `key` for `ttl` seconds, evicting older images to make room.

        :raises StorageFull: when the image alone is larger than the whole store, or when an
            image kept for ever does not fit beside the others.
        """
        item = new_entry(data, content_type, ttl, self._clock(), self.max_bytes)
        with self._lock:
            if ttl == KEEP_FOREVER and not self._fits(len(item.data)):
                self._refused = len(item.data)
                raise kept_for_ever_full()
            self._cache[key] = item
        return item

    def _fits(self, size: int) -> bool:
        """Whether `size` more bytes fit without evicting a live image (lock held)."""
        self._cache.expire()
        return self._cache.currsize + size <= self.max_bytes

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
        """Raise StorageFull while the last image kept for ever that was refused would not fit.

        Memory is always reachable; only that kind of full can be known before a generation.
        """
        with self._lock:
            if self._refused and not self._fits(self._refused):
                raise kept_for_ever_full()
            self._refused = 0

    def close(self) -> None:
        """Drop every image."""
        with self._lock:
            self._cache.clear()

    def __repr__(self) -> str:
        return f"MemoryStore(max_bytes={self.max_bytes})"
