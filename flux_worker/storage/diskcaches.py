"""A diskcache Cache whose calls can run on threads of its own: a few SQLite connections.

diskcache opens one SQLite connection for every thread that touches a Cache and keeps it as long
as the thread lives. gunicorn runs 256 threads per process, and sooner or later each of them
stores an image, settles a budget or counts a rate limit: measured ~0.3-0.4 MiB per connection,
which made each generation in flight cost ~0.8 MiB at 256 clients (docs/benchmarks.md). Calls
made through `write` and `read` run on the cache's own threads instead: one that writes, which
also makes the process's writers take turns in order rather than in SQLite's sleeping busy
handler (a store took seconds with a hundred threads writing at once), and two that read, so
that a write waiting for another process's lock never holds up a read. `cache` is the Cache
itself, for reads that must not pay the hand-off (serving images).
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, TypeVar

import diskcache

T = TypeVar("T")
READERS = 2
log = logging.getLogger(__name__)


class OwnThreadsCache:
    """A diskcache.Cache whose calls run on a writer thread or one of two reader threads."""

    def __init__(self, directory: str, **settings: Any):
        """Open (and create if missing) the cache; raises what diskcache.Cache raises."""
        self.cache = diskcache.Cache(directory, **settings)
        self._lock = threading.Lock()
        self._pid = -1
        self._writer: ThreadPoolExecutor | None = None
        self._readers: ThreadPoolExecutor | None = None

    def write(self, call: Callable[[diskcache.Cache], T]) -> T:
        """Run `call(cache)` on the writer thread and return its result (or raise its error)."""
        return self._pools()[0].submit(call, self.cache).result()

    def write_later(self, call: Callable[[diskcache.Cache], object], what: str) -> None:
        """Queue `call(cache)` on the writer thread without waiting; a failure is logged.

        Calls run in order, so a later `write` (a read made through it, too) sees this one.
        """
        def logged(done: Future) -> None:
            error = done.exception()
            if error is not None:
                log.warning("%s failed: %s", what, type(error).__name__)

        self._pools()[0].submit(call, self.cache).add_done_callback(logged)

    def read(self, call: Callable[[diskcache.Cache], T]) -> T:
        """Run `call(cache)` on a reader thread and return its result (or raise its error)."""
        return self._pools()[1].submit(call, self.cache).result()

    def _pools(self) -> tuple[ThreadPoolExecutor, ThreadPoolExecutor]:
        writer, readers = self._writer, self._readers
        if self._pid == os.getpid() and writer is not None and readers is not None:
            return writer, readers
        with self._lock:
            # First use, after close(), or in a forked child, where the threads do not exist.
            if self._pid != os.getpid() or self._writer is None or self._readers is None:
                self._writer = ThreadPoolExecutor(1, thread_name_prefix="diskcache-write")
                self._readers = ThreadPoolExecutor(READERS, thread_name_prefix="diskcache-read")
                self._pid = os.getpid()
            return self._writer, self._readers

    def close(self) -> None:
        """End the cache's threads, closing their connections; the next call starts new ones."""
        with self._lock:
            pools = (self._writer, self._readers) if self._pid == os.getpid() else ()
            self._writer = self._readers = None
        for pool in pools:
            if pool is not None:
                pool.shutdown(wait=True)   # a thread's connection closes as the thread ends
        self.cache.close()                 # this thread's, if it opened one (start-up)
