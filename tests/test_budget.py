"""Daily budgets in neurons and US dollars: reserve, settle, release, the UTC day boundary,
every ledger kind, and KEY_BUDGETS read."""

from __future__ import annotations

import signal
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from flux_worker.cost.books import Books, ImageCost
from flux_worker.cost.budgets import BudgetRules, parse_key_budgets
from flux_worker.cost.days import human_duration, next_reset, utc_day
from flux_worker.cost.health import CountersHealth
from flux_worker.cost.ledgers import (
    DiskLedger,
    MemoryLedger,
    RedisLedger,
    ledger_from_location,
    short_hash,
)
from flux_worker.errors import QuotaExceeded, StorageError
from flux_worker.storage import CountersLocation
from flux_worker.storage.counters import REDIS_TIMEOUT

ALICE, BOB, CAROL = "sk-alice-0001", "sk-bob-0002", "sk-carol-0003"


class Clock:
    """A settable clock (UTC)."""

    def __init__(self, when: datetime):
        self.now = when

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock():
    return Clock(datetime(2026, 11, 20, 23, 58, 0, tzinfo=timezone.utc))


@pytest.fixture(params=["memory", "disk", "redis"])
def ledger(request, tmp_path):
    if request.param == "memory":
        made = MemoryLedger()
    elif request.param == "disk":
        made = DiskLedger(str(tmp_path / "budgets"))
    else:
        made = RedisLedger(request.getfixturevalue("redis_server").url)
    yield made
    made.close()


def books(ledger, clock, **rules) -> Books:
    return Books(ledger, BudgetRules(**rules), clock)


def test_day_and_reset_helpers():
    late = datetime(2026, 11, 20, 23, 59, 30, tzinfo=timezone.utc)
    assert utc_day(late) == "2026-11-20"
    assert next_reset(late) == datetime(2026, 11, 21, tzinfo=timezone.utc)
    # a clock in another zone still counts in UTC days
    tokyo = late.astimezone(timezone(timedelta(hours=9)))
    assert utc_day(tokyo) == "2026-11-20"
    assert human_duration(30) == "1 min" and human_duration(5 * 3600 + 720) == "5 h 12 min"


def test_reserve_and_settle_with_the_real_figure(ledger, clock):
    b = books(ledger, clock, service=1000)
    hold = b.reserve(ALICE, 57.6)
    assert b.spent()["service"] == pytest.approx(57.6)
    hold.settle(172.8, estimate=57.6, model="m", account="acc-1")
    hold.close()
    spent = b.spent()
    assert spent["service"] == pytest.approx(172.8)
    assert spent["key:" + short_hash(ALICE)] == pytest.approx(172.8)
    assert spent["account:acc-1"] == pytest.approx(172.8)
    assert hold.neurons == pytest.approx(172.8)


def test_failed_generation_costs_nothing(ledger, clock):
    b = books(ledger, clock, service=1000)
    with b.reserve(ALICE, 57.6):
        pass                                   # the generation failed: nothing settled
    assert b.spent().get("service", 0) == 0
    assert b.spent().get("key:" + short_hash(ALICE), 0) == 0


def test_batch_settles_what_was_made_and_releases_the_rest(ledger, clock):
    b = books(ledger, clock)
    hold = b.reserve(ALICE, 3 * 100.0)
    hold.settle(100.0, estimate=100.0, model="m")
    hold.settle(90.0, estimate=100.0, model="m")
    hold.close()
    hold.close()                               # idempotent
    assert b.spent()["service"] == pytest.approx(190.0)


class CountingLedger(MemoryLedger):
    """A memory ledger that counts its writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def charge(self, day, amounts, limits):
        self.writes += 1
        return super().charge(day, amounts, limits)

    def add(self, day, amounts):
        self.writes += 1
        super().add(day, amounts)


def test_without_budgets_only_the_settlement_writes(clock):
    ledger = CountingLedger()
    b = books(ledger, clock)
    with b.reserve(ALICE, 57.6) as hold:
        assert ledger.writes == 0 and b.spent() == {}     # nothing to hold back
        hold.settle(60.0, estimate=57.6, model="m")
    assert ledger.writes == 1
    assert b.spent()["service"] == pytest.approx(60.0)
    assert b.spent()["key:" + short_hash(ALICE)] == pytest.approx(60.0)
    with b.reserve(None, 57.6):
        pass                                   # failed: nothing was written, nothing to undo
    assert ledger.writes == 1
    limited = books(CountingLedger(), clock, key_default=1000)
    limited.reserve(ALICE, 57.6)               # a budget applies: the estimate is held at once
    assert limited.ledger.writes == 1 and limited.spent()["service"] == pytest.approx(57.6)


def test_service_budget_refuses_with_which_budget_what_is_left_and_when(ledger, clock):
    b = books(ledger, clock, service=100)
    b.reserve(ALICE, 57.6).settle(57.6, estimate=57.6, model="m")
    with pytest.raises(QuotaExceeded) as info:
        b.reserve(BOB, 57.6)
    err = info.value
    assert err.status == 429 and err.code == "insufficient_quota"
    assert "DAILY_NEURONS" in err.message and "100.0 neurons" in err.message
    assert "42.4 left" in err.message and "00:00 UTC (in 2 min)" in err.message
    assert err.retry_after == 120
    # the refused request reserved nothing
    assert b.spent()["service"] == pytest.approx(57.6)


def test_key_budgets_default_and_per_key(ledger, clock):
    rules = dict(key_default=200, keys=parse_key_budgets(f"{ALICE}=100,{BOB}=500").neurons)
    b = books(ledger, clock, **rules)
    b.reserve(ALICE, 60).close()
    b.reserve(ALICE, 60).settle(60, estimate=60, model="m")
    with pytest.raises(QuotaExceeded) as info:
        b.reserve(ALICE, 60.0)                  # 60 + 60 > 100
    assert "API key's daily budget of 100.0" in info.value.message
    assert "40.0 left" in info.value.message
    b.reserve(BOB, 450).settle(450, estimate=450, model="m")      # Bob's own 500
    b.reserve(CAROL, 190).settle(190, estimate=190, model="m")    # the default 200
    with pytest.raises(QuotaExceeded):
        b.reserve(CAROL, 20)
    # no key is stored in full
    assert not any(k in name for name in b.spent() for k in (ALICE, BOB, CAROL))


def test_budgets_reset_at_utc_midnight(ledger, clock):
    b = books(ledger, clock, service=100)
    b.reserve(None, 90).settle(90, estimate=90, model="m")
    with pytest.raises(QuotaExceeded):
        b.reserve(None, 20)
    clock.advance(minutes=2, seconds=1)        # 00:00:01 the next day
    assert b.today() == "2026-11-21"
    b.reserve(None, 20).settle(20, estimate=20, model="m")
    assert b.spent()["service"] == pytest.approx(20)
    assert b.spent("2026-11-20")["service"] == pytest.approx(90)


def test_a_hold_settles_on_the_day_it_was_reserved(ledger, clock):
    b = books(ledger, clock, service=100)
    hold = b.reserve(None, 50)
    clock.advance(minutes=5)                    # the generation ends after midnight
    hold.settle(60, estimate=50, model="m")
    assert b.spent("2026-11-20")["service"] == pytest.approx(60)
    assert b.spent().get("service", 0) == 0


def test_usage_lines(ledger, clock):
    b = books(ledger, clock, service=1000, key_default=300, key_default_usd=0.5)
    b.reserve(ALICE, 57.6, 0.0006336).settle(57.6, estimate=57.6, model="m", usd=0.0006336,
                                             estimate_usd=0.0006336)
    line = b.usage_of_key(ALICE)
    assert line == {"key": short_hash(ALICE), "spent_neurons": 57.6, "budget_neurons": 300,
                    "left_neurons": 242.4, "spent_usd": 0.0006336, "budget_usd": 0.5,
                    "left_usd": 0.4993664}
    assert b.usage_of_service()["left_neurons"] == pytest.approx(942.4)
    everyone = b.all_keys([ALICE, BOB])
    assert [line["key"] for line in everyone] == [short_hash(ALICE), short_hash(BOB)]


def test_parse_key_budgets_never_echoes_a_key():
    with pytest.raises(ValueError) as info:
        parse_key_budgets("sk-secret-one=abc")
    assert "sk-secret" not in str(info.value) and "entry 1" in str(info.value)
    with pytest.raises(ValueError) as info:
        parse_key_budgets("sk-secret-one=10", known_keys=["sk-other"])
    assert "sk-secret" not in str(info.value) and "not one of API_KEY" in str(info.value)
    with pytest.raises(ValueError):
        parse_key_budgets("sk-x=-5")
    assert parse_key_budgets(" sk-a = 3000 , sk-b=500 ,") == (
        {short_hash("sk-a"): 3000.0, short_hash("sk-b"): 500.0}, {})


def test_ledger_from_location(tmp_path, redis_url):
    assert isinstance(ledger_from_location(CountersLocation.parse("memory://")), MemoryLedger)
    disk = ledger_from_location(CountersLocation.parse(f"disk://{tmp_path}"))
    assert isinstance(disk, DiskLedger)
    assert (tmp_path / "budgets").is_dir()
    disk.close()
    remote = ledger_from_location(CountersLocation.parse(redis_url))
    assert isinstance(remote, RedisLedger)
    # The counters' client: a hung Redis costs a generation half a second, not a hang.
    assert remote.client.connection_pool.connection_kwargs["socket_timeout"] == 0.5
    remote.close()


def test_disk_ledger_is_shared_by_two_openers(tmp_path, clock):
    first = Books(DiskLedger(str(tmp_path)), BudgetRules(service=100), clock)
    second = Books(DiskLedger(str(tmp_path)), BudgetRules(service=100), clock)
    first.reserve(None, 60).settle(60, estimate=60, model="m")
    with pytest.raises(QuotaExceeded):
        second.reserve(None, 60)


class Ticking:
    """A monotonic clock for CountersHealth that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingRedisLedger(RedisLedger):
    """A Redis ledger that counts the commands it was asked to send."""

    calls = 0

    def charge(self, day, amounts, limits):
        self.calls += 1
        return super().charge(day, amounts, limits)


def test_with_a_budget_an_unreachable_ledger_refuses_at_once_then_recovers(redis_server, clock,
                                                                          caplog):
    """Redis stopped: 503 storage_error, the ledger asked once, not once per request."""
    ticking = Ticking()
    ledger = CountingRedisLedger(redis_server.url)
    b = Books(ledger, BudgetRules(service=100), clock,
              health=CountersHealth(clock=ticking))
    redis_server.stop()
    for _ in range(20):
        with pytest.raises(StorageError) as info:
            b.reserve(ALICE, 50)
        assert info.value.status == 503 and info.value.code == "storage_error"
        assert info.value.retry_after and "COUNTERS_URL" in info.value.message
        assert str(redis_server.port) not in info.value.message
    assert ledger.calls == 1                        # the outage is remembered
    with pytest.raises(StorageError):
        b.counters_state()                          # /readyz asks for real, and is told
    redis_server.start()
    with pytest.raises(StorageError):
        b.reserve(ALICE, 50)                        # still within the remembered second
    ticking.now += 1.0
    b.reserve(ALICE, 50).settle(50, estimate=50, model="m")
    assert b.spent()["service"] == pytest.approx(50)
    assert b.counters_state() == "ok"
    assert ALICE not in caplog.text and "counters unavailable" in caplog.text
    ledger.close()


def test_a_hung_ledger_costs_one_request_its_timeout_and_the_others_nothing(redis_server,
                                                                           clock):
    """Redis paused (SIGSTOP): the first reserve waits the short timeout, the rest do not."""
    b = Books(RedisLedger(redis_server.url), BudgetRules(key_default=1000), clock)
    b.reserve(ALICE, 10).close()                    # a pooled connection, as in service
    process = redis_server._process
    process.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(StorageError):
            b.reserve(ALICE, 10)
        first = time.monotonic() - started
        started = time.monotonic()
        for _ in range(50):
            with pytest.raises(StorageError):
                b.reserve(BOB, 10)
        rest = time.monotonic() - started
    finally:
        process.send_signal(signal.SIGCONT)
    # Generous bounds that still prove the point: once 2 s and 5 s per request, fail-open.
    assert first < REDIS_TIMEOUT + 1.0
    assert rest < 0.5
    b.ledger.close()


def test_one_request_asks_a_hung_ledger_again_while_the_others_are_refused(clock):
    """After the remembered second, one request probes; the others go by the last answer."""
    release = threading.Event()
    asked = []

    class Hung(MemoryLedger):
        def charge(self, day, amounts, limits):
            asked.append(1)
            release.wait(5)
            raise ConnectionError("still down")

    ticking = Ticking()
    b = Books(Hung(), BudgetRules(service=100), clock, health=CountersHealth(clock=ticking))
    release.set()
    with pytest.raises(StorageError):
        b.reserve(None, 1)                          # the outage is found and remembered
    release.clear()
    ticking.now += 1.0
    outcomes: list[float] = []

    def attempt() -> None:
        started = time.monotonic()
        with pytest.raises(StorageError):
            b.reserve(None, 1)
        outcomes.append(time.monotonic() - started)

    prober = threading.Thread(target=attempt)
    prober.start()
    while len(asked) < 2:
        time.sleep(0.01)
    others = [threading.Thread(target=attempt) for _ in range(10)]
    for thread in others:
        thread.start()
    for thread in others:
        thread.join(5)
    assert len(outcomes) == 10 and max(outcomes) < 0.5 and len(asked) == 2
    release.set()
    prober.join(5)


def test_without_a_budget_an_unreachable_ledger_does_not_stop_generation(redis_server, clock,
                                                                        caplog):
    b = Books(RedisLedger(redis_server.url), BudgetRules(), clock)
    redis_server.stop()
    hold = b.reserve(ALICE, 50)                 # nothing to hold back: no ledger call
    hold.settle(50, estimate=50, model="m")     # lost, and logged
    assert "budget ledger unavailable" in caplog.text
    assert ALICE not in caplog.text
    assert b.counters_state().startswith("unreachable; no budget")
    b.ledger.close()


def test_a_settlement_lost_in_an_outage_leaves_the_reservation_counted(clock):
    class Flaky(MemoryLedger):
        down = False

        def add(self, day, amounts):
            if self.down:
                raise ConnectionError("down")
            super().add(day, amounts)

    ledger = Flaky()
    b = Books(ledger, BudgetRules(service=100), clock)
    hold = b.reserve(None, 40)
    ledger.down = True
    hold.close()                                # the release is lost: 40 stay counted
    ledger.down = False
    assert ledger.read(b.today())["service"] == 40_000


# -- per-account budgets: reserved like the key's ------------------------------------------------

def test_an_account_budget_is_reserved_so_parallel_images_cannot_pass_it(ledger, clock):
    b = books(ledger, clock)
    holds = [b.reserve(ALICE, 57.6) for _ in range(10)]
    claimed = [h.claim_account("acc-a", 57.6, 300) for h in holds]
    assert claimed == [True] * 5 + [False] * 5          # 5 x 57.6 = 288 <= 300 < 345.6
    assert b.spent()["account:acc-a"] == pytest.approx(288)
    for hold, ok in zip(holds, claimed, strict=True):
        if ok:
            hold.settle(57.6, estimate=57.6, model="m", account="acc-a")
        hold.close()
    assert b.spent()["account:acc-a"] == pytest.approx(288)
    # a claim given back (the call billed nothing) frees the room at once
    hold = b.reserve(ALICE, 10)
    assert hold.claim_account("acc-b", 10, 15) and not b.reserve(BOB, 10).claim_account(
        "acc-b", 10, 15)
    hold.unclaim_account("acc-b", 10)
    assert b.reserve(BOB, 10).claim_account("acc-b", 10, 15)


# -- US dollars beside neurons ---------------------------------------------------------------

SCHNELL_USD = 0.0006336          # 57.6 neurons at $0.011 per 1,000
PARTNER_USD = 0.04               # one image of a model billed in dollars only


def test_dollars_are_reserved_settled_and_given_back_like_neurons(ledger, clock):
    b = books(ledger, clock, service_usd=1.0)
    hold = b.reserve(ALICE, 2 * 57.6, 2 * SCHNELL_USD)
    assert b.spent()["usd:service"] == pytest.approx(2 * SCHNELL_USD)
    assert b.spent()["usd:key:" + short_hash(ALICE)] == pytest.approx(2 * SCHNELL_USD)
    # Cloudflare billed the first image 172.8 neurons: its dollars follow; the second failed.
    hold.settle(172.8, estimate=57.6, model="m", usd=0.0019008, estimate_usd=SCHNELL_USD)
    hold.close()
    spent = b.spent()
    assert spent["usd:service"] == pytest.approx(0.0019008)
    assert spent["usd:key:" + short_hash(ALICE)] == pytest.approx(0.0019008)
    assert spent["service"] == pytest.approx(172.8)
    assert (hold.neurons, hold.usd) == (pytest.approx(172.8), pytest.approx(0.0019008))
    # whole nano-dollars: a Workers AI image's dollars count without rounding
    assert ledger.read(b.today())["usd:service"] == 1_900_800


def test_a_model_billed_in_dollars_spends_no_neurons_and_no_neuron_budget_refuses_it(
        ledger, clock):
    b = books(ledger, clock, service=100, key_default=10)
    b.reserve(ALICE, 10).settle(10, estimate=10, model="m")   # the key's neurons are used up
    with pytest.raises(QuotaExceeded):
        b.reserve(ALICE, 1)
    hold = b.reserve(ALICE, None, PARTNER_USD)
    assert hold.estimate is None and hold.neurons is None
    hold.settle(None, estimate=None, model="openai/gpt-image-2", usd=PARTNER_USD,
                estimate_usd=PARTNER_USD)
    hold.close()
    spent = b.spent()
    assert spent["service"] == pytest.approx(10)                 # no neuron moved
    assert spent["usd:service"] == pytest.approx(PARTNER_USD)
    assert hold.usd == pytest.approx(PARTNER_USD)


def test_the_service_dollar_budget_refuses_naming_it_with_what_is_left_and_needed(ledger,
                                                                                  clock):
    b = books(ledger, clock, service_usd=0.1, service=1_000_000)
    for _ in range(2):
        b.reserve(BOB, None, PARTNER_USD).settle(None, estimate=None, model="p",
                                                 usd=PARTNER_USD, estimate_usd=PARTNER_USD)
    with pytest.raises(QuotaExceeded) as info:
        b.reserve(ALICE, None, PARTNER_USD)
    err = info.value
    assert err.status == 429 and err.code == "insufficient_quota"
    assert err.message.startswith("This service's daily dollar budget (DAILY_USD) of $0.10 is "
                                  "used up: $0.02 left, and this request needs about $0.04.")
    assert "00:00 UTC (in 2 min)" in err.message and err.retry_after == 120
    # a dollar budget counts every image: Workers AI's neurons at the paid rate too
    b.reserve(ALICE, 57.6, SCHNELL_USD).close()
    with pytest.raises(QuotaExceeded):
        b.reserve(ALICE, 40 * 57.6, 40 * SCHNELL_USD)         # $0.025 > the $0.02 left
    assert b.spent()["usd:service"] == pytest.approx(2 * PARTNER_USD)   # refusals hold nothing
    assert b.spent().get("usd:key:" + short_hash(ALICE), 0) == 0


def test_a_key_with_a_neuron_and_a_dollar_budget_is_held_to_both(ledger, clock):
    rules = parse_key_budgets(f"{ALICE}=100,{ALICE}=$0.05,{BOB}=2.5usd")
    b = books(ledger, clock, keys=rules.neurons, keys_usd=rules.usd, key_default_usd=0.01)
    b.reserve(ALICE, 57.6, SCHNELL_USD).settle(57.6, estimate=57.6, model="m",
                                               usd=SCHNELL_USD, estimate_usd=SCHNELL_USD)
    with pytest.raises(QuotaExceeded) as info:
        b.reserve(ALICE, 57.6, SCHNELL_USD)                   # neurons: 115.2 > 100
    assert "budget of 100.0 neurons" in info.value.message
    with pytest.raises(QuotaExceeded) as info:
        b.reserve(ALICE, None, PARTNER_USD * 2)               # dollars: past $0.05
    assert info.value.message.startswith("This API key's daily dollar budget of $0.05 is used "
                                         "up: $0.0494 left, and this request needs about "
                                         "$0.08.")
    b.reserve(ALICE, None, PARTNER_USD).close()               # $0.04 fits
    b.reserve(BOB, None, 2.5).close()                         # Bob's own $2.50
    with pytest.raises(QuotaExceeded) as info:
        b.reserve(CAROL, None, PARTNER_USD)                   # the default $0.01
    assert "daily dollar budget of $0.01 is" in info.value.message
    assert not any(k in info.value.message for k in (ALICE, BOB, CAROL))


def test_usage_lines_count_both_units_and_each_model(ledger, clock):
    b = books(ledger, clock, service=1000, service_usd=5, key_default_usd=1)
    b.reserve(ALICE, 57.6, SCHNELL_USD).settle(57.6, estimate=57.6, model="schnell",
                                               usd=SCHNELL_USD, estimate_usd=SCHNELL_USD)
    b.reserve(CAROL, None, PARTNER_USD).settle(None, estimate=None, model="partner",
                                               usd=PARTNER_USD, estimate_usd=PARTNER_USD)
    service = b.usage_of_service()
    assert service == {"spent_neurons": 57.6, "budget_neurons": 1000, "left_neurons": 942.4,
                       "spent_usd": pytest.approx(SCHNELL_USD + PARTNER_USD), "budget_usd": 5,
                       "left_usd": pytest.approx(5 - SCHNELL_USD - PARTNER_USD)}
    # Carol is no configured key, seen today through her dollars only
    lines = {line["key"]: line for line in b.all_keys([ALICE])}
    assert lines[short_hash(CAROL)]["spent_usd"] == PARTNER_USD
    assert lines[short_hash(CAROL)]["spent_neurons"] == 0
    assert lines[short_hash(CAROL)]["left_usd"] == pytest.approx(1 - PARTNER_USD)
    assert b.usage_of_models() == [
        {"model": "partner", "spent_neurons": 0.0, "spent_usd": PARTNER_USD},
        {"model": "schnell", "spent_neurons": 57.6, "spent_usd": SCHNELL_USD}]


def test_an_edit_hold_is_lowered_in_both_units(ledger, clock):
    b = books(ledger, clock, service=1000, service_usd=1)
    hold = b.reserve(ALICE, 300, 0.0033)
    hold.lower_to(100, 0.0011)
    assert (hold.estimate, hold.estimate_usd) == (100, 0.0011)
    assert b.spent()["service"] == pytest.approx(100)
    assert b.spent()["usd:service"] == pytest.approx(0.0011)
    hold.lower_to(None, 0.0005)                  # None: that unit stays as it is
    assert b.spent()["service"] == pytest.approx(100)
    assert b.spent()["usd:service"] == pytest.approx(0.0005)
    hold.close()
    assert b.spent()["service"] == 0 and b.spent()["usd:service"] == 0


def test_image_cost_books_reported_neurons_dollars_or_the_estimates(clock):
    b = books(MemoryLedger(), clock)
    with b.reserve(ALICE, 3 * 57.6, 3 * SCHNELL_USD) as hold:
        # nothing reported: the estimates
        cost = ImageCost(hold, 57.6, "schnell", SCHNELL_USD)
        assert cost.billed(None) == 57.6 and cost.usd == SCHNELL_USD
        # Cloudflare's neurons: their dollars at the paid rate
        cost = ImageCost(hold, 57.6, "schnell", SCHNELL_USD)
        assert cost.billed(100.0) == 100.0 and cost.usd == pytest.approx(0.0011)
        # a provider's own dollar figure
        cost = ImageCost(hold, None, "partner", PARTNER_USD)
        assert cost.billed(None, usd=0.05) is None and cost.usd == 0.05
    assert b.spent()["service"] == pytest.approx(157.6)
    assert b.spent()["usd:service"] == pytest.approx(SCHNELL_USD + 0.0011 + 0.05)
    # a model priced in neither unit books nothing
    with b.reserve(ALICE, None, None) as hold:
        cost = ImageCost(hold, None, "unpriced")
        assert cost.billed(None) is None and cost.usd is None
    assert b.spent()["service"] == pytest.approx(157.6)
    assert not any("unpriced" in name for name in b.spent())


def test_parse_key_budgets_reads_dollar_entries_and_never_echoes_a_key():
    parsed = parse_key_budgets("sk-a=3000, sk-a=$1, sk-b=2.5usd, sk-c=$0, sk-d = 7 USD")
    assert parsed.neurons == {short_hash("sk-a"): 3000.0}
    assert parsed.usd == {short_hash("sk-a"): 1.0, short_hash("sk-b"): 2.5,
                          short_hash("sk-c"): 0.0, short_hash("sk-d"): 7.0}
    for bad in ("sk-secret-one=$abc", "sk-secret-one=$-1", "sk-secret-one=$nan",
                "sk-secret-one=usd"):
        with pytest.raises(ValueError) as info:
            parse_key_budgets(bad)
        assert "sk-secret" not in str(info.value) and "entry 1" in str(info.value)
        assert "dollars" in str(info.value)


def test_fits_reads_both_units_and_reserves_nothing(ledger, clock):
    # `model: auto` asks whether one image fits before choosing: a read, in every unit billed.
    b = books(ledger, clock, service=100, key_default_usd=0.05)
    b.reserve(ALICE, 60.0, 0.03).settle(60.0, estimate=60.0, model="m", usd=0.03,
                                        estimate_usd=0.03)
    assert b.fits(ALICE, 40.0, 0.02)
    assert not b.fits(ALICE, 41.0, None)          # neurons: 101 > 100
    assert not b.fits(ALICE, None, 0.021)         # dollars: past the key's $0.05
    assert b.fits(BOB, None, 0.05)                # Bob has spent nothing
    assert b.fits(None, None, None)               # unpriced: nothing to refuse
    assert b.spent()["service"] == 60.0           # asking reserved nothing
