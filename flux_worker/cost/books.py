"""Daily neuron budgets: the books kept in the ledger, and what /v1/usage reports of them.

Every count is per UTC day (days.py). A generation is charged in two steps: `reserve` adds the
estimate before anything is sent upstream, refusing with 429 `insufficient_quota` when a budget
would be passed; the hold is then settled with the real figure (Cloudflare's, when it reports
one) or released when the generation failed, so a failure costs nothing in the books.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

from .. import metrics
from ..errors import QuotaExceeded, StorageError
from .days import Clock, human_duration, next_reset, utc_day, utc_now
from .ledgers import MILLI, SERVICE, Ledger, account_counter, key_counter, short_hash
from .money import dollars, neurons_text

# The name these lines have always carried in the log, which operators may filter on.
log = logging.getLogger("flux_worker.cost.budget")

# Seconds a budget ledger failure is remembered: requests meanwhile are refused at once (a hung
# Redis made each of them wait its 2 s timeout), and the first one after it asks again.
OUTAGE_SECONDS = 2.0


def _counters_down() -> StorageError:
    """The 503 of a generation whose budget cannot be counted (names no host: open answers)."""
    return StorageError("The budget counters (COUNTERS_URL) cannot be reached, so a generation "
                        "that a daily budget limits cannot start now: nothing was sent to the "
                        "image model. Try again shortly.", retry_after=5)


def _milli(neurons: float) -> int:
    return int(round(neurons * MILLI))


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
        metrics.observe_neurons(model, neurons)

    def lower_to(self, neurons: float) -> None:
        """Hold no more than `neurons`: give back what was reserved above it.

        An edit is admitted before its input is decoded, for the dearest shape the input might
        have; once planned, the reservation comes down to the real plan's estimate.
        """
        target = _milli(neurons)
        with self._lock:
            back = {name: target - left for name, left in self._left.items() if left > target}
            self._left.update(dict.fromkeys(back, target))
            self.estimate = min(self.estimate, neurons)
        if back:
            self.books.add(self.day, back)

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

    def __init__(self, ledger: Ledger, rules: BudgetRules, clock: Clock = utc_now,
                 outage_for: float = OUTAGE_SECONDS,
                 monotonic: Callable[[], float] = time.monotonic):
        self.ledger = ledger
        self.rules = rules
        self.clock = clock
        self.outage_for = outage_for
        self._monotonic = monotonic
        self._outage_since = float("-inf")      # when the ledger last failed (monotonic)

    @property
    def enforced(self) -> bool:
        """Whether any budget applies (only then must the ledger answer for a generation)."""
        return (self.rules.service is not None or self.rules.key_default is not None
                or bool(self.rules.keys))

    def check(self) -> None:
        """Raise StorageError unless the ledger answers now (readiness; nothing is cached)."""
        try:
            self.ledger.read(self.today())
        except Exception as exc:
            raise self._outage(exc) from None
        self._outage_since = float("-inf")

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
        if self._monotonic() - self._outage_since < self.outage_for:
            # A known outage: refuse at once rather than wait a timeout per request.
            raise _counters_down()
        try:
            refused = self.ledger.charge(day, counters, limits)
        except Exception as exc:
            # A budget that cannot be counted is not kept: refuse rather than spend unseen.
            raise self._outage(exc) from None
        if refused is not None:
            raise self._over_budget(refused, day, neurons)
        return Hold(self, day, counters, neurons)

    def _outage(self, exc: Exception) -> StorageError:
        log.warning("budget counters unavailable (%s): generations a budget limits are refused",
                    type(exc).__name__)
        self._outage_since = self._monotonic()
        return _counters_down()

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
