"""Daily neuron budgets: a ledger shared by every instance, and the books kept in it.

Workers AI bills in neurons and resets its free allocation at 00:00 UTC, so every count here is
per UTC day. The ledger is a set of named counters per day (`service`, `key:<hash>`,
`account:<id>`), kept where the rate limits are kept so all processes and hosts agree: Redis,
a diskcache directory (one host) or memory (one process). Amounts are stored as whole
milli-neurons, because Redis adds integers exactly and floats would drift.

A generation is charged in two steps: `reserve` adds the estimate before anything is sent
upstream, refusing with 429 `insufficient_quota` when a budget would be passed; the hold is then
settled with the real figure (Cloudflare's, when it reports one) or released when the
generation failed, so a failure costs nothing in the books. API keys are never stored: only a
short hash of each.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable, Mapping, Protocol

from .. import metrics
from ..catalog.spec import USD_PER_NEURON
from ..errors import QuotaExceeded
from ..storage.counters import directory, redis_client
from ..storage.location import DISK, REDIS, CountersLocation

log = logging.getLogger("flux_worker.cost.budget")

Clock = Callable[[], datetime]
MILLI = 1000                      # counters hold milli-neurons
DAY_TTL = 3 * 86400               # a day's counters outlive it briefly, for late settlements
SERVICE = "service"
_PREFIX = "flux-worker:neurons"


def utc_now() -> datetime:
    """The current time in UTC (the default clock)."""
    return datetime.now(timezone.utc)


def utc_day(now: datetime) -> str:
    """The UTC day of `now` as `YYYY-MM-DD`: the period every budget counts in."""
    return now.astimezone(timezone.utc).strftime("%Y-%m-%d")


def next_reset(now: datetime) -> datetime:
    """The next 00:00 UTC after `now`, when budgets and the free allocation reset."""
    now = now.astimezone(timezone.utc)
    return (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)


def human_duration(seconds: float) -> str:
    """Format a duration as `5 h 12 min` or `7 min`."""
    hours, minutes = divmod(max(1, math.ceil(seconds / 60)), 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


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


def neurons_text(neurons: float) -> str:
    """Format neurons for people: `57.6`, `2,593.5`."""
    return f"{neurons:,.1f}" if neurons < 10_000 else f"{neurons:,.0f}"


def dollars(neurons: float) -> float:
    """The dollars `neurons` cost at the Workers Paid rate."""
    return neurons * USD_PER_NEURON


def usd_text(neurons: float) -> str:
    """The dollar price of `neurons` at the paid rate, for people: `$0.000634`, `$0.0285`."""
    amount = dollars(neurons)
    if amount == 0:
        return "$0"
    text = f"{amount:.6f}" if amount < 0.01 else f"{amount:.4f}"
    return "$" + (text.rstrip("0").rstrip(".") if "." in text else text)


def _milli(neurons: float) -> int:
    return int(round(neurons * MILLI))


# ============================================================================================
# The ledger: named integer counters per day, behind one small interface.
# ============================================================================================

class Ledger(Protocol):
    """Counters of milli-neurons per UTC day, shared by every process that uses the location."""

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
            # Only today and yesterday (late settlements) matter; older days go.
            for old in sorted(self._days)[:-1]:
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


# ============================================================================================
# The books: budgets, holds, and what /v1/usage and the welcome page show.
# ============================================================================================

@dataclass(frozen=True)
class BudgetRules:
    """The daily budgets in neurons; None means no budget."""

    service: float | None = None                   # DAILY_NEURONS
    key_default: float | None = None               # KEY_DAILY_NEURONS
    keys: Mapping[str, float] = field(default_factory=dict)   # short hash -> KEY_BUDGETS

    def for_key(self, secret: str) -> float | None:
        """The budget of an API key: its own, else the default."""
        return self.keys.get(short_hash(secret), self.key_default)


def parse_key_budgets(text: str, known_keys: Iterable[str] = ()) -> dict[str, float]:
    """Parse `sk-alice=3000,sk-bob=500` into {short hash: neurons}; raise ValueError.

    Messages name entries by position, never by key, so no key reaches a log or an error.
    """
    known = set(known_keys)
    budgets: dict[str, float] = {}
    for position, item in enumerate((p.strip() for p in text.split(",")), start=1):
        if not item:
            continue
        key, sep, amount = item.rpartition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"entry {position} must look like <api key>=<neurons>")
        budgets[short_hash(key)] = parse_neurons(amount, f"entry {position}")
        if known and key not in known:
            raise ValueError(f"entry {position} names a key that is not one of API_KEY's")
    return budgets


def parse_neurons(text: str, what: str) -> float:
    """Parse a non-negative neuron amount such as `10000` or `2500.5`; raise ValueError."""
    try:
        value = float(text.strip().replace("_", ""))
    except ValueError:
        raise ValueError(f"{what}: {text.strip()!r} is not a number of neurons") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what}: neurons must be 0 or more, got {text.strip()!r}")
    return value


class Hold:
    """Neurons reserved for one request; settle each image's real figure, then close."""

    def __init__(self, books: "Books", day: str, counters: dict[str, int], estimate: float):
        self.books = books
        self.day = day
        self._left = dict(counters)       # reserved milli-neurons not yet settled or released
        self._lock = threading.Lock()
        self.neurons = 0.0                # settled so far
        self.estimate = estimate          # what was reserved, in neurons

    def settle(self, neurons: float, *, estimate: float, model: str,
               account: str | None = None) -> None:
        """Book one image: its real `neurons` replace its `estimate` (reserved earlier)."""
        real, planned = _milli(neurons), _milli(estimate)
        with self._lock:
            self.neurons += neurons
            amounts: dict[str, int] = {}
            for name in self._left:
                taken = min(self._left[name], planned)
                self._left[name] -= taken
                amounts[name] = real - taken
        if account:
            amounts[account_counter(account)] = amounts.get(account_counter(account), 0) + real
        self.books.add(self.day, amounts)
        metrics.observe_neurons(model, short_account(account) if account else "-", neurons)

    def close(self) -> None:
        """Give back what was reserved and not settled (failed images cost nothing)."""
        with self._lock:
            back = {name: -left for name, left in self._left.items() if left}
            self._left = {name: 0 for name in self._left}
        if back:
            self.books.add(self.day, back)

    def __enter__(self) -> "Hold":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Books:
    """Reserve, settle and report neurons against the daily budgets."""

    def __init__(self, ledger: Ledger, rules: BudgetRules, clock: Clock = utc_now):
        self.ledger = ledger
        self.rules = rules
        self.clock = clock

    def today(self) -> str:
        """The UTC day the books count in now."""
        return utc_day(self.clock())

    def reserve(self, key: str | None, neurons: float) -> Hold:
        """Reserve `neurons` for the service and `key`; raise QuotaExceeded naming the budget."""
        day = self.today()
        amount = _milli(neurons)
        counters = {SERVICE: amount}
        limits: dict[str, int] = {}
        if self.rules.service is not None:
            limits[SERVICE] = _milli(self.rules.service)
        if key is not None:
            counters[key_counter(key)] = amount
            budget = self.rules.for_key(key)
            if budget is not None:
                limits[key_counter(key)] = _milli(budget)
        if not limits:
            # Nothing to hold back: the settlement alone counts the spend, which saves one
            # ledger transaction per generation (docs/benchmarks.md).
            return Hold(self, day, dict.fromkeys(counters, 0), neurons)
        try:
            refused = self.ledger.charge(day, counters, limits)
        except Exception as exc:  # the books must not take generation down with them
            log.warning("budget ledger unavailable, not counting: %s", type(exc).__name__)
            return Hold(self, day, {}, neurons)
        if refused is not None:
            raise self._over_budget(refused, day, neurons)
        return Hold(self, day, counters, neurons)

    def add(self, day: str, amounts: Mapping[str, int]) -> None:
        """Adjust counters (settlements, releases); a ledger outage is logged, not raised."""
        amounts = {name: value for name, value in amounts.items() if value}
        if not amounts:
            return
        try:
            self.ledger.add(day, amounts)
        except Exception as exc:
            log.warning("budget ledger unavailable, a settlement was lost: %s",
                        type(exc).__name__)

    def spent(self, day: str | None = None) -> dict[str, float]:
        """Every counter of the day (today by default), in neurons."""
        try:
            raw = self.ledger.read(day or self.today())
        except Exception as exc:
            log.warning("budget ledger unavailable: %s", type(exc).__name__)
            return {}
        return {name: value / MILLI for name, value in raw.items()}

    def resets(self) -> dict:
        """When the books reset: the time and the seconds left."""
        now = self.clock()
        at = next_reset(now)
        return {"resets_at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "resets_in_seconds": max(1, math.ceil((at - now).total_seconds()))}

    def usage_of_key(self, key: str, spent: Mapping[str, float] | None = None) -> dict:
        """A key's spend today, its budget and what is left."""
        spent = self.spent() if spent is None else spent
        return _line(spent.get(key_counter(key), 0.0), self.rules.for_key(key),
                     key=short_hash(key))

    def usage_of_service(self, spent: Mapping[str, float] | None = None) -> dict:
        """The whole service's spend today against DAILY_NEURONS."""
        spent = self.spent() if spent is None else spent
        return _line(spent.get(SERVICE, 0.0), self.rules.service)

    def all_keys(self, keys: Iterable[str],
                 spent: Mapping[str, float] | None = None) -> list[dict]:
        """Every configured key's line (by short hash), plus keys seen today but not configured."""
        spent = self.spent() if spent is None else spent
        lines = {short_hash(k): self.usage_of_key(k, spent) for k in keys}
        for name, value in spent.items():
            if name.startswith("key:") and name[4:] not in lines:
                lines[name[4:]] = _line(value, self.rules.key_default, key=name[4:])
        return list(lines.values())

    def _over_budget(self, refused: str, day: str, neurons: float) -> QuotaExceeded:
        spent = self.spent(day)
        reset = self.resets()
        when = (f"It resets at 00:00 UTC (in {human_duration(reset['resets_in_seconds'])}).")
        if refused == SERVICE:
            which, budget = "This service's daily budget (DAILY_NEURONS)", self.rules.service
        else:
            which = "This API key's daily budget"
            budget = self.rules.keys.get(refused[4:], self.rules.key_default)
        left = max(0.0, (budget or 0.0) - spent.get(refused, 0.0))
        log.info("over budget: %s, %.1f neurons left, %.1f needed", refused.split(":")[0],
                 left, neurons)
        return QuotaExceeded(
            f"{which} of {neurons_text(budget or 0)} neurons is used up: "
            f"{neurons_text(left)} left, and this request needs about {neurons_text(neurons)}. "
            f"{when} Nothing was sent to the image model.",
            retry_after=reset["resets_in_seconds"])


def _line(spent: float, budget: float | None, **extra: str) -> dict:
    return {**extra, "spent_neurons": round(spent, 3), "budget_neurons": budget,
            "left_neurons": None if budget is None else round(max(0.0, budget - spent), 3),
            "spent_usd": round(dollars(spent), 6)}
