"""The activity log: the newest errors and refusals the API answered, for the admin page.

Each answered API error is one line: when, whose (short hash of the key, or "anonymous"),
method, path, status, code and the message the caller was shown (the public one: never a
secret, never a storage address). Only the newest CAP are kept, in the counter store, so every
instance appends to the same log. Appending never breaks an answer: a failure is logged.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from typing import Callable, Protocol

import orjson

from ..errors import APIError, Cancelled, public_error
from ..storage.counters import directory, redis_client
from ..storage.location import DISK, REDIS, CountersLocation
from .cells import Cells, CellStore, DiskCells, MemoryCells
from .entries import owner_of

log = logging.getLogger(__name__)

CAP = 200
_KEY = "flux-worker:activity"


@dataclass(frozen=True)
class Activity:
    """One answered error."""

    time: float          # unix seconds
    owner: str           # short hash of the key, or "anonymous"
    method: str
    path: str
    status: int
    code: str | None
    message: str         # as the caller saw it


class ActivityStore(Protocol):
    """The newest CAP lines as JSON, newest first."""

    def push(self, line: bytes) -> None:
        """Add a line in front; keep only the newest CAP."""

    def newest(self, n: int) -> list[bytes]:
        """Up to `n` lines, newest first."""

    def close(self) -> None:
        """Release connections and files."""


class CellsActivity:
    """The log as one list in cells (memory or a diskcache)."""

    def __init__(self, cells: CellStore):
        self.cells = cells

    def push(self, line: bytes) -> None:
        def push(c: Cells) -> None:
            c.set(_KEY, [line, *(c.get(_KEY) or [])][:CAP], None)

        self.cells.run(push)

    def newest(self, n: int) -> list[bytes]:
        return list(self.cells.run(lambda c: c.get(_KEY) or []))[:n]

    def close(self) -> None:
        self.cells.close()


class RedisActivity:
    """The log as one Redis list, trimmed on every push."""

    def __init__(self, location: CountersLocation):
        self.client = redis_client(location)

    def push(self, line: bytes) -> None:
        pipe = self.client.pipeline()
        pipe.lpush(_KEY, line)
        pipe.ltrim(_KEY, 0, CAP - 1)
        pipe.execute()

    def newest(self, n: int) -> list[bytes]:
        return list(self.client.lrange(_KEY, 0, n - 1))  # type: ignore[arg-type]

    def close(self) -> None:
        self.client.close()


class ActivityLog:
    """Appends answered errors; reads the newest."""

    def __init__(self, store: ActivityStore, clock: Callable[[], float] = time.time):
        self.store = store
        self._clock = clock

    def append(self, owner: str, method: str, path: str, status: int, code: str | None,
               message: str) -> None:
        """Add one line; a failure is logged, never raised (the answer goes out regardless)."""
        line = Activity(self._clock(), owner, method[:16], path[:300], status, code,
                        message[:500])
        try:
            self.store.push(orjson.dumps(asdict(line)))
        except Exception as exc:  # any store's failure: the error answer must still go out
            log.warning("could not add to the activity log: %s", type(exc).__name__)

    def answered(self, key: str | None, method: str, path: str, exc: APIError) -> None:
        """Add the error `exc` answered to the caller of `key` (None: anonymous)."""
        if isinstance(exc, Cancelled):
            return    # nobody was answered: the client had gone
        # As an open caller reads it, whoever asked: the log is read elsewhere, by the admin,
        # and a storage error's host (or a URL's credentials) has no business there.
        shown = public_error(exc, behind_key=False)
        self.append(owner_of(key), method, path, shown.status, shown.code, shown.message)

    def newest(self, n: int = CAP) -> list[Activity]:
        """Up to `n` answered errors, newest first (raises what the store raises)."""
        return [Activity(**orjson.loads(raw)) for raw in self.store.newest(min(n, CAP))]

    def close(self) -> None:
        """Release connections and files."""
        self.store.close()


def activity_from_location(location: CountersLocation) -> ActivityLog:
    """The activity log where COUNTERS_URL keeps counters; on disk in a diskcache of its own."""
    if location.scheme == REDIS:
        return ActivityLog(RedisActivity(location))
    if location.scheme == DISK:
        return ActivityLog(CellsActivity(DiskCells(os.path.join(directory(location),
                                                                "activity"))))
    return ActivityLog(CellsActivity(MemoryCells()))
