"""Where the history lives: each owner's entries newest first, and everyone's for the admin.

Kept where COUNTERS_URL keeps counters, so every instance that shares them shares the history:
Redis (one sorted set per owner and one of everyone's, by time; each entry a JSON string that
expires with its image), a diskcache directory of its own (one host) or memory (one process).
An entry expires with its image; an index is kept as long as its last entry and loses its
expired ids when it is listed. An owner keeps at most `cap` entries (the oldest go, with their
index rows), and everyone's index the newest ALL_CAP. Errors propagate: History decides.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Protocol

from ..storage.counters import directory, redis_client
from ..storage.location import DISK, REDIS, CountersLocation
from .cells import Cells, CellStore, DiskCells, MemoryCells
from .entries import HistoryEntry, Page, UnknownAfter

PREFIX = "flux-worker:history:"
ALL = PREFIX + "all"
OWNER_CAP = 1000
# Everyone's index is the admin's window: the newest this many, whatever their owners keep.
ALL_CAP = 5000


def entry_key(entry_id: str) -> str:
    """Where one entry is kept."""
    return PREFIX + "entry:" + entry_id


def owner_index(owner: str | None) -> str:
    """The index of one owner's entries (None: everyone's)."""
    return ALL if owner is None else PREFIX + "owner:" + owner


class HistoryStore(Protocol):
    """Entries by owner, newest first."""

    def add(self, entry: HistoryEntry) -> None:
        """Keep `entry` until it expires; drop the owner's oldest beyond the cap."""

    def get(self, entry_id: str) -> HistoryEntry | None:
        """The entry, or None when unknown or expired."""

    def page(self, owner: str | None, limit: int, after: str | None) -> Page:
        """Up to `limit` live entries of `owner` (None: everyone's) older than `after`.

        :raises UnknownAfter: `after` is not in that listing.
        """

    def remove(self, entry: HistoryEntry) -> None:
        """Forget `entry` (not its images)."""

    def close(self) -> None:
        """Release connections and files."""


class IndexedHistory:
    """The history in cells (memory or a diskcache): each index a list of ids, oldest first."""

    def __init__(self, cells: CellStore, cap: int = OWNER_CAP,
                 clock: Callable[[], float] = time.time):
        self.cells = cells
        self.cap = cap
        self._clock = clock

    def add(self, entry: HistoryEntry) -> None:
        def add(c: Cells) -> None:
            c.set(entry_key(entry.id), entry.to_json(), entry.ttl(self._clock()))
            ids, until = c.get(owner_index(entry.owner)) or ([], 0)
            ids = ids + [entry.id]
            dropped = set(ids[:-self.cap])
            for old in dropped:
                c.delete(entry_key(old))
            self._keep(c, owner_index(entry.owner), ids[-self.cap:],
                       _later(until, entry.expires_at))
            everyone, until = c.get(ALL) or ([], 0)
            everyone = [i for i in everyone if i not in dropped] + [entry.id]
            self._keep(c, ALL, everyone[-ALL_CAP:], _later(until, entry.expires_at))

        self.cells.run(add)

    def get(self, entry_id: str) -> HistoryEntry | None:
        raw = self.cells.run(lambda c: c.get(entry_key(entry_id)))
        return None if raw is None else HistoryEntry.from_json(raw)

    def page(self, owner: str | None, limit: int, after: str | None) -> Page:
        def page(c: Cells) -> Page:
            ids, until = c.get(owner_index(owner)) or ([], 0)
            newest_first: list[str] = ids[::-1]
            start = 0
            if after is not None:
                if after not in ids:
                    raise UnknownAfter(after)
                start = newest_first.index(after) + 1
            live: list[HistoryEntry] = []
            gone = set()
            for entry_id in newest_first[start:]:
                raw = c.get(entry_key(entry_id))
                if raw is None:
                    gone.add(entry_id)
                    continue
                live.append(HistoryEntry.from_json(raw))
                if len(live) > limit:
                    break
            if gone:
                self._keep(c, owner_index(owner), [i for i in ids if i not in gone], until)
            return Page(live[:limit], len(live) > limit)

        return self.cells.run(page)

    def remove(self, entry: HistoryEntry) -> None:
        def remove(c: Cells) -> None:
            c.delete(entry_key(entry.id))
            for index in (owner_index(entry.owner), ALL):
                ids, until = c.get(index) or ([], 0)
                self._keep(c, index, [i for i in ids if i != entry.id], until)

        self.cells.run(remove)

    def _keep(self, c: Cells, index: str, ids: list[str], until: float | None) -> None:
        """Write an index that lives `until` (its last entry's expiry; gone when empty)."""
        if not ids:
            c.delete(index)
            return
        c.set(index, (ids, until), None if until is None else max(0.001, until - self._clock()))

    def close(self) -> None:
        self.cells.close()


# Add an id to an index that lives as long as its last entry: its expiry only ever moves later
# (PEXPIRE's GT option would say so, but needs Redis 7).
_INDEX_SCRIPT = """
local fresh = redis.call('EXISTS', KEYS[1]) == 0
local before = redis.call('PTTL', KEYS[1])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
local ttl = tonumber(ARGV[3])
if ttl < 0 then
  redis.call('PERSIST', KEYS[1])
elseif fresh or (before >= 0 and before < ttl) then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
"""


class RedisHistory:
    """The history in Redis: sorted sets of ids by time, entries as expiring JSON strings."""

    def __init__(self, location: CountersLocation, cap: int = OWNER_CAP,
                 clock: Callable[[], float] = time.time):
        # The counters' client: short timeouts, so a hung Redis cannot hold a generation.
        self.client = redis_client(location)
        self.cap = cap
        self._clock = clock
        self._index = self.client.register_script(_INDEX_SCRIPT)

    def add(self, entry: HistoryEntry) -> None:
        ttl = entry.ttl(self._clock())
        pipe = self.client.pipeline()
        pipe.set(entry_key(entry.id), entry.to_json(),
                 px=None if ttl is None else max(1, int(ttl * 1000)))
        for index in (owner_index(entry.owner), ALL):
            self._index(keys=[index], args=[entry.id, entry.created,
                                            -1 if ttl is None else max(1, int(ttl * 1000))],
                        client=pipe)
        pipe.zremrangebyrank(ALL, 0, -(ALL_CAP + 1))
        pipe.zrange(owner_index(entry.owner), 0, -(self.cap + 1))
        dropped = [i.decode() for i in pipe.execute()[-1]]
        if dropped:
            pipe = self.client.pipeline()
            pipe.delete(*(entry_key(i) for i in dropped))
            pipe.zrem(owner_index(entry.owner), *dropped)
            pipe.zrem(ALL, *dropped)
            pipe.execute()

    def get(self, entry_id: str) -> HistoryEntry | None:
        raw = self.client.get(entry_key(entry_id))
        return None if raw is None else HistoryEntry.from_json(raw)

    def page(self, owner: str | None, limit: int, after: str | None) -> Page:
        index = owner_index(owner)
        start = 0
        if after is not None:
            rank = self.client.zrevrank(index, after)
            if rank is None:
                raise UnknownAfter(after)
            start = int(rank) + 1  # type: ignore[arg-type]
        live: list[HistoryEntry] = []
        while len(live) <= limit:
            ids = [i.decode() for i in self.client.zrevrange(  # type: ignore[union-attr]
                index, start, start + limit - len(live))]
            if not ids:
                break
            raws = self.client.mget([entry_key(i) for i in ids])
            gone = [i for i, raw in zip(ids, raws, strict=True) if raw is None]
            live += [HistoryEntry.from_json(raw) for raw in raws if raw is not None]
            if gone:
                self.client.zrem(index, *gone)    # expired: the ranks after them move up
            start += len(ids) - len(gone)
        return Page(live[:limit], len(live) > limit)

    def remove(self, entry: HistoryEntry) -> None:
        pipe = self.client.pipeline()
        pipe.delete(entry_key(entry.id))
        pipe.zrem(owner_index(entry.owner), entry.id)
        pipe.zrem(ALL, entry.id)
        pipe.execute()

    def close(self) -> None:
        self.client.close()


def _later(until: float | None, expires_at: int | None) -> float | None:
    """The later of two expiries (None: never)."""
    return None if until is None or expires_at is None else max(until, expires_at)


def history_from_location(location: CountersLocation, cap: int = OWNER_CAP) -> HistoryStore:
    """The history where COUNTERS_URL keeps counters; on disk in a diskcache of its own."""
    if location.scheme == REDIS:
        return RedisHistory(location, cap)
    if location.scheme == DISK:
        return IndexedHistory(DiskCells(os.path.join(directory(location), "history")), cap)
    return IndexedHistory(MemoryCells(), cap)
