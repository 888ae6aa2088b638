"""The cost ledger: named integer counters per UTC day, shared by every instance.

The ledger is a set of named counters per day (`service`, `key:<hash>`, `account:<id>`,
`model:<id>` in neurons; the same names after `usd:` in US dollars), kept where the rate limits
are kept so all processes and hosts agree: Redis, a diskcache directory (one host) or memory (one
process). Amounts are stored as whole numbers of a small unit (`Unit`), because Redis adds
integers exactly and floats would drift. API keys are never stored: only a short hash of each.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from typing import Mapping, Protocol

from ..storage.counters import directory, redis_client
from ..storage.location import DISK, REDIS, CountersLocation

MILLI = 1000                      # neuron counters hold milli-neurons
# Dollar counters hold nano-dollars: a milli-neuron costs exactly 11 of them at the paid rate
# ($0.011 per 1,000 neurons), so the dollars of a Workers AI image count without rounding, and a
# day's spend stays a whole number that Redis's Lua (doubles, exact to 2^53) adds exactly up to
# $9 million. Micro-dollars would round every schnell image ($0.0006336) by up to 0.1 %.
NANO = 1_000_000_000
# A day's counters outlive it: for late settlements, and for the admin page's last 30 days
# (cost/spend.py HISTORY_DAYS), with a day to spare so the oldest day shown is whole.
DAY_TTL = 32 * 86400
KEPT_DAYS = DAY_TTL // 86400
SERVICE = "service"
# The Redis key keeps its old name: the dollar counters are fields of the same daily hash, so
# an upgraded instance shares one transaction, and one day's counts, with the others.
_PREFIX = "flux-worker:neurons"


@dataclass(frozen=True)
class Unit:
    """What a counter counts: its name in answers, its ledger integers per unit, its prefix."""

    name: str                     # "neurons" or "usd", as in /v1/usage's field names
    scale: int                    # ledger integers per one of the unit
    prefix: str                   # before a counter's name: "" (neurons) or "usd:"

    def counter(self, name: str) -> str:
        """The ledger name of counter `name` (`service`, `key:<hash>`) in this unit."""
        return self.prefix + name

    def whole(self, amount: float) -> int:
        """`amount` of this unit as the ledger's integer."""
        return int(round(amount * self.scale))


NEURONS = Unit("neurons", MILLI, "")
USD = Unit("usd", NANO, "usd:")


def unit_of(counter: str) -> Unit:
    """The unit a ledger counter counts in, by its name."""
    return USD if counter.startswith(USD.prefix) else NEURONS


def short_hash(secret: str) -> str:
    """A short, stable, non-reversible name for an API key (12 hex digits of its SHA-256)."""
    return hashlib.sha256(secret.encode()).hexdigest()[:12]


def short_account(account_id: str) -> str:
    """An account id shortened for display: enough to recognise it, no more."""
    return account_id if len(account_id) <= 8 else account_id[:8] + "…"


def key_counter(secret: str) -> str:
    """The ledger counter of an API key."""
    return "key:" + short_hash(secret)


def account_counter(account_id: str) -> str:
    """The ledger counter of a Cloudflare account."""
    return "account:" + account_id


def model_counter(model_id: str) -> str:
    """The ledger counter of a model (what it cost today, for /v1/usage)."""
    return "model:" + model_id


class Ledger(Protocol):
    """Integer counters per UTC day (`Unit`), shared by every process that uses the location."""

    kind: str

    def charge(self, day: str, amounts: Mapping[str, int],
               limits: Mapping[str, int]) -> str | None:
        """Add every amount unless a limited counter would pass its limit; return that name."""

    def add(self, day: str, amounts: Mapping[str, int]) -> None:
        """Add (or with negative amounts, take back) without any limit."""

    def read(self, day: str) -> dict[str, int]:
        """Every counter of `day`."""

    def close(self) -> None:
        """Release connections and files."""


class MemoryLedger:
    """Counters in this process only (STORAGE_URL=memory://)."""

    kind = "memory"

    def __init__(self) -> None:
        self._days: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()

    def charge(self, day: str, amounts: Mapping[str, int],
               limits: Mapping[str, int]) -> str | None:
        with self._lock:
            counts = self._day(day)
            refused = _first_refused(counts, amounts, limits)
            if refused is None:
                for name, amount in amounts.items():
                    counts[name] = counts.get(name, 0) + amount
            return refused

    def add(self, day: str, amounts: Mapping[str, int]) -> None:
        with self._lock:
            counts = self._day(day)
            for name, amount in amounts.items():
                counts[name] = counts.get(name, 0) + amount

    def read(self, day: str) -> dict[str, int]:
        with self._lock:
            return dict(self._days.get(day, {}))

    def _day(self, day: str) -> dict[str, int]:
        if day not in self._days:
            # Days go as they would expire elsewhere (DAY_TTL): the admin page shows 30.
            for old in sorted(self._days)[:-(KEPT_DAYS - 1)]:
                del self._days[old]
            self._days[day] = {}
        return self._days[day]

    def close(self) -> None:
        return None


class DiskLedger:
    """Counters in a diskcache directory, shared by every process of one host."""

    kind = "disk"

    def __init__(self, directory: str):
        from ..storage.diskcaches import OwnThreadsCache

        # Its own threads make every call, as for the disk image store: a few SQLite
        # connections per process, and writers that take turns in order.
        self.shared = OwnThreadsCache(directory, timeout=10)

    def charge(self, day: str, amounts: Mapping[str, int],
               limits: Mapping[str, int]) -> str | None:
        def charge(cache) -> str | None:
            # One transaction reads and writes the day's counters: processes cannot interleave.
            with cache.transact():
                counts = cache.get(_PREFIX + day) or {}
                refused = _first_refused(counts, amounts, limits)
                if refused is None:
                    cache.set(_PREFIX + day, _added(counts, amounts), expire=DAY_TTL)
                return refused

        return self.shared.write(charge)

    def add(self, day: str, amounts: Mapping[str, int]) -> None:
        def add(cache) -> None:
            with cache.transact():
                counts = cache.get(_PREFIX + day) or {}
                cache.set(_PREFIX + day, _added(counts, amounts), expire=DAY_TTL)

        # A settlement needs no answer: the request does not wait for it (a hand-off and its
        # wake-up cost ~0.1 ms of CPU on a VM). Charges and reads queue behind it in order.
        self.shared.write_later(add, "a budget settlement")

    def read(self, day: str) -> dict[str, int]:
        # On the writer thread, so it comes after every settlement this process queued.
        return dict(self.shared.write(lambda cache: cache.get(_PREFIX + day)) or {})

    def close(self) -> None:
        self.shared.close()


# Check every limited counter first, then add them all: one script runs atomically in Redis.
_CHARGE_SCRIPT = """
local n = #ARGV / 3
for i = 1, n do
  local limit = tonumber(ARGV[3 * i])
  if limit >= 0 then
    local current = tonumber(redis.call('HGET', KEYS[1], ARGV[3 * i - 2]) or '0')
    if current + tonumber(ARGV[3 * i - 1]) > limit then return ARGV[3 * i - 2] end
  end
end
for i = 1, n do redis.call('HINCRBY', KEYS[1], ARGV[3 * i - 2], ARGV[3 * i - 1]) end
redis.call('EXPIRE', KEYS[1], tonumber(KEYS[2]))
return false
"""


class RedisLedger:
    """Counters in one Redis hash per day, shared by every host."""

    kind = "redis"

    def __init__(self, url: str):
        import redis

        # The counters' client: short timeouts, so a hung Redis cannot hold a generation.
        self.client: redis.Redis = redis_client(CountersLocation.parse(url))
        self._charge = self.client.register_script(_CHARGE_SCRIPT)

    def charge(self, day: str, amounts: Mapping[str, int],
               limits: Mapping[str, int]) -> str | None:
        args: list[str | int] = []
        for name, amount in amounts.items():
            args += [name, int(amount), int(limits.get(name, -1))]
        refused = self._charge(keys=[f"{_PREFIX}:{day}", str(DAY_TTL)], args=args)
        return refused.decode() if isinstance(refused, bytes) else refused or None

    def add(self, day: str, amounts: Mapping[str, int]) -> None:
        pipe = self.client.pipeline()
        for name, amount in amounts.items():
            pipe.hincrby(f"{_PREFIX}:{day}", name, int(amount))
        pipe.expire(f"{_PREFIX}:{day}", DAY_TTL)
        pipe.execute()

    def read(self, day: str) -> dict[str, int]:
        raw: Mapping[bytes, bytes] = self.client.hgetall(f"{_PREFIX}:{day}")  # type: ignore
        return {k.decode(): int(v) for k, v in raw.items()}

    def close(self) -> None:
        self.client.close()


def _first_refused(counts: Mapping[str, int], amounts: Mapping[str, int],
                   limits: Mapping[str, int]) -> str | None:
    for name, amount in amounts.items():
        limit = limits.get(name, -1)
        if limit >= 0 and counts.get(name, 0) + amount > limit:
            return name
    return None


def _added(counts: Mapping[str, int], amounts: Mapping[str, int]) -> dict[str, int]:
    result = dict(counts)
    for name, amount in amounts.items():
        result[name] = result.get(name, 0) + amount
    return result


def ledger_from_location(location: CountersLocation) -> Ledger:
    """The ledger where COUNTERS_URL (or its default) keeps counters: Redis, disk or memory.

    On disk the ledger has a diskcache of its own, `budgets`, inside the counters' directory.
    """
    if location.scheme == REDIS:
        return RedisLedger(location.url)
    if location.scheme == DISK:
        return DiskLedger(os.path.join(directory(location), "budgets"))
    return MemoryLedger()

