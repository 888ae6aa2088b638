"""Admission: whether a generation may start now, and the ticket that ends its claim.

A generation is admitted when the caller is within its rate limit, this process has free
in-flight slots and the daily budgets have room for its estimated cost; all are counted in
images (an Images request with `n=4` is four). The ticket gives the slots and the unsettled
cost back exactly once, whoever ends the generation first: the view, the thread that runs a
stream, or the server closing an abandoned response. No Flask here.
"""

from __future__ import annotations

import threading
from typing import Callable

from .books import Books, Hold
from .terms import KeyTerms
from .throttle import InflightGate, RateLimiter


class Ticket:
    """The claim of one admitted generation on slots and neurons; released exactly once.

    `hold` is the budget reservation (None when nothing is priced): the pipeline settles each
    image's real neurons on it, and the release gives back what was not spent.
    """

    def __init__(self, release: Callable[[], None], hold: Hold | None = None):
        self._release = release
        self.hold = hold
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
        try:
            self._release()
        finally:
            if self.hold is not None:
                self.hold.close()

    def __enter__(self) -> "Ticket":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class Admission:
    """Rate limit per caller, in-flight slots per process and daily budgets, taken together."""

    def __init__(self, limiter: RateLimiter | None, gate: InflightGate,
                 books: Books | None = None):
        self.limiter = limiter
        self.gate = gate
        self.books = books

    def check(self, identity: str, terms: KeyTerms | None = None) -> None:
        """Raise RateLimited when `identity` is already over its limit; charge nothing.

        Cheap requests (a client's title request) are checked but not counted, so a caller
        over its limit is refused before any work is done on its text.
        """
        if self.limiter is not None:
            self.limiter.test(identity, terms.rate_limit if terms is not None else None)

    def admit(self, identity: str, images: int = 1, *, key: str | None = None,
              estimate: float | None = None, estimate_usd: float | None = None,
              terms: KeyTerms | None = None) -> Ticket:
        """Take `images` slots, charge the caller's limit and reserve `images` x the estimates.

        `key` is the caller's API key (budgets per key), `estimate` one image's neurons and
        `estimate_usd` its US dollars (None: not priced in that unit, none of its budgets
        applies; neither priced: nothing is reserved); `terms`: a run-time key's own rate
        limit and budgets, which replace the configured ones for it.

        :raises Overloaded: no free slots (503): nothing is charged.
        :raises RateLimited: over the limit (429): the slots are given back.
        :raises QuotaExceeded: over a daily budget (429): slots and count are given back.
        :raises StorageError: the counters of a rate limit or budget are unreachable (503).
        """
        self.gate.acquire(images)
        ticket = Ticket(lambda: self.gate.release(images))
        try:
            if self.limiter is not None:
                self.limiter.hit(identity, images,
                                 terms.rate_limit if terms is not None else None)
            if self.books is not None and (estimate is not None or estimate_usd is not None):
                ticket.hold = self.books.reserve(
                    key, None if estimate is None else estimate * images,
                    None if estimate_usd is None else estimate_usd * images, terms)
        except BaseException:
            ticket.release()
            raise
        return ticket
