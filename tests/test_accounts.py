"""Cloudflare accounts in order: parsing CF_ACCOUNTS, each failure kind, the move to the next."""

from __future__ import annotations

import base64
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
import requests
import responses

from flux_worker.backends.cloudflare import CloudflareBackend
from flux_worker.backends.cloudflare.payloads import billed_neurons
from flux_worker.catalog.workers_ai import CATALOG
from flux_worker.config import Config, ConfigError
from flux_worker.cost.accounts import (
    EXHAUSTED,
    OK,
    OVER_BUDGET,
    REJECTED,
    Account,
    AccountPool,
    parse_accounts,
    read_accounts,
)
from flux_worker.cost.books import Books, ImageCost
from flux_worker.cost.budgets import BudgetRules
from flux_worker.cost.ledgers import MemoryLedger
from flux_worker.errors import QuotaExceeded, UpstreamAuthFailed, UpstreamTimeout
from flux_worker.generation.backend import GenerationRequest
from flux_worker.net.upstream import make_session
from tests.support import FakeClock

API = "https://api.cloudflare.com/client/v4"
FREE = Account("aaaaaaaa11112222333344445555", "tok-FREE-secret-1")
PAID = Account("bbbbbbbb11112222333344445555", "tok-PAID-secret-2")
TEAM = Account("cccccccc11112222333344445555", "tok-TEAM-secret-3", budget=100.0)
SCHNELL = next(m for m in CATALOG if m.short_name == "flux-1-schnell")
JPEG = b"\xff\xd8\xff\xe0fake-jpeg"
QUOTA_BODY = {"result": {}, "success": False, "messages": [], "errors": [{
    "code": 4006, "message": "AiError: AiError: you have used up your daily free allocation of "
                             "10,000 neurons, please upgrade (x)"}]}
AUTH_BODY = {"result": None, "success": False, "messages": [],
             "errors": [{"code": 10000, "message": "Authentication error"}]}


@pytest.fixture
def clock():
    return FakeClock(datetime(2026, 11, 20, 22, 0, tzinfo=timezone.utc))


@pytest.fixture
def ledger():
    return MemoryLedger()


def pool(*accounts, ledger, clock, cooldown=300.0) -> AccountPool:
    return AccountPool(accounts, Books(ledger, BudgetRules(), clock), clock=clock,
                       cooldown=cooldown)


def url(account: Account) -> str:
    return f"{API}/accounts/{account.id}/ai/run/{SCHNELL.id}"


def ok_body() -> dict:
    return {"result": {"image": base64.b64encode(JPEG).decode()}, "success": True,
            "errors": [], "messages": []}


# -- parsing -----------------------------------------------------------------------------------

def test_parse_accounts_in_order_with_budgets():
    parsed = parse_accounts(" id-one:tok1 , id-two:tok-2@2500.5,id-three:t@k3@0 ")
    assert [a.id for a in parsed] == ["id-one", "id-two", "id-three"]
    assert [a.budget for a in parsed] == [None, 2500.5, 0.0]
    assert parsed[2].token == "t@k3"              # only the last @ starts a budget
    assert "tok1" not in repr(parsed[0])


@pytest.mark.parametrize("text", ["SECRETnocolon", "id:", ":SECRET1", "id:SECRET2@lots",
                                  "a:SECRET3,a:SECRET4", "", "a:SECRET5@-3"])
def test_parse_errors_never_show_a_token(text):
    with pytest.raises(ValueError) as info:
        parse_accounts(text)
    assert "SECRET" not in str(info.value)


def test_accounts_from_a_file(tmp_path):
    path = tmp_path / "accounts"
    path.write_text("# free first\nid-one:tok1\nid-two:tok2@500\n", encoding="utf-8")
    assert [a.id for a in read_accounts(str(path))] == ["id-one", "id-two"]
    with pytest.raises(ValueError, match="neither"):
        read_accounts(str(tmp_path / "missing"))


def test_config_reads_cf_accounts_and_refuses_both_forms():
    cfg = Config.from_env({"API_KEY": "k", "CF_ACCOUNTS": "id-one:tok1,id-two:tok2@500"})
    assert cfg.image_backend == "cloudflare"
    assert [a.id for a in cfg.cloudflare_accounts] == ["id-one", "id-two"]
    assert "tok2" in cfg.secrets()
    with pytest.raises(ConfigError, match="one form only"):
        Config.from_env({"API_KEY": "k", "CF_ACCOUNTS": "a:b", "CF_ACCOUNT_ID": "x",
                         "CF_API_TOKEN": "y"})
    with pytest.raises(ConfigError) as info:
        Config.from_env({"API_KEY": "k", "CF_ACCOUNTS": "a:tok-hidden@many"})
    assert "CF_ACCOUNTS" in str(info.value) and "tok-hidden" not in str(info.value)
    single = Config.from_env({"API_KEY": "k", "CF_ACCOUNT_ID": "x", "CF_API_TOKEN": "y"})
    assert single.cloudflare_accounts == (Account("x", "y"),)


def test_config_budgets():
    cfg = Config.from_env({"DAILY_NEURONS": "10000", "KEY_DAILY_NEURONS": "2500",
                           "API_KEY": "sk-alice,sk-bob", "KEY_BUDGETS": "sk-alice=3000"})
    rules = cfg.budget_rules()
    assert rules.service == 10000 and rules.for_key("sk-bob") == 2500
    assert rules.for_key("sk-alice") == 3000
    with pytest.raises(ConfigError, match="DAILY_NEURONS"):
        Config.from_env({"DAILY_NEURONS": "lots"})
    with pytest.raises(ConfigError, match="KEY_BUDGETS entry 1 names a key"):
        Config.from_env({"API_KEY": "sk-alice", "KEY_BUDGETS": "sk-mallory=5"})


# -- the order and each failure kind ---------------------------------------------------------

def test_order_of_preference(ledger, clock):
    assert pool(FREE, PAID, ledger=ledger, clock=clock).choose(57.6) == [FREE, PAID]


def test_used_up_account_is_skipped_until_midnight_by_every_instance(ledger, clock):
    first = pool(FREE, PAID, ledger=ledger, clock=clock)
    other_instance = pool(FREE, PAID, ledger=ledger, clock=clock)
    first.exhausted(FREE)
    assert other_instance.choose(57.6) == [PAID]
    assert other_instance.status()[0]["state"] == EXHAUSTED
    clock.now += timedelta(hours=2, seconds=1)        # 00:00:01 UTC
    assert other_instance.choose(57.6) == [FREE, PAID]


def test_rejected_token_is_skipped_for_the_cooldown_and_logged(ledger, clock, caplog):
    accounts = pool(FREE, PAID, ledger=ledger, clock=clock, cooldown=300)
    with caplog.at_level(logging.ERROR, logger="flux_worker.cost.accounts"):
        accounts.rejected(FREE, "HTTP 401, code 10000")
    assert accounts.choose(57.6) == [PAID]
    status = accounts.status()[0]
    assert status["state"] == REJECTED and status["retry_in_seconds"] == 300
    assert "REJECTED" in caplog.text and FREE.token not in caplog.text
    assert FREE.label in caplog.text and FREE.id not in caplog.text
    clock.now += timedelta(seconds=301)
    assert accounts.choose(57.6) == [FREE, PAID]


def test_account_budget_is_respected(ledger, clock):
    accounts = pool(TEAM, PAID, ledger=ledger, clock=clock)
    books = accounts.books
    books.reserve(None, 60).settle(60, estimate=60, model="m", account=TEAM.id)
    assert accounts.choose(30) == [TEAM, PAID]        # 60 + 30 <= 100
    assert accounts.choose(57.6) == [PAID]            # 60 + 57.6 > 100
    books.reserve(None, 40).settle(40, estimate=40, model="m", account=TEAM.id)
    lines = accounts.status()
    assert lines[0]["state"] == OVER_BUDGET and lines[0]["allocation_neurons"] == 100
    assert lines[1] == {"account": PAID.label, "state": OK, "spent_neurons": 0.0,
                        "allocation_neurons": 10000, "budget_neurons": None}


def test_all_accounts_out_names_the_reset(ledger, clock):
    accounts = pool(FREE, PAID, ledger=ledger, clock=clock)
    accounts.exhausted(FREE)
    accounts.exhausted(PAID)
    assert accounts.choose(57.6) == []
    err = accounts.out_of_accounts(None, 57.6)
    assert isinstance(err, QuotaExceeded) and err.status == 429
    assert "00:00 UTC (in 2 h 0 min)" in err.message and err.retry_after == 7200


def test_all_tokens_rejected_is_an_upstream_auth_failure(ledger, clock):
    accounts = pool(FREE, PAID, ledger=ledger, clock=clock)
    accounts.rejected(FREE, "x")
    accounts.rejected(PAID, "x")
    assert isinstance(accounts.out_of_accounts(None, 1.0), UpstreamAuthFailed)


def test_a_single_account_is_never_skipped(ledger, clock):
    accounts = pool(FREE, ledger=ledger, clock=clock)
    accounts.exhausted(FREE)
    accounts.rejected(FREE, "x")
    assert accounts.choose(57.6) == [FREE]


# -- the backend moves on within one generation ---------------------------------------------

@pytest.fixture
def rsps():
    with responses.RequestsMock() as mock:
        yield mock


def backend(accounts: AccountPool) -> CloudflareBackend:
    return CloudflareBackend(session=make_session(2), accounts=accounts, retries=1,
                             sleep=lambda s: None, rng=lambda: 0.0)


def request() -> GenerationRequest:
    return GenerationRequest(prompt="a cat", model=SCHNELL, width=1024, height=1024, steps=4)


def test_4006_moves_on_to_the_next_account_at_once(rsps, ledger, clock):
    accounts = pool(FREE, PAID, ledger=ledger, clock=clock)
    rsps.post(url(FREE), json=QUOTA_BODY, status=429)
    rsps.post(url(PAID), json=ok_body(), headers={"cf-ai-neurons": "172.8"})
    image = backend(accounts).generate(request())
    assert image.data == JPEG and image.account == PAID.id and image.neurons == 172.8
    assert [c.request.headers["Authorization"] for c in rsps.calls] == [
        f"Bearer {FREE.token}", f"Bearer {PAID.token}"]
    # the next generation goes straight to the paid account
    rsps.post(url(PAID), json=ok_body())
    assert backend(accounts).generate(request()).account == PAID.id
    assert len(rsps.calls) == 3


def test_rejected_token_moves_on_and_is_reported(rsps, ledger, clock, caplog):
    accounts = pool(FREE, PAID, ledger=ledger, clock=clock)
    rsps.post(url(FREE), json=AUTH_BODY, status=401)
    rsps.post(url(PAID), json=ok_body())
    image = backend(accounts).generate(request())
    assert image.account == PAID.id and image.neurons is None
    assert accounts.status()[0]["state"] == REJECTED
    assert FREE.token not in caplog.text and PAID.token not in caplog.text


def test_over_budget_account_is_not_called(rsps, ledger, clock):
    accounts = pool(TEAM, PAID, ledger=ledger, clock=clock)
    accounts.books.reserve(None, 99).settle(99, estimate=99, model="m", account=TEAM.id)
    rsps.post(url(PAID), json=ok_body())
    assert backend(accounts).generate(request()).account == PAID.id
    assert len(rsps.calls) == 1


def test_every_account_used_up_is_429_without_a_second_call(rsps, ledger, clock):
    accounts = pool(FREE, PAID, ledger=ledger, clock=clock)
    rsps.post(url(FREE), json=QUOTA_BODY, status=429)
    rsps.post(url(PAID), json=QUOTA_BODY, status=429)
    with pytest.raises(QuotaExceeded, match="All 2 Cloudflare accounts"):
        backend(accounts).generate(request())
    with pytest.raises(QuotaExceeded, match="00:00 UTC"):
        backend(accounts).generate(request())
    assert len(rsps.calls) == 2                        # the second request sent nothing


def test_the_single_account_form_keeps_cloudflares_own_answer(rsps):
    single = CloudflareBackend(account_id=FREE.id, api_token=FREE.token, session=make_session(1),
                               retries=0)
    rsps.post(url(FREE), json=QUOTA_BODY, status=429)
    with pytest.raises(QuotaExceeded, match="daily free Workers AI allocation"):
        single.generate(request())
    rsps.post(url(FREE), json=ok_body())
    assert single.generate(request()).account == FREE.id


@pytest.mark.parametrize("headers,expected", [
    ({"cf-ai-neurons": "57.6"}, 57.6), ({"cf-ai-neurons": "nan"}, None),
    ({"cf-ai-neurons": "-1"}, None), ({"cf-ai-neurons": "x"}, None), ({}, None)])
def test_billed_neurons_header(headers, expected):
    assert billed_neurons(headers) == expected


# -- budgets of accounts are reserved, and what was billed is booked -----------------------------

ALPHA = Account("dddddddd11112222333344445555", "tok-ALPHA-secret-4", budget=300.0)
BETA = Account("eeeeeeee11112222333344445555", "tok-BETA-secret-5", budget=300.0)
KEY = "sk-budget-test-key-0001"


def draw(accounts: AccountPool, billed: float | None = None) -> tuple[str, float | None]:
    """One generation as the pipeline runs it: reserve, generate, book, close."""
    books = accounts.books
    with books.reserve(KEY, SCHNELL.estimate(1024, 1024, 4)) as hold:
        cost = ImageCost(hold, hold.estimate, SCHNELL.id)
        try:
            image = backend(accounts).generate(replace(request(), cost=cost))
        except QuotaExceeded:
            return "refused", None
        return image.account or "-", cost.billed(image.neurons, image.account)


def slow_ok(headers: dict | None = None):
    def answer(_request):
        time.sleep(0.2)                     # every generation is in flight at once
        return 200, {"Content-Type": "application/json", **(headers or {})}, json.dumps(
            ok_body())
    return answer


@pytest.mark.parametrize("billed", [None, 70.0])
def test_parallel_generations_stay_within_account_budgets_by_the_stated_bound(
        rsps, ledger, clock, billed):
    """50 at once on two accounts @300: once 9.6 times the budget, now within the bound.

    The bound: an account's spend passes its budget by at most what Cloudflare billed above
    the estimates of the images in flight, so never when it bills the estimate.
    """
    accounts = pool(ALPHA, BETA, ledger=ledger, clock=clock)
    headers = {"cf-ai-neurons": str(billed)} if billed else None
    rsps.add_callback(responses.POST, url(ALPHA), callback=slow_ok(headers))
    rsps.add_callback(responses.POST, url(BETA), callback=slow_ok(headers))
    with ThreadPoolExecutor(50) as pool_:
        outcomes = list(pool_.map(lambda _: draw(accounts), range(50)))
    estimate = SCHNELL.estimate(1024, 1024, 4)
    spent = accounts.books.spent()
    served = {a.id: sum(1 for who, _ in outcomes if who == a.id) for a in (ALPHA, BETA)}
    assert served == {ALPHA.id: 5, BETA.id: 5}       # 5 x 57.6 = 288 <= 300 < 6 x 57.6
    assert sum(1 for who, _ in outcomes if who == "refused") == 40
    for account in (ALPHA, BETA):
        over = max(0.0, (billed or estimate) - estimate) * served[account.id]
        assert spent["account:" + account.id] <= account.budget + over + 1e-6
        assert spent["account:" + account.id] == pytest.approx(
            served[account.id] * (billed or estimate))
    assert len(rsps.calls) == 10                     # the 40 refused sent nothing


def test_a_call_that_billed_nothing_gives_the_account_claim_back(rsps, ledger, clock):
    team = Account(TEAM.id, TEAM.token, budget=100.0)
    accounts = pool(team, PAID, ledger=ledger, clock=clock)
    rsps.post(url(team), json=QUOTA_BODY, status=429)
    rsps.post(url(PAID), json=ok_body())
    assert draw(accounts) == (PAID.id, pytest.approx(57.6))
    spent = accounts.books.spent()
    assert spent.get("account:" + team.id, 0) == 0
    assert spent["account:" + PAID.id] == pytest.approx(57.6)


def test_a_call_that_may_have_been_billed_is_booked_although_it_failed(rsps, ledger, clock):
    """A read timeout: the model may have run to the end, so the estimate is counted."""
    accounts = pool(ALPHA, PAID, ledger=ledger, clock=clock)
    rsps.post(url(ALPHA), body=requests.ReadTimeout("slow"))
    books = accounts.books
    with books.reserve(KEY, 57.6) as hold:
        cost = ImageCost(hold, 57.6, SCHNELL.id)
        with pytest.raises(UpstreamTimeout):
            backend(accounts).generate(replace(request(), cost=cost))
    spent = books.spent()
    assert spent["service"] == pytest.approx(57.6)
    assert spent["account:" + ALPHA.id] == pytest.approx(57.6)
    assert len(rsps.calls) == 1                      # not retried: it may still be running
