"""Whether an image can be stored now, asked before a generation is admitted.

Paying for a generation that cannot be kept wastes the user's quota, so storage is checked first.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from ..errors import StorageError
from .base import ImageStore


class StoreHealth:
    """A cached answer to "can an image be stored now?", asked before every upstream call.

    Paying for a generation that cannot be kept wastes the user's quota, so storage is checked
    first; caching the answer keeps the check off the hot path (one ping per `ok_for` seconds),
    and a failure is remembered for `failed_for` seconds so an outage costs no ping per request.
    One request at a time pings: while it does, the others go by the last answer (or wait for
    this one when there is none yet). Letting every request of that moment ping made dozens of
    SQLite writes queue behind each other under load (docs/benchmarks.md).
    """

    def __init__(self, store: ImageStore, *, ok_for: float = 5.0, failed_for: float = 1.0,
                 clock: Callable[[], float] = time.monotonic):
        self.store = store
        self.ok_for = ok_for
        self.failed_for = failed_for
        self._clock = clock
        self._lock = threading.Lock()
        self._pinging = threading.Lock()
        self._checked = float("-inf")
        self._failure: StorageError | None = None

    def check(self) -> None:
        """Raise StorageError when storage is known to be, or now found to be, unusable."""
        now = self._clock()
        with self._lock:
            failure, age = self._failure, now - self._checked
        if failure is not None and age < self.failed_for:
            raise failure
        if failure is None and age < self.ok_for:
            return
        if not self._pinging.acquire(blocking=False):
            if age == float("inf"):        # no answer yet: wait for the one being fetched
                with self._pinging:
                    pass
                return self.check()
            if failure is not None:        # another request is pinging: the last answer holds
                raise failure
            return
        try:
            self.probe()
        finally:
            self._pinging.release()

    def probe(self) -> None:
        """Ping storage now (no cache) and remember the answer; raise StorageError on failure."""
        try:
            self.store.ping()
        except StorageError as exc:
            self.failed(exc)
            raise
        with self._lock:
            self._checked, self._failure = self._clock(), None

    def failed(self, exc: StorageError) -> None:
        """Remember that storage just failed (a write did), so the next requests skip upstream."""
        with self._lock:
            self._checked, self._failure = self._clock(), exc
