"""The activity log: the newest errors and refusals the API answered, for the admin page.

Each answered API error is one line: when, whose (short hash of the key, or "anonymous"),
method, path, status, code and the message the caller was shown (the public one: never a
secret, never a storage address). Only the newest CAP are kept, in the counter store, so every
instance appends to the same log. Appending never breaks or slows an answer: lines are written
by a thread of their own, so a hung Redis (half a second per command) or a busy SQLite delays
only the log; a failure is logged, and lines beyond BACKLOG waiting are dropped.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
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
BACKLOG = 1000     # lines waiting for the writer; more are dropped (the store is down)
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
    """Appends answered errors (on a writer thread of its own); reads the newest."""

    def __init__(self, store: ActivityStore, clock: Callable[[], float] = time.time):
        self.store = store
        self._clock = clock
        self._lock = threading.Lock()
        # Made per process on first use: a queue or thread from before a fork is no use after.
        self._pid = -1
        self._queue: queue.Queue[bytes | None] = queue.Queue(BACKLOG)
        self._writer: threading.Thread | None = None

    def append(self, owner: str, method: str, path: str, status: int, code: str | None,
               message: str) -> None:
        """Queue one line for the writer; never raises, never waits."""
        line = Activity(self._clock(), owner, _text(method, 16), _text(path, 300), status, code,
                        _text(message, 500))
        try:
            self._started().put_nowait(orjson.dumps(asdict(line)))
        except queue.Full:
            log.warning("activity log: %d lines wait for its store; a line was dropped", BACKLOG)
        except Exception as exc:  # a bug here must not turn an error answer into a 500
            log.warning("could not add to the activity log: %s", type(exc).__name__)

    def _started(self) -> "queue.Queue[bytes | None]":
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._queue = queue.Queue(BACKLOG)
                    self._writer = threading.Thread(target=self._write, args=(self._queue,),
                                                    name="activity-log", daemon=True)
                    self._writer.start()
                    self._pid = os.getpid()
        return self._queue

    def _write(self, lines: "queue.Queue[bytes | None]") -> None:
        while (line := lines.get()) is not None:
            try:
                self.store.push(line)
            except Exception as exc:  # any store's failure: the answers went out regardless
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
        """Write what is queued (a few seconds at most), then release connections and files."""
        if self._writer is not None and self._pid == os.getpid():
            try:
                self._queue.put(None, timeout=2)
            except queue.Full:
                pass
            self._writer.join(timeout=5)
        self.store.close()


def _text(value: str, limit: int) -> str:
    """At most `limit` characters that JSON can carry: a lone surrogate (a path's undecodable
    byte) is kept as its escape, as the log writes it."""
    return value[:limit].encode("utf-8", "backslashreplace").decode("utf-8")


def activity_from_location(location: CountersLocation) -> ActivityLog:
    """The activity log where COUNTERS_URL keeps counters; on disk in a diskcache of its own."""
    if location.scheme == REDIS:
        return ActivityLog(RedisActivity(location))
    if location.scheme == DISK:
        return ActivityLog(CellsActivity(DiskCells(os.path.join(directory(location),
                                                                "activity"))))
    return ActivityLog(CellsActivity(MemoryCells()))
