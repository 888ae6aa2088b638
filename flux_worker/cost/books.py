"""Daily budgets in neurons and US dollars: the books kept in the ledger, and /v1/usage's lines.

Every count is per UTC day (days.py), in two units side by side (budgets.py): every billed image
counts its neurons (Workers AI models) and its dollars (the provider's dollar price, or the
neurons at the paid rate). A generation is charged in two steps: `reserve` adds the estimate
before anything is sent upstream, refusing with 429 `insufficient_quota` when a budget would be
passed; the hold is then settled with the real figure (Cloudflare's, when it reports one) for
every upstream call that was billed, and what was not settled is given back when the
generation ends. A call is billed once the upstream has drawn the image, whoever still listens:
a client that hung up, an answer that is no image or a store that fails does not undo the bill.
A failure before that (refused, never sent, an error answer) costs nothing.

Cloudflare accounts with a budget of their own (`CF_ACCOUNTS=id:token@neurons`) are reserved the
same way, one image at a time, when the backend picks the account (`ImageCost.claim`). So a
budget is passed only by what the upstream bills above the estimates of the images in flight:
never when its figure is the estimate, as for every model whose price Cloudflare lists.

When a budget applies and its counters cannot be read or written, the generation is refused
with 503 `storage_error` (health.py): a budget that cannot be counted protects nothing.
"""

from __future__ import annotations

import logging
import math
import threading
from typing import Callable, Iterable, Iterator, Mapping

from .. import metrics
from ..errors import QuotaExceeded, StorageError
from .budgets import BudgetRules
from .days import Clock, human_duration, next_reset, utc_day, utc_now
from .health import CountersHealth
from .ledgers import (
    NEURONS,
    SERVICE,
    USD,
    Ledger,
    Unit,
    account_counter,
    key_counter,
    model_counter,
    short_hash,
    unit_of,
)
from .money import dollars, dollars_text, neurons_text
from .terms import KeyTerms

# The name these lines have always carried in the log, which operators may filter on.
log = logging.getLogger("flux_worker.cost.budget")


def _milli(neurons: float) -> int:
    return NEURONS.whole(neurons)


class Hold:
    """What one request reserved, in each unit it is billed in; settle each image, then close.

    A unit the request's model is not billed in is not held (`estimate` or `estimate_usd` None):
    a model billed in dollars only reserves no neurons, so no neuron budget refuses it.
    """

    def __init__(self, books: "Books", day: str, counters: dict[str, int],
                 estimate: float | None, estimate_usd: float | None = None):
        self.books = books
        self.day = day
        self._left = dict(counters)       # reserved ledger amounts not yet settled or released
        self._accounts: dict[str, int] = {}   # the same, on accounts with a budget of their own
        self._lock = threading.Lock()
        # Settled so far; None: the request is not billed in that unit.
        self.neurons: float | None = None if estimate is None else 0.0
        self.usd: float | None = None if estimate_usd is None else 0.0
        self.estimate = estimate          # what was reserved, in neurons
        self.estimate_usd = estimate_usd  # and in US dollars

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

    def settle(self, neurons: float | None, *, estimate: float | None, model: str,
               account: str | None = None, usd: float | None = None,
               estimate_usd: float | None = None) -> None:
        """Book one billed call: its real figures replace its estimates (reserved earlier).

        `neurons` and `usd` are what the call cost in each unit (None: not billed in it).
        """
        real = {NEURONS: neurons, USD: usd}
        planned = {NEURONS: estimate, USD: estimate_usd}
        amounts: dict[str, int] = {}
        with self._lock:
            if neurons is not None:
                self.neurons = (self.neurons or 0.0) + neurons
            if usd is not None:
                self.usd = (self.usd or 0.0) + usd
            for name in self._left:
                unit = unit_of(name)
                taken = min(self._left[name], unit.whole(planned[unit] or 0.0))
                self._left[name] -= taken
                amounts[name] = unit.whole(real[unit] or 0.0) - taken
            if account and neurons is not None:
                name = account_counter(account)
                taken = min(self._accounts.get(name, 0), _milli(estimate or 0.0))
                if taken:
                    self._accounts[name] -= taken
                amounts[name] = amounts.get(name, 0) + _milli(neurons) - taken
        for unit, figure in real.items():
            if figure is not None:     # the model's line of /v1/usage: no budget, no hold
                amounts[unit.counter(model_counter(model))] = unit.whole(figure)
        self.books.add(self.day, amounts)
        if neurons is not None:
            metrics.observe_neurons(model, neurons)
        if usd is not None:
            metrics.observe_usd(model, usd)

    def lower_to(self, neurons: float | None, usd: float | None = None) -> None:
        """Hold no more than `neurons` and `usd` (None: that unit as it is): give back the rest.

        An edit is admitted before its input is decoded, for the dearest shape the input might
        have; once planned, the reservation comes down to the real plan's estimate.
        """
        targets = {NEURONS: neurons, USD: usd}
        back: dict[str, int] = {}
        with self._lock:
            for name, left in self._left.items():
                target = targets[unit_of(name)]
                if target is not None and left > unit_of(name).whole(target):
                    back[name] = unit_of(name).whole(target) - left
            for name, amount in back.items():
                self._left[name] += amount
            if neurons is not None and self.estimate is not None:
                self.estimate = min(self.estimate, neurons)
            if usd is not None and self.estimate_usd is not None:
                self.estimate_usd = min(self.estimate_usd, usd)
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

    def __init__(self, hold: Hold | None, estimate: float | None, model: str,
                 estimate_usd: float | None = None):
        self.hold = hold
        self.estimate = estimate          # one image's neurons; None: not billed in neurons
        self.estimate_usd = estimate_usd  # its US dollars; None: not priced in dollars
        self.model = model
        self.usd: float | None = None     # the dollars `billed` booked (None: none)

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

    def billed(self, neurons: float | None, account: str | None = None,
               usd: float | None = None) -> float | None:
        """Book one billed upstream call: the figures reported, else the estimates.

        Dollars not reported follow reported neurons at the paid rate (what Workers AI bills
        for them), else the dollar estimate. Returns the neurons booked (None for a model not
        billed in neurons); `self.usd` holds the dollars.
        """
        figure = neurons if neurons is not None else self.estimate
        if usd is None:
            usd = dollars(neurons) if neurons is not None else self.estimate_usd
        self.usd = usd
        if self.hold is not None and (figure is not None or usd is not None):
            self.hold.settle(figure, estimate=self.estimate, model=self.model, account=account,
                             usd=usd, estimate_usd=self.estimate_usd)
        return figure


class Books:
    """Reserve, settle and report neurons and dollars against the daily budgets."""

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

    def reserve(self, key: str | None, neurons: float | None, usd: float | None = None,
                terms: KeyTerms | None = None) -> Hold:
        """Reserve `neurons` and `usd` (None: not billed in that unit) for the service and `key`
        (`terms`: a run-time key's own budgets).

        :raises QuotaExceeded: a budget would be passed (the message names it).
        :raises StorageError: a budget applies and its counters are unreachable (fail closed).
        """
        day = self.today()
        counters: dict[str, int] = {}
        limits: dict[str, int] = {}
        for unit, counter, amount, budget in self._budgets(key, neurons, usd, terms):
            counters[counter] = unit.whole(amount)
            if budget is not None:
                limits[counter] = unit.whole(budget)
        if not limits:
            # Nothing to hold back: the settlement alone counts the spend, which saves one
            # ledger transaction per generation (docs/benchmarks.md).
            return Hold(self, day, dict.fromkeys(counters, 0), neurons, usd)
        refused = self.charge(day, counters, limits)
        if refused is not None:
            raise self._over_budget(refused, day, neurons, usd, terms)
        return Hold(self, day, counters, neurons, usd)

    def fits(self, key: str | None, neurons: float | None, usd: float | None = None,
             terms: KeyTerms | None = None) -> bool:
        """Whether `neurons` and `usd` more (None: not billed in that unit) would stay within
        the service's and `key`'s budgets now.

        A read that reserves nothing (`model: auto` asks it of each candidate); unreachable
        counters answer True, and admission then decides as it always does.
        """
        limits = [(counter, amount, budget) for _, counter, amount, budget
                  in self._budgets(key, neurons, usd, terms) if budget is not None]
        if not limits:
            return True
        spent = self.spent()
        return all(spent.get(counter, 0.0) + amount <= budget
                   for counter, amount, budget in limits)

    def _budgets(self, key: str | None, neurons: float | None, usd: float | None,
                 terms: KeyTerms | None) -> Iterator[tuple[Unit, str, float, float | None]]:
        """(unit, ledger counter, amount, budget or None) of the service and `key`, for each
        unit the amounts are billed in (None: not billed in that unit). A run-time key's own
        budget (`terms`) replaces the configured per-key one."""
        for unit, amount in ((NEURONS, neurons), (USD, usd)):
            if amount is None:
                continue
            yield unit, unit.counter(SERVICE), amount, self.rules.for_service(unit)
            if key is not None:
                yield (unit, unit.counter(key_counter(key)), amount,
                       self._key_budget(short_hash(key), unit, terms))

    def _key_budget(self, hashed: str, unit: Unit, terms: KeyTerms | None) -> float | None:
        """The daily budget in `unit` of the key whose short hash is `hashed`: a run-time
        key's own (`terms`), else KEY_BUDGETS' entry, else the default per key."""
        own = terms.budget(unit) if terms is not None else None
        return own if own is not None else self.rules.for_hash(hashed, unit)

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
        """Every counter of the day (today by default) in its unit; {} while unreachable."""
        try:
            with self.health.guard("budget read"):
                raw = self.ledger.read(day or self.today())
        except StorageError:
            return {}
        return {name: value / unit_of(name).scale for name, value in raw.items()}

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

    def usage_of_key(self, key: str, spent: Mapping[str, float] | None = None,
                     terms: KeyTerms | None = None) -> dict:
        """A key's spend today in both units, its budgets and what is left."""
        return self.usage_of_hash(short_hash(key), spent, terms)

    def usage_of_hash(self, hashed: str, spent: Mapping[str, float] | None = None,
                      terms: KeyTerms | None = None) -> dict:
        """The line of the key whose short hash is `hashed` (`terms`: a run-time key's)."""
        spent = self.spent() if spent is None else spent
        return _line(spent, "key:" + hashed,
                     lambda unit: self._key_budget(hashed, unit, terms), key=hashed)

    def usage_of_service(self, spent: Mapping[str, float] | None = None) -> dict:
        """The whole service's spend today against DAILY_NEURONS and DAILY_USD."""
        spent = self.spent() if spent is None else spent
        return _line(spent, SERVICE, self.rules.for_service)

    def all_keys(self, keys: Iterable[str], spent: Mapping[str, float] | None = None,
                 issued: Mapping[str, KeyTerms] | None = None) -> list[dict]:
        """Every configured key's line (by short hash), every run-time key's (`issued`: terms
        by short hash), plus keys seen today but neither configured nor issued."""
        spent = self.spent() if spent is None else spent
        issued = issued or {}
        lines = {short_hash(k): self.usage_of_key(k, spent) for k in keys}
        for hashed in (*issued, *sorted(names_of_kind(spent, "key:"))):
            if hashed not in lines:
                lines[hashed] = self.usage_of_hash(hashed, spent, issued.get(hashed))
        return list(lines.values())

    def usage_of_models(self, spent: Mapping[str, float] | None = None) -> list[dict]:
        """What each model that drew today cost, in both units."""
        spent = self.spent() if spent is None else spent
        return [{"model": model,
                 "spent_neurons": round(spent.get(model_counter(model), 0.0), 3),
                 "spent_usd": round(spent.get(USD.counter(model_counter(model)), 0.0), 9)}
                for model in sorted(names_of_kind(spent, "model:"))]

    def _over_budget(self, refused: str, day: str, neurons: float | None,
                     usd: float | None, terms: KeyTerms | None) -> QuotaExceeded:
        unit = unit_of(refused)
        counter = refused.removeprefix(unit.prefix)
        spent = self.spent(day)
        reset = self.resets()
        when = (f"It resets at 00:00 UTC (in {human_duration(reset['resets_in_seconds'])}).")
        if counter == SERVICE:
            variable = "DAILY_USD" if unit is USD else "DAILY_NEURONS"
            which = f"This service's daily {'dollar ' if unit is USD else ''}budget ({variable})"
            budget = self.rules.for_service(unit)
        else:
            which = f"This API key's daily {'dollar ' if unit is USD else ''}budget"
            budget = self._key_budget(counter.removeprefix("key:"), unit, terms)
        left = max(0.0, (budget or 0.0) - spent.get(refused, 0.0))
        need = (usd if unit is USD else neurons) or 0.0
        text = dollars_text if unit is USD else neurons_text
        units = "" if unit is USD else " neurons"
        log.info("over budget: %s in %s, %s left, %s needed", counter.split(":")[0], unit.name,
                 text(left), text(need))
        return QuotaExceeded(
            f"{which} of {text(budget or 0)}{units} is used up: {text(left)} left, and this "
            f"request needs about {text(need)}. {when} Nothing was sent to the image model.",
            retry_after=reset["resets_in_seconds"])


def names_of_kind(spent: Mapping[str, float], kind: str) -> set[str]:
    """The names after `kind` (`key:`, `model:`) of the counters of that kind, in either unit."""
    found = set()
    for name in spent:
        counter = name.removeprefix(USD.prefix)
        if counter.startswith(kind):
            found.add(counter[len(kind):])
    return found


def _line(spent: Mapping[str, float], counter: str,
          budget_of: Callable[[Unit], float | None], **extra: str) -> dict:
    """One line of /v1/usage: spent, budget and left, in neurons then in US dollars."""
    line: dict = dict(extra)
    for unit, digits in ((NEURONS, 3), (USD, 9)):
        used = spent.get(unit.counter(counter), 0.0)
        budget = budget_of(unit)
        line[f"spent_{unit.name}"] = round(used, digits)
        line[f"budget_{unit.name}"] = budget
        line[f"left_{unit.name}"] = (None if budget is None
                                     else round(max(0.0, budget - used), digits))
    return line
