"""Clients for the counter store (COUNTERS_URL): rate limits today, daily budgets tomorrow.

A ledger asks for what its CountersLocation names: `redis_client()` for redis://, or
`directory()` for a diskcache of its own on disk (memory:// counters stay in the ledger's process).

Counting sits in front of every generation, so a Redis that hangs (a paused process, a network
partition) must not hold requests: commands time out after half a second and a timed-out command
is not retried; callers fail closed and remember the outage (cost/health.py).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .location import DISK, REDIS, CountersLocation

if TYPE_CHECKING:  # redis stays an optional import until Redis counters are used
    import redis

# Seconds a counter command (and a connection attempt) may take before it fails. Measured: a
# budget's charge and settlement from 64 threads of one process at once (2 vCPUs) took 68 ms at
# the 99.9th percentile, 105 ms at most, mostly waiting for the GIL; half a second is five times
# that, and it is all a hung Redis costs the one request that finds it (cost/health.py).
REDIS_TIMEOUT = 0.5


def redis_client(location: CountersLocation) -> "redis.Redis":
    """A pooled, thread-safe Redis client with short timeouts; nothing connects yet.

    :raises ValueError: when `location` is not Redis or its URL is malformed (password hidden).
    """
    if location.scheme != REDIS:
        raise ValueError(f"counters at {location} are not in Redis")
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    try:
        return redis.Redis.from_url(
            location.url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT,
            health_check_interval=30,
            # One retry for a pooled connection that a Redis restart broke; a timeout is not
            # retried, so a hung Redis costs a request at most REDIS_TIMEOUT per command.
            retry=Retry(NoBackoff(), retries=1, supported_errors=(redis.ConnectionError,)))
    except ValueError:
        raise ValueError(f"invalid Redis URL for counters: {location}") from None


def directory(location: CountersLocation) -> str:
    """The directory of a disk counter store, created if missing.

    :raises ValueError: when `location` is not on disk.
    :raises OSError: when the directory cannot be created.
    """
    if location.scheme != DISK:
        raise ValueError(f"counters at {location} are not on disk")
    os.makedirs(location.path, exist_ok=True)
    return location.path
