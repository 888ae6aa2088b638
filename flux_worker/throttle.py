"""Rate limits per API key (shared by all processes and hosts) and a per-process in-flight cap.

Counting is done by the `limits` library in the counter store (COUNTERS_URL, by default beside
the images), so every gunicorn process and every host behind a load balancer agrees: `memory://`
(one process), `redis://` (limits' own Redis storage) and disk, for which `limits` has no storage,
so a small one on diskcache is registered here (diskcache's transactions make the count atomic
across processes).
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from limits import parse_many
from limits.storage import MemoryStorage, Storage
from limits.strategies import FixedWindowRateLimiter

from .errors import Overloaded, RateLimited
from .storage.counters import directory, redis_client
from .storage.location import DISK, REDIS, CountersLocation

log = logging.getLogger("flux_worker.throttle")


class DiskcacheStorage(Storage):
    """A `limits` storage on diskcache: fixed-window counters shared by one host's processes."""

    STORAGE_SCHEME = ["flux+disk"]

    def __init__(self, uri: str, wrap_exceptions: bool = False, **options):
        import diskcache

        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self.cache = diskcache.Cache(uri.split("://", 1)[1], timeout=10)

    @property
    def base_exceptions(self):
        import sqlite3
        return (sqlite3.Error, OSError)

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        with self.cache.transact():
            if self.cache.get(key) is None:
                self.cache.set(key, amount, expire=expiry)
                self.cache.set(key + ":expires", time.time() + expiry, expire=expiry)
                return amount
            return self.cache.incr(key, amount)

    def get(self, key: str) -> int:
        return int(self.cache.get(key, 0))

    def get_expiry(self, key: str) -> float:
        return float(self.cache.get(key + ":expires", time.time()))

    def check(self) -> bool:
        try:
            self.cache.get("__ping__")
            return True
        except (OSError, Exception):
            return False

    def reset(self) -> int | None:
        return self.cache.clear()

    def clear(self, key: str) -> None:
        self.cache.delete(key)
        self.cache.delete(key + ":expires")


def limits_storage(counters: CountersLocation) -> Storage:
    """The `limits` storage for COUNTERS_URL (by default beside the images: see location.py)."""
    if counters.scheme == REDIS:
        from limits.storage import RedisStorage

        # The pool of counters.redis_client, so the limiter gets its short timeouts.
        return RedisStorage(counters.url,
                            connection_pool=redis_client(counters).connection_pool)
    if counters.scheme == DISK:
        return DiskcacheStorage("flux+disk://" + directory(counters))
    return MemoryStorage()


class RateLimiter:
    """Per-identity limits such as `30/minute;500/day`, answered with RateLimited."""

    def __init__(self, spec: str, counters: CountersLocation):
        self.items = parse_many(spec.replace(";", ","))
        self.storage = limits_storage(counters)
        self.strategy = FixedWindowRateLimiter(self.storage)

    def hit(self, identity: str) -> None:
        """Count one request for `identity`; raise RateLimited when a limit is exceeded."""
        # The key itself never reaches the storage, only a digest of it.
        ident = hashlib.sha256(identity.encode()).hexdigest()[:24]
        for item in self.items:
            try:
                allowed = self.strategy.hit(item, "flux-worker", ident)
                reset = self.strategy.get_window_stats(item, "flux-worker", ident).reset_time
            except Exception as exc:  # counting must not take the service down with it
                log.warning("rate limit storage unavailable, not limiting: %s", type(exc).__name__)
                return
            if not allowed:
                retry = max(1, math.ceil(reset - time.time()))
                raise RateLimited(
                    f"Rate limit reached for this API key: {item}. Try again in {retry} seconds.",
                    retry_after=retry)


class InflightGate:
    """At most `limit` generations at once in this process; 0 means no cap."""

    def __init__(self, limit: int, retry_after: int = 5):
        self.limit = limit
        self.retry_after = retry_after
        self._slots = threading.BoundedSemaphore(limit) if limit else None

    def acquire(self) -> None:
        """Take a slot or raise Overloaded (503) at once: queueing without bound helps nobody."""
        if self._slots is not None and not self._slots.acquire(blocking=False):
            raise Overloaded(
                f"This server is already running its maximum of {self.limit} generations. "
                f"Try again in {self.retry_after} seconds.", retry_after=self.retry_after)

    def release(self) -> None:
        """Give a slot back."""
        if self._slots is not None:
            self._slots.release()

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold a slot for the duration of the block."""
        self.acquire()
        try:
            yield
        finally:
            self.release()
