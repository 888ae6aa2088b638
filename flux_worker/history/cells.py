"""Cells: a few keyed values that expire, read and changed together in one atomic step.

The history's indexes and the activity log need "read a list, change it, write it back"
without another thread or process in between. In memory a lock gives that; on disk a diskcache
transaction on the cache's own writer thread (storage/diskcaches.py) does. Redis has its own
shapes (sorted sets, lists) and does not use these.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Protocol, TypeVar

T = TypeVar("T")


class Cells(Protocol):
    """The values visible inside one atomic step."""

    def get(self, key: str) -> Any:
        """The value of `key`, or None when unset or expired."""

    def set(self, key: str, value: Any, ttl: float | None) -> None:
        """Set `key` for `ttl` seconds (None: for ever)."""

    def delete(self, key: str) -> None:
        """Forget `key`."""


class CellStore(Protocol):
    """Where cells live; `run` gives a step all of them, alone."""

    def run(self, step: Callable[[Cells], T]) -> T:
        """Run `step` atomically and return what it returns (or raise what it raises)."""

    def close(self) -> None:
        """Release connections and files."""


class MemoryCells:
    """Cells of this process (COUNTERS_URL=memory://); `clock` (unix seconds) for tests."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._values: dict[str, tuple[Any, float | None]] = {}
        self._lock = threading.Lock()

    def run(self, step: Callable[[Cells], T]) -> T:
        with self._lock:
            return step(self)

    def get(self, key: str) -> Any:
        found = self._values.get(key)
        if found is None:
            return None
        if found[1] is not None and found[1] <= self._clock():
            del self._values[key]
            return None
        return found[0]

    def set(self, key: str, value: Any, ttl: float | None) -> None:
        self._values[key] = (value, None if ttl is None else self._clock() + ttl)

    def delete(self, key: str) -> None:
        self._values.pop(key, None)

    def close(self) -> None:
        return None


class DiskCells:
    """Cells in a diskcache directory, shared by every process of one host."""

    def __init__(self, path: str):
        from ..storage.diskcaches import OwnThreadsCache

        self.shared = OwnThreadsCache(path, timeout=10)

    def run(self, step: Callable[[Cells], T]) -> T:
        def transact(cache: Any) -> T:
            with cache.transact():
                return step(_InCache(cache))

        return self.shared.write(transact)

    def close(self) -> None:
        self.shared.close()


class _InCache:
    """A diskcache.Cache seen as Cells (inside its transaction)."""

    def __init__(self, cache: Any):
        self._cache = cache

    def get(self, key: str) -> Any:
        return self._cache.get(key)

    def set(self, key: str, value: Any, ttl: float | None) -> None:
        self._cache.set(key, value, expire=ttl)

    def delete(self, key: str) -> None:
        self._cache.delete(key)
