"""Provider health: a provider that keeps failing is skipped for a while, then tried again.

    ok        failures in a row (fallback-class ones: capacity, quota, rate limit, 5xx,
              timeout) are counted; a success forgets them
    skipped   PROVIDER_FAILURE_LIMIT failures in a row: skipped for PROVIDER_RETRY_SECONDS,
              while its models' alternatives draw (the pipeline's order of attempts)
    trial     the wait is over: the next request tries it; a success restores it, a failure
              skips it again at once (the count in a row is still at the limit)

The state lives in the counter store (storage/marks.py), so every instance skips the same
provider. It fails open: counters that cannot be reached mean healthy (logged once), since
skipping a provider on a guess would refuse work that might succeed.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Callable

from ..storage.marks import Marks

log = logging.getLogger(__name__)

OK = "ok"


class ProviderHealth:
    """Counts each provider's failures in a row and says which to skip now."""

    def __init__(self, marks: Marks, *, limit: int, retry_seconds: float,
                 clock: Callable[[], float] = time.time):
        self.marks = marks
        self.limit = limit                  # failures in a row that skip a provider; 0: never
        self.retry_seconds = retry_seconds
        self.clock = clock
        self._unreachable = False           # logged once per outage of the counters
        self._lock = threading.Lock()

    def usable(self, provider: str) -> bool:
        """Whether `provider` may be tried now: not skipped, or its wait is over."""
        return self.skipped_for(provider) == 0

    def skipped_for(self, provider: str) -> int:
        """Whole seconds `provider` is still skipped; 0 when it may be tried."""
        if self.limit <= 0:
            return 0
        until = self._ask(lambda: self.marks.get(_skip(provider)))
        if not until:
            return 0
        return max(0, math.ceil(until / 1000 - self.clock()))

    def failed(self, provider: str) -> None:
        """Count one fallback-class failure; the limit-th in a row skips the provider."""
        if self.limit <= 0:
            return
        # The count outlives a few waits, so a provider that fails on its trial is skipped again.
        count = self._ask(lambda: self.marks.incr(_failures(provider), self.retry_seconds * 4))
        if count is not None and count >= self.limit:
            until = int((self.clock() + self.retry_seconds) * 1000)
            if self._ask(lambda: self.marks.put(_skip(provider), until, self.retry_seconds),
                         done=True):
                log.warning("provider %s skipped for %gs after %d failures in a row", provider,
                            self.retry_seconds, count)

    def succeeded(self, provider: str) -> None:
        """A success: forget the failures in a row and any skip (the provider works again)."""
        if self.limit <= 0:
            return
        self._ask(lambda: self.marks.delete(_failures(provider)))
        self._ask(lambda: self.marks.delete(_skip(provider)))

    def state(self, provider: str) -> str:
        """For /readyz: "ok", or "skipped for N s after K failures"."""
        wait = self.skipped_for(provider)
        if not wait:
            return OK
        count = self._ask(lambda: self.marks.get(_failures(provider))) or self.limit
        return f"skipped for {wait} s after {count} failures"

    def _ask(self, call: Callable[[], object], done: bool = False):
        """Run one marks call; unreachable counters mean healthy (None, or False for `done`)."""
        try:
            result = call()
        except Exception as exc:  # noqa: BLE001 - any store failure (Redis, disk) fails open
            with self._lock:
                first, self._unreachable = not self._unreachable, True
            if first:
                log.warning("provider health unavailable (counters unreachable: %s); every "
                            "provider counts as healthy until they are back",
                            type(exc).__name__)
            return False if done else None
        with self._lock:
            if self._unreachable:
                log.info("provider health available again")
            self._unreachable = False
        return True if done else result


def _failures(provider: str) -> str:
    return f"provider:{provider}:failures"


def _skip(provider: str) -> str:
    return f"provider:{provider}:skip-until"
