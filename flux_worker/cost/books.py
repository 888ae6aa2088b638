"""Daily neuron budgets: the books kept in the ledger, and what /v1/usage reports of them.

Every count is per UTC day (days.py). A generation is charged in two steps: `reserve` adds the
estimate before anything is sent upstream, refusing with 429 `insufficient_quota` when a budget
would be passed; the hold is then settled with the real figure (Cloudflare's, when it reports
one) for every upstream call that was billed, and what was not settled is given back when the
generation ends. A call is billed once Cloudflare has drawn the image, whoever still listens:
a client that hung up, an answer that is no image or a store that fails does not undo the bill.
A failure before that (refused, never sent, an error answer) costs nothing.

Cloudflare accounts with a budget of their own (`CF_ACCOUNTS=id:token@neurons`) are reserved the
same way, one image at a time, when the backend picks the account (`ImageCost.claim`). So a
budget is passed only by what Cloudflare bills above the estimates of the images in flight: never
when its figure is the estimate, as for every model whose price Cloudflare lists.

When a budget applies and its counters cannot be read or written, the generation is refused
with 503 `storage_error` (health.py): a budget that cannot be counted protects nothing.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from .. import metrics
from ..errors import QuotaExceeded, StorageError
from .days import Clock, human_duration, next_reset, utc_day, utc_now
from .health import CountersHealth
from .ledgers import MILLI, SERVICE, Ledger, account_counter, key_counter, short_hash
from .money import dollars, neurons_text

# The name these lines have always carried in the log, which operators may filter on.
log = logging.getLogger("flux_worker.cost.budget")


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

    @property
    def any(self) -> bool:
        """Whether any budget applies (then generations need the counters)."""
        return self.service is not None or self.key_default is not None or bool(self.keys)


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
        self._accounts: dict[str, int] = {}   # the same, on accounts with a budget of their own
        self._lock = threading.Lock()
        self.neurons = 0.0                # settled so far
        self.estimate = estimate          # what was reserved, in neurons

    def claim_account(self, account: str, neurons: float, budget: float | None) -> bool:
        """Reserve one image's `neurons` on the Cloudflare account about to draw it.

        Returns False when the account's own budget cannot take them: the reservations of the
        images in flight are in its counter, so parallel requests cannot all pass it at once.
        Without a budget nothing is held back; the settlement alone counts the spend.

        :raises StorageError: the counters are unreachable, so the budget cannot be kept.
        """
        if budget is None:
            return True
        name, amount = account_counter(account), _milli(neurons)
        if self.books.charge(self.day, {name: amount}, {name: _milli(budget)}) is not None:
            return False
        with self._lock:
            self._accounts[name] = self._accounts.get(name, 0) + amount
        return True

    def unclaim_account(self, account: str, neurons: float) -> None:
        """Give back one image's reservation on `account`: the call there billed nothing."""
        name = account_counter(account)
        with self._lock:
            back = min(self._accounts.get(name, 0), _milli(neurons))
            if back:
                self._accounts[name] -= back
        if back:
            self.books.add(self.day, {name: -back})

    def settle(self, neurons: float, *, estimate: float, model: str,
               account: str | None = None) -> None:
        """Book one billed call: its real `neurons` replace its `estimate` (reserved earlier)."""
        real, planned = _milli(neurons), _milli(estimate)
        with self._lock:
            self.neurons += neurons
            amounts: dict[str, int] = {}
            for name in self._left:
                taken = min(self._left[name], planned)
                self._left[name] -= taken
                amounts[name] = real - taken
            if account:
                name = account_counter(account)
                taken = min(self._accounts.get(name, 0), planned)
                if taken:
                    self._accounts[name] -= taken
                amounts[name] = amounts.get(name, 0) + real - taken
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
        """Give back what was reserved and not settled (images never billed cost nothing)."""
        with self._lock:
            back = {name: -left for name, left in (*self._left.items(), *self._accounts.items())
                    if left}
            self._left = {name: 0 for name in self._left}
            self._accounts.clear()
        if back:
            self.books.add(self.day, back)

    def __enter__(self) -> "Hold":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ImageCost:
    """One image's share of a request's Hold, handed to the backend that draws it.

    The backend claims the Cloudflare account it is about to call (`claim`), gives the claim
    back when that call billed nothing (`unclaim`), and books a call that was billed although it
    failed (`billed`: a read timeout, an answer that is no image). The pipeline books a success
    the same way, as soon as the upstream has answered and before anything else can fail.
    """

    def __init__(self, hold: Hold | None, estimate: float | None, model: str):
        self.hold = hold
        self.estimate = estimate          # one image's neurons; None: not priced
        self.model = model

    def claim(self, account: str, budget: float | None) -> bool:
        """Reserve this image on `account`; False when the account's budget cannot take it.

        :raises StorageError: the counters are unreachable while the account has a budget.
        """
        if self.hold is None or self.estimate is None:
            return True
        return self.hold.claim_account(account, self.estimate, budget)

    def unclaim(self, account: str) -> None:
        """Give this image's reservation on `account` back: the call there billed nothing."""
        if self.hold is not None and self.estimate is not None:
            self.hold.unclaim_account(account, self.estimate)

    def billed(self, neurons: float | None, account: str | None = None) -> float | None:
        """Book one billed upstream call: `neurons` as reported, else the estimate.

        Returns the figure booked (None for a model without a price).
        """
        figure = neurons if neurons is not None else self.estimate
        if self.hold is not None and figure is not None:
            self.hold.settle(figure, estimate=self.estimate or 0.0, model=self.model,
                             account=account)
        return figure


class Books:
    """Reserve, settle and report neurons against the daily budgets."""

    def __init__(self, ledger: Ledger, rules: BudgetRules, clock: Clock = utc_now,
                 health: CountersHealth | None = None):
        self.ledger = ledger
        self.rules = rules
        self.clock = clock
        # Shared with the rate limiter (services.py): both count in COUNTERS_URL.
        self.health = health or CountersHealth(required=rules.any)

    def today(self) -> str:
        """The UTC day the books count in now."""
        return utc_day(self.clock())

    def reserve(self, key: str | None, neurons: float) -> Hold:
        """Reserve `neurons` for the service and `key`.

        :raises QuotaExceeded: a budget would be passed (the message names it).
        :raises StorageError: a budget applies and its counters are unreachable (fail closed).
        """
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
        refused = self.charge(day, counters, limits)
        if refused is not None:
            raise self._over_budget(refused, day, neurons)
        return Hold(self, day, counters, neurons)

    def fits(self, key: str | None, neurons: float) -> bool:
        """Whether `neurons` more would stay within the service's and `key`'s budgets now.

        A read that reserves nothing (`model: auto` asks it of each candidate); unreachable
        counters answer True, and admission then decides as it always does.
        """
        limits = {SERVICE: self.rules.service}
        if key is not None:
            limits[key_counter(key)] = self.rules.for_key(key)
        if all(limit is None for limit in limits.values()):
            return True
        spent = self.spent()
        return all(limit is None or spent.get(name, 0.0) + neurons <= limit
                   for name, limit in limits.items())

    def charge(self, day: str, counters: Mapping[str, int],
               limits: Mapping[str, int]) -> str | None:
        """Add `counters` unless a limited one would pass its limit; return that one's name.

        :raises StorageError: the counters are unreachable (now, or moments ago: health.py).
        """
        with self.health.guard("budget"):
            return self.ledger.charge(day, counters, limits)

    def add(self, day: str, amounts: Mapping[str, int]) -> None:
        """Adjust counters (settlements, releases); a ledger outage is logged, not raised.

        A lost settlement leaves the reservation counted: the books err towards spent.
        """
        amounts = {name: value for name, value in amounts.items() if value}
        if not amounts:
            return
        try:
            with self.health.guard("budget settlement"):
                self.ledger.add(day, amounts)
        except StorageError:
            log.warning("budget ledger unavailable, a settlement was lost")

    def spent(self, day: str | None = None) -> dict[str, float]:
        """Every counter of the day (today by default), in neurons; {} while unreachable."""
        try:
            with self.health.guard("budget read"):
                raw = self.ledger.read(day or self.today())
        except StorageError:
            return {}
        return {name: value / MILLI for name, value in raw.items()}

    def counters_state(self) -> str:
        """Ask the counters now, for /readyz: "ok", or why they are not needed when unreachable.

        :raises StorageError: unreachable while a budget or rate limit must count there.
        """
        try:
            self.health.probe(lambda: self.ledger.read(self.today()), "readiness")
        except StorageError:
            if self.health.required:
                raise
            return "unreachable; no budget or rate limit counts there, so usage is not recorded"
        return "ok"

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
