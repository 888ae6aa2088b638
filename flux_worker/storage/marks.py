"""Marks: small named integers that expire, kept in the counter store (COUNTERS_URL).

What several instances must agree on for a while, not per day: a provider's failures in a row
and until when it is skipped (generation/provider_health.py). The day counters of the budgets
(cost/ledgers.py) are the wrong shape for this: they never expire early and cannot be deleted.

Redis when the counters are shared, a diskcache directory of its own (one host) or memory (one
process) otherwise, as for the ledgers. Errors propagate: the caller decides to fail open.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Callable, Protocol

from .counters import directory, redis_client
from .location import DISK, REDIS, CountersLocation

_PREFIX = "flux-worker:mark:"


class Marks(Protocol):
    """Named integers, each forgotten `ttl` seconds after it was last set or added to."""

    def get(self, name: str) -> int | None:
        """The mark's value, or None when it is not set (or has expired)."""

    def incr(self, name: str, ttl: float) -> int:
        """Add one (from 0 when unset) and keep it `ttl` seconds more; return the new value."""

    def put(self, name: str, value: int, ttl: float) -> None:
        """Set the mark for `ttl` seconds."""

    def delete(self, name: str) -> None:
        """Forget the mark."""

    def close(self) -> None:
        """Release connections and files."""


class MemoryMarks:
    """Marks in this process (COUNTERS_URL=memory://); `clock` for tests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._marks: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> int | None:
        with self._lock:
            return self._live(name)

    def incr(self, name: str, ttl: float) -> int:
        with self._lock:
            value = (self._live(name) or 0) + 1
            self._marks[name] = (value, self._clock() + ttl)
            return value

    def put(self, name: str, value: int, ttl: float) -> None:
        with self._lock:
            self._marks[name] = (value, self._clock() + ttl)

    def delete(self, name: str) -> None:
        with self._lock:
            self._marks.pop(name, None)

    def _live(self, name: str) -> int | None:
        found = self._marks.get(name)
        if found is None or found[1] <= self._clock():
            self._marks.pop(name, None)
            return None
        return found[0]

    def close(self) -> None:
        return None


class DiskMarks:
    """Marks in a diskcache directory, shared by every process of one host."""

    def __init__(self, path: str):
        from .diskcaches import OwnThreadsCache

        self.shared = OwnThreadsCache(path, timeout=10)

    def get(self, name: str) -> int | None:
        value = self.shared.read(lambda cache: cache.get(_PREFIX + name))
        return None if value is None else int(value)

    def incr(self, name: str, ttl: float) -> int:
        def incr(cache) -> int:
            with cache.transact():
                value = int(cache.get(_PREFIX + name) or 0) + 1
                cache.set(_PREFIX + name, value, expire=ttl)
                return value

        return self.shared.write(incr)

    def put(self, name: str, value: int, ttl: float) -> None:
        self.shared.write(lambda cache: cache.set(_PREFIX + name, value, expire=ttl))

    def delete(self, name: str) -> None:
        self.shared.write(lambda cache: cache.delete(_PREFIX + name))

    def close(self) -> None:
        self.shared.close()


class RedisMarks:
    """Marks as Redis keys with an expiry, shared by every host."""

    def __init__(self, location: CountersLocation):
        # The counters' client: short timeouts, so a hung Redis cannot hold a generation.
        self.client = redis_client(location)

    def get(self, name: str) -> int | None:
        value = self.client.get(_PREFIX + name)
        return None if value is None else int(value)

    def incr(self, name: str, ttl: float) -> int:
        pipe = self.client.pipeline()
        pipe.incr(_PREFIX + name)
        pipe.pexpire(_PREFIX + name, max(1, int(ttl * 1000)))
        value, _ = pipe.execute()
        return int(value)

    def put(self, name: str, value: int, ttl: float) -> None:
        self.client.set(_PREFIX + name, value, px=max(1, int(ttl * 1000)))

    def delete(self, name: str) -> None:
        self.client.delete(_PREFIX + name)

    def close(self) -> None:
        self.client.close()


def marks_from_location(location: CountersLocation) -> Marks:
    """The marks where COUNTERS_URL keeps counters; on disk in a diskcache of their own."""
    if location.scheme == REDIS:
        return RedisMarks(location)
    if location.scheme == DISK:
        return DiskMarks(os.path.join(directory(location), "marks"))
    return MemoryMarks()
