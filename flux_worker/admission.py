"""Admission: whether a generation may start now, and the ticket that ends its claim.

A generation is admitted when the caller is within its rate limit and this process has free
in-flight slots; both are counted in images (an Images request with `n=4` is four). The ticket
gives the slots back exactly once, whoever ends the generation first: the view, the thread that
runs a stream, or the server closing an abandoned response. No Flask here.
"""

from __future__ import annotations

import threading
from typing import Callable

from .throttle import InflightGate, RateLimiter


class Ticket:
    """The claim of one admitted generation on the in-flight slots; released exactly once."""

    def __init__(self, release: Callable[[], None]):
        self._release = release
        self._lock = threading.Lock()
        self._done = False

    @property
    def released(self) -> bool:
        """Whether the slots have been given back."""
        return self._done

    def release(self) -> None:
        """Give the slots back; later calls do nothing."""
        with self._lock:
            if self._done:
                return
            self._done = True
        self._release()

    def __enter__(self) -> "Ticket":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class Admission:
    """Rate limit per caller and in-flight slots per process, taken together."""

    def __init__(self, limiter: RateLimiter | None, gate: InflightGate):
        self.limiter = limiter
        self.gate = gate

    def check(self, identity: str) -> None:
        """Raise RateLimited when `identity` is already over its limit; charge nothing.

        Cheap requests (a client's title request) are checked but not counted, so a caller
        over its limit is refused before any work is done on its text.
        """
        if self.limiter is not None:
            self.limiter.test(identity)

    def admit(self, identity: str, images: int = 1) -> Ticket:
        """Take `images` slots and charge `images` to the caller's limit; return the ticket.

        :raises Overloaded: no free slots (503): nothing is charged.
        :raises RateLimited: over the limit (429): the slots are given back.
        :raises StorageError: the rate-limit counters are unreachable (503).
        """
        self.gate.acquire(images)
        ticket = Ticket(lambda: self.gate.release(images))
        if self.limiter is not None:
            try:
                self.limiter.hit(identity, images)
            except BaseException:
                ticket.release()
                raise
        return ticket
