"""Whether the counters (COUNTERS_URL) answer: budgets and rate limits fail closed, and fast.

A budget or a rate limit that cannot be counted protects nothing, so while its counters are
unreachable a generation is refused with 503 `storage_error` rather than let through uncounted.
Refusing must not cost a wait per request: a hung Redis makes every command wait its whole
timeout, so an outage, once seen, is remembered for `failed_for` seconds and the requests of that
time are refused at once. Then one request at a time tries the counters again (its own command
is the probe), while the others go by the last answer, as `storage/health.py` does for images.
No Flask here.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from ..errors import APIError, StorageError

log = logging.getLogger(__name__)

# Seconds a caller is asked to wait while the counters are unreachable.
COUNTERS_RETRY_AFTER = 5
# Seconds an outage is believed without asking again: one request per second waits for a hung
# Redis (at most REDIS_TIMEOUT), the others are refused in microseconds, and counters that are
# back are used again within a second, as for the image store (storage/health.py).
RECHECK_AFTER = 1.0

UNREACHABLE = ("The usage counters (COUNTERS_URL) are unreachable, so this request cannot be "
               "counted against its rate limit and budgets; nothing was sent to the image model. "
               "Try again in a few seconds.")


class CountersHealth:
    """The last known answer of the counters, shared by the budgets and the rate limiter."""

    def __init__(self, *, required: bool = True, failed_for: float = RECHECK_AFTER,
                 clock: Callable[[], float] = time.monotonic):
        # Whether generations need the counters (a budget or a rate limit counts there): only
        # then does an outage make the instance unready.
        self.required = required
        self.failed_for = failed_for
        self._clock = clock
        self._lock = threading.Lock()
        self._probing = threading.Lock()
        self._failed_at: float | None = None

    @property
    def down(self) -> bool:
        """Whether the counters failed last time they were used (and have not answered since)."""
        with self._lock:
            return self._failed_at is not None

    @contextmanager
    def guard(self, what: str) -> Iterator[None]:
        """Run a counter command; raise StorageError at once while an outage is remembered.

        Any failure of the command (Redis, SQLite, OS errors alike) becomes StorageError with
        a message that names no address, and is remembered; a success clears the outage.
        """
        with self._lock:
            failed_at = self._failed_at
        probing = False
        if failed_at is not None:
            if self._clock() - failed_at < self.failed_for:
                raise self._refusal()
            if not self._probing.acquire(blocking=False):
                raise self._refusal()          # another request is asking; the last answer holds
            probing = True
        try:
            yield
        except APIError:                       # the command's own answer (a 429), not a failure
            raise
        except Exception as exc:
            self.failed(what, exc)
            raise self._refusal() from exc
        else:
            self.answered()
        finally:
            if probing:
                self._probing.release()

    def probe(self, ping: Callable[[], object], what: str) -> None:
        """Ask the counters now, whatever is remembered (for /readyz); raise StorageError."""
        try:
            ping()
        except Exception as exc:
            self.failed(what, exc)
            raise self._refusal() from exc
        self.answered()

    def failed(self, what: str, exc: BaseException) -> None:
        """Remember that the counters just failed; log once per outage (the class, no address)."""
        with self._lock:
            first = self._failed_at is None
            self._failed_at = self._clock()
        if first:
            log.warning("counters unavailable (%s: %s): refusing generations that a budget or "
                        "rate limit must count until they answer", what, type(exc).__name__)

    def answered(self) -> None:
        """Remember that the counters answered."""
        with self._lock:
            back = self._failed_at is not None
            self._failed_at = None
        if back:
            log.warning("counters reachable again: generations are counted and admitted")

    @staticmethod
    def _refusal() -> StorageError:
        return StorageError(UNREACHABLE, retry_after=COUNTERS_RETRY_AFTER)
