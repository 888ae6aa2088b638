"""What was spent over the last days, per day, per key, per model and per provider (no Flask).

The admin page's numbers (web/admin_api.py). They come from the budget ledger's day counters
(ledgers.py keeps each day `DAY_TTL`, longer than `HISTORY_DAYS`), in both units: the service's
total per day for the chart, and each key's, model's and provider's today and over the window.
Keys are named by the ledger's short hash; `names` gives the names an admin gave them (the keys
store), and a key without one stays its hash. A model's provider is the catalog's word for it
(`provider_of`); a model the catalog no longer offers counts under "unknown".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Mapping

from .books import Books, names_of_kind
from .days import utc_day
from .ledgers import NEURONS, SERVICE, USD

HISTORY_DAYS = 30                 # the window the admin page shows, today included
UNKNOWN_PROVIDER = "unknown"
_DIGITS = {NEURONS: 3, USD: 9}    # as /v1/usage rounds each unit


@dataclass
class Amount:
    """Neurons and US dollars, added up."""

    neurons: float = 0.0
    usd: float = 0.0

    def add(self, counts: Mapping[str, float], counter: str) -> None:
        """Add `counter`'s neurons and dollars from one day's `counts`."""
        self.neurons += counts.get(NEURONS.counter(counter), 0.0)
        self.usd += counts.get(USD.counter(counter), 0.0)

    def wire(self) -> dict:
        """The amount as the admin API writes it."""
        return {"neurons": round(self.neurons, _DIGITS[NEURONS]),
                "usd": round(self.usd, _DIGITS[USD])}


@dataclass
class Tally:
    """One key's, model's or provider's spend: today and over the window."""

    today: Amount
    window: Amount

    @classmethod
    def empty(cls) -> "Tally":
        return cls(Amount(), Amount())

    def wire(self, **names: str | None) -> dict:
        return {**names, "today": self.today.wire(), "last_30_days": self.window.wire()}


def spend_report(books: Books, provider_of: Callable[[str], str | None],
                 names: Mapping[str, str] | None = None, days: int = HISTORY_DAYS) -> dict:
    """The last `days` UTC days' spend (oldest first) and each key's, model's, provider's.

    `names` maps a key's short hash to its name; `provider_of` a model id to its provider.
    Days whose counters cannot be read count as nothing spent (Books.spent answers {}).
    """
    names = names or {}
    now = books.clock()
    today = utc_day(now)
    per_day: list[dict] = []
    keys: dict[str, Tally] = {}
    models: dict[str, Tally] = {}
    providers: dict[str, Tally] = {}
    total = Tally.empty()
    for back in range(days - 1, -1, -1):
        day = utc_day(now - timedelta(days=back))
        counts = books.spent(day)
        service = Amount()
        service.add(counts, SERVICE)
        per_day.append({"day": day, **service.wire()})
        _count(total, counts, SERVICE, day == today)
        for kind, table in (("key:", keys), ("model:", models)):
            for name in names_of_kind(counts, kind):
                _count(table.setdefault(name, Tally.empty()), counts, kind + name, day == today)
        for model in names_of_kind(counts, "model:"):
            provider = provider_of(model) or UNKNOWN_PROVIDER
            _count(providers.setdefault(provider, Tally.empty()), counts, "model:" + model,
                   day == today)
    return {
        "object": "admin.spend", "today": today, "days": per_day,
        "total": total.wire(),
        "keys": [tally.wire(owner=owner, name=names.get(owner))
                 for owner, tally in _by_spend(keys)],
        "models": [tally.wire(model=model, provider=provider_of(model) or UNKNOWN_PROVIDER)
                   for model, tally in _by_spend(models)],
        "providers": [tally.wire(provider=provider) for provider, tally in _by_spend(providers)],
    }


def _count(tally: Tally, counts: Mapping[str, float], counter: str, is_today: bool) -> None:
    tally.window.add(counts, counter)
    if is_today:
        tally.today.add(counts, counter)


def _by_spend(table: Mapping[str, Tally]) -> list[tuple[str, Tally]]:
    """Most spent over the window first (dollars, which every image counts), then by name."""
    return sorted(table.items(), key=lambda item: (-item[1].window.usd, -item[1].window.neurons,
                                                   item[0]))
