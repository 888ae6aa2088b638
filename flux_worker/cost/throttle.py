"""Rate limits per API key (shared by all processes and hosts) and a per-process in-flight cap.

Counting is done by the `limits` library in the counter store (COUNTERS_URL, by default beside
the images), so every gunicorn process and every host behind a load balancer agrees: `memory://`
(one process), `redis://` (limits' own Redis storage) and disk, for which `limits` has no storage,
so a small one on diskcache is registered here (diskcache's transactions make the count atomic
across processes).
"""

from __future__ import annotations

import functools
import hashlib
import math
import threading
import time

from limits import parse_many
from limits.storage import MemoryStorage, Storage
from limits.strategies import FixedWindowRateLimiter

from ..errors import Overloaded, RateLimited
from ..storage.counters import directory, redis_client
from ..storage.location import DISK, REDIS, CountersLocation
from .health import CountersHealth


class DiskcacheStorage(Storage):
    """A `limits` storage on diskcache: fixed-window counters shared by one host's processes.

    Its calls run on the cache's own threads (storage/diskcaches.py), as the image store's do.
    """

    STORAGE_SCHEME = ["flux+disk"]

    def __init__(self, uri: str, wrap_exceptions: bool = False, **options):
        from ..storage.diskcaches import OwnThreadsCache

        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self.shared = OwnThreadsCache(uri.split("://", 1)[1], timeout=10)

    @property
    def base_exceptions(self):
        import sqlite3
        return (sqlite3.Error, OSError)

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        def incr(cache) -> int:
            with cache.transact():
                if cache.get(key) is None:
                    cache.set(key, amount, expire=expiry)
                    cache.set(key + ":expires", time.time() + expiry, expire=expiry)
                    return amount
                return cache.incr(key, amount)

        return self.shared.write(incr)

    def get(self, key: str) -> int:
        return int(self.shared.read(lambda cache: cache.get(key, 0)))

    def get_expiry(self, key: str) -> float:
        return float(self.shared.read(lambda cache: cache.get(key + ":expires", time.time())))

    def check(self) -> bool:
        try:
            self.shared.read(lambda cache: cache.get("__ping__"))
            return True
        except (OSError, Exception):
            return False

    def reset(self) -> int | None:
        return self.shared.write(lambda cache: cache.clear())

    def clear(self, key: str) -> None:
        self.shared.write(lambda cache: (cache.delete(key), cache.delete(key + ":expires")))


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
    """Per-identity limits such as `30/minute;500/day`, counted in images (RateLimited past them).

    When the counter store is unreachable the limiter fails closed (503 storage_error): counts
    that cannot be kept protect nothing, and an open door would let any caller spend the
    upstream quota while Redis is down. `health` remembers the outage (shared with the budgets,
    which count in the same store), so the requests of an outage are refused without a wait.
    """

    def __init__(self, spec: str, counters: CountersLocation,
                 health: CountersHealth | None = None):
        self.items = _items(spec)            # RATE_LIMIT's; empty: only run-time keys' own
        self.storage = limits_storage(counters)
        self.strategy = FixedWindowRateLimiter(self.storage)
        self.health = health or CountersHealth()

    def test(self, identity: str, own: str | None = None) -> None:
        """Raise RateLimited when `identity` could not take one more image now; count nothing.

        `own`: a run-time key's own limit, which replaces RATE_LIMIT for it.
        """
        ident = _digest(identity)
        for item in self._for(own):
            with self.health.guard("rate limit"):
                allowed = self.strategy.test(item, "flux-worker", ident)
            if not allowed:
                raise self._refusal(item, ident)

    def hit(self, identity: str, cost: int = 1, own: str | None = None) -> None:
        """Count `cost` images for `identity`; raise RateLimited when a limit would be exceeded."""
        ident = _digest(identity)
        for item in self._for(own):
            with self.health.guard("rate limit"):
                allowed = self.strategy.hit(item, "flux-worker", ident, cost=cost)
            if not allowed:
                raise self._refusal(item, ident)

    def _for(self, own: str | None) -> tuple:
        return _items(own) if own else self.items

    def _refusal(self, item, ident: str) -> RateLimited:
        with self.health.guard("rate limit"):
            reset = self.strategy.get_window_stats(item, "flux-worker", ident).reset_time
        retry = max(1, math.ceil(reset - time.time()))
        return RateLimited(
            f"Rate limit reached for this API key: {item}. Try again in {retry} seconds.",
            retry_after=retry)


@functools.lru_cache(maxsize=256)
def _items(spec: str) -> tuple:
    """The limits of a spec such as `30/minute;500/day` (checked where it was read)."""
    return tuple(parse_many(spec.replace(";", ","))) if spec else ()


def _digest(identity: str) -> str:
    # The key itself never reaches the storage, only a digest of it.
    return hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()[:24]


class InflightGate:
    """At most `limit` images generated at once in this process; 0 means no cap."""

    def __init__(self, limit: int, retry_after: int = 5):
        self.limit = limit
        self.retry_after = retry_after
        self._used = 0
        self._lock = threading.Lock()

    @property
    def in_use(self) -> int:
        """Slots taken now."""
        return self._used

    def acquire(self, count: int = 1) -> None:
        """Take `count` slots or raise Overloaded (503) at once: an unbounded queue helps nobody."""
        with self._lock:
            if self.limit and self._used + count > self.limit:
                if count > self.limit:
                    message = (f"This server generates at most {self.limit} images at once; ask "
                               f"for {self.limit} or fewer (n).")
                else:
                    message = (f"This server is already running its maximum of {self.limit} "
                               f"generations. Try again in {self.retry_after} seconds.")
                raise Overloaded(message, retry_after=self.retry_after)
            self._used += count

    def release(self, count: int = 1) -> None:
        """Give `count` slots back."""
        with self._lock:
            self._used = max(0, self._used - count)
