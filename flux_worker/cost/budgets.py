"""The daily budgets, in neurons and in US dollars, and how their settings are read.

Two units, each with its own budgets: a neuron budget limits the neurons of Workers AI images
only (a model billed in dollars spends none), a dollar budget limits the dollars of every image
(a Workers AI image costs its neurons at the paid rate). Where a unit has several budgets (the
service's, a key's), each applies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping, NamedTuple

from .ledgers import NEURONS, USD, Unit, short_hash


@dataclass(frozen=True)
class BudgetRules:
    """The daily budgets; None means no budget."""

    service: float | None = None                   # DAILY_NEURONS
    key_default: float | None = None               # KEY_DAILY_NEURONS
    keys: Mapping[str, float] = field(default_factory=dict)   # short hash -> KEY_BUDGETS
    service_usd: float | None = None               # DAILY_USD
    key_default_usd: float | None = None           # KEY_DAILY_USD
    keys_usd: Mapping[str, float] = field(default_factory=dict)   # KEY_BUDGETS' `$` entries

    def for_service(self, unit: Unit = NEURONS) -> float | None:
        """The service's budget in `unit`."""
        return self.service_usd if unit is USD else self.service

    def for_key(self, secret: str, unit: Unit = NEURONS) -> float | None:
        """The budget of an API key in `unit`: its own, else the default."""
        return self.for_hash(short_hash(secret), unit)

    def for_hash(self, hashed: str, unit: Unit = NEURONS) -> float | None:
        """The budget in `unit` of the key whose short hash is `hashed`."""
        if unit is USD:
            return self.keys_usd.get(hashed, self.key_default_usd)
        return self.keys.get(hashed, self.key_default)

    @property
    def any(self) -> bool:
        """Whether any budget applies (then generations need the counters)."""
        return any(budget is not None for budget in (
            self.service, self.key_default, self.service_usd, self.key_default_usd)) or bool(
            self.keys or self.keys_usd)


class KeyBudgets(NamedTuple):
    """KEY_BUDGETS read: each key's own budgets by its short hash, one mapping per unit."""

    neurons: Mapping[str, float]
    usd: Mapping[str, float]


def parse_key_budgets(text: str, known_keys: Iterable[str] = ()) -> KeyBudgets:
    """Parse `sk-alice=3000,sk-bob=$2.50` into each key's budgets; raise ValueError.

    A bare number is neurons (as before dollar budgets existed); `$2.50` or `2.5usd` is US
    dollars. A key may have one of each (`sk-a=3000,sk-a=$1`): both apply. Messages name
    entries by position, never by key, so no key reaches a log or an error.
    """
    known = set(known_keys)
    budgets: dict[Unit, dict[str, float]] = {NEURONS: {}, USD: {}}
    for position, item in enumerate((p.strip() for p in text.split(",")), start=1):
        if not item:
            continue
        key, sep, amount = item.rpartition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"entry {position} must look like <api key>=<neurons> or "
                             "<api key>=$<dollars>")
        what = f"entry {position}"
        if is_dollars(amount):
            budgets[USD][short_hash(key)] = parse_dollars(amount, what)
        else:
            budgets[NEURONS][short_hash(key)] = parse_neurons(amount, what)
        if known and key not in known:
            raise ValueError(f"entry {position} names a key that is not one of API_KEY's")
    return KeyBudgets(budgets[NEURONS], budgets[USD])


def parse_neurons(text: str, what: str) -> float:
    """Parse a non-negative neuron amount such as `10000` or `2500.5`; raise ValueError."""
    value = _amount(text.strip().replace("_", ""))
    if value is None:
        raise ValueError(f"{what}: {text.strip()!r} is not a number of neurons")
    if value < 0:
        raise ValueError(f"{what}: neurons must be 0 or more, got {text.strip()!r}")
    return value


def is_dollars(text: str) -> bool:
    """Whether an amount is written in dollars: `$2.50` or `2.5usd` (any case)."""
    text = text.strip().lower()
    return text.startswith("$") or text.endswith("usd")


def parse_dollars(text: str, what: str) -> float:
    """Parse a non-negative US dollar amount: `5`, `5.00`, `$5` or `5usd`; raise ValueError."""
    plain = text.strip().lower().replace("_", "").removeprefix("$").removesuffix("usd").strip()
    value = _amount(plain)
    if value is None:
        raise ValueError(f"{what}: {text.strip()!r} is not an amount of US dollars")
    if value < 0:
        raise ValueError(f"{what}: dollars must be 0 or more, got {text.strip()!r}")
    return value


def _amount(text: str) -> float | None:
    """A finite number, or None (`nan`, `inf` and words are no amount)."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
