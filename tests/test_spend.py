"""The admin page's spend report (cost/spend.py): 30 UTC days per day, key, model and provider,
read from the budget ledger, which now keeps a day long enough to show it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from flux_worker.cost.books import Books
from flux_worker.cost.budgets import BudgetRules
from flux_worker.cost.days import utc_day
from flux_worker.cost.ledgers import (
    DAY_TTL,
    NEURONS,
    USD,
    MemoryLedger,
    key_counter,
    model_counter,
    short_hash,
)
from flux_worker.cost.spend import HISTORY_DAYS, UNKNOWN_PROVIDER, spend_report
from tests.support import FakeClock

NOW = datetime(2026, 12, 8, 15, 0, tzinfo=timezone.utc)
ALICE, BOB = "sk-alice-0001", "sk-bob-0002"
SCHNELL, FAL = "@cf/black-forest-labs/flux-1-schnell", "fal:flux-dev"
PROVIDERS = {SCHNELL: "workers-ai", FAL: "fal"}


def spend(books: Books, days_ago: int, key: str, model: str, usd: float,
          neurons: float = 0.0) -> None:
    """Book one image as the books settle it: the service, the key and the model."""
    day = utc_day(NOW - timedelta(days=days_ago))
    amounts = {}
    for counter in ("service", key_counter(key), model_counter(model)):
        amounts[USD.counter(counter)] = USD.whole(usd)
        if neurons:
            amounts[NEURONS.counter(counter)] = NEURONS.whole(neurons)
    books.add(day, amounts)


@pytest.fixture
def books():
    return Books(MemoryLedger(), BudgetRules(), FakeClock(NOW))


def test_thirty_days_per_day_key_model_and_provider(books):
    spend(books, 0, ALICE, SCHNELL, 0.0006336, neurons=57.6)
    spend(books, 0, BOB, FAL, 0.025)
    spend(books, 3, ALICE, FAL, 0.025)
    spend(books, 29, BOB, SCHNELL, 0.0006336, neurons=57.6)
    spend(books, 30, ALICE, FAL, 9.0)                      # a day before the window

    report = spend_report(books, PROVIDERS.get, {short_hash(ALICE): "Alice"})

    assert [d["day"] for d in report["days"]] == [
        utc_day(NOW - timedelta(days=back)) for back in range(HISTORY_DAYS - 1, -1, -1)]
    assert report["days"][-1] == {"day": "2026-12-08", "neurons": 57.6, "usd": 0.0256336}
    assert report["days"][-4]["usd"] == 0.025 and report["days"][0]["neurons"] == 57.6
    assert report["total"] == {"today": {"neurons": 57.6, "usd": 0.0256336},
                               "last_30_days": {"neurons": 115.2, "usd": 0.0512672}}
    keys = {k["owner"]: k for k in report["keys"]}
    assert keys[short_hash(ALICE)]["name"] == "Alice"
    assert keys[short_hash(ALICE)]["last_30_days"] == {"neurons": 57.6, "usd": 0.0256336}
    assert keys[short_hash(BOB)] == {"owner": short_hash(BOB), "name": None,
                                     "today": {"neurons": 0.0, "usd": 0.025},
                                     "last_30_days": {"neurons": 57.6, "usd": 0.0256336}}
    assert [(m["model"], m["provider"]) for m in report["models"]] == [
        (FAL, "fal"), (SCHNELL, "workers-ai")]           # most spent first
    providers = {p["provider"]: p for p in report["providers"]}
    assert providers["fal"]["last_30_days"]["usd"] == 0.05
    assert providers["workers-ai"]["today"] == {"neurons": 57.6, "usd": 0.0006336}


def test_a_model_the_catalog_no_longer_offers_counts_under_unknown(books):
    spend(books, 1, ALICE, "@cf/retired/model", 0.01)
    report = spend_report(books, PROVIDERS.get)
    assert report["models"][0]["provider"] == UNKNOWN_PROVIDER
    assert report["providers"][0]["provider"] == UNKNOWN_PROVIDER


def test_nothing_spent_is_thirty_empty_days(books):
    report = spend_report(books, PROVIDERS.get)
    assert len(report["days"]) == HISTORY_DAYS
    assert all(d["usd"] == 0 and d["neurons"] == 0 for d in report["days"])
    assert report["keys"] == report["models"] == report["providers"] == []


def test_the_ledger_keeps_a_day_longer_than_the_window(books):
    assert DAY_TTL >= (HISTORY_DAYS + 1) * 86400
    # The memory ledger forgets old days as the others expire them: 30 days back stay.
    for back in range(40, -1, -1):
        spend(books, back, ALICE, SCHNELL, 1.0)
    report = spend_report(books, PROVIDERS.get)
    assert all(d["usd"] == 1.0 for d in report["days"])
