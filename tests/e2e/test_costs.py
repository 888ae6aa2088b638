"""Cost control end to end: two accounts (one used up), budgets in neurons and dollars on a
shared Redis, /v1/usage.

The real service runs under gunicorn against the fake Cloudflare, which here knows two accounts
and answers 4006 (daily allocation used up) for the first one.
"""

from __future__ import annotations

import hashlib
import json
import time

import openai
import pytest
import requests

from harness.fakes import cloudflare
from harness.service import API_KEY, start_service
from tests.support import RedisServer, need_redis, sdk

pytestmark = pytest.mark.e2e

FREE_ID, FREE_TOKEN = "free0000aaaabbbbccccdddd", "cf-FREE-token-SECRET-1"
PAID_ID, PAID_TOKEN = "paid1111aaaabbbbccccdddd", "cf-PAID-token-SECRET-2"
ALICE, BOB = "sk-alice-e2e-SECRET-000001", "sk-bob-e2e-SECRET-000002"
ADMIN = "sk-admin-e2e-SECRET-999999"
SCHNELL_1024 = 57.6


@pytest.fixture(scope="module")
def fake():
    server = cloudflare.start(account_id=FREE_ID, api_token=FREE_TOKEN,
                              more_accounts={PAID_ID: PAID_TOKEN})
    yield server
    server.stop()


@pytest.fixture
def cf(fake):
    fake.reset()
    yield fake
    fake.reset()


def env_for(fake, **extra) -> dict[str, str]:
    env = {"API_KEY": f"{ALICE},{BOB}", "ADMIN_API_KEY": ADMIN,
           "CF_ACCOUNTS": f"{FREE_ID}:{FREE_TOKEN},{PAID_ID}:{PAID_TOKEN}",
           "CF_API_BASE": fake.url + "/client/v4", "UPSTREAM_RETRIES": "0",
           "UPSTREAM_TIMEOUT": "10"}
    env.update(extra)
    return env



def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def runs(fake) -> list[str]:
    return [r["account"] for r in fake.requests() if r["kind"] == "run"]


def assert_no_secret_logged(service) -> None:
    log = service.log()
    for secret in (FREE_TOKEN, PAID_TOKEN, ALICE, BOB, ADMIN):
        assert secret not in log, "a token or a full key reached the log"


@pytest.fixture
def two_accounts(cf, tmp_path):
    service = start_service(tmp_path, env_for(cf, SHOW_COST="true"), workers=1)
    yield service
    service.stop()


def test_used_up_account_moves_to_the_next_within_one_request(two_accounts, cf):
    cf.exhaust(FREE_ID)
    raw = sdk(two_accounts, ALICE).chat.completions.with_raw_response.create(
        model="flux", messages=[{"role": "user", "content": "a cute cat"}])
    answer = raw.parse().choices[0].message.content
    assert "/image/" in answer and "57.6 neurons" in answer
    assert raw.headers["X-Neurons"] == "57.6"
    assert runs(cf) == [FREE_ID, PAID_ID]          # one request, two accounts
    # The used-up account is skipped from now on (until 00:00 UTC).
    assert sdk(two_accounts, ALICE).chat.completions.create(
        model="flux", messages=[{"role": "user", "content": "a dog"}]).choices
    assert runs(cf) == [FREE_ID, PAID_ID, PAID_ID]
    info = requests.get(two_accounts.api + "/usage", headers=bearer(ADMIN), timeout=10).json()
    assert [a["state"] for a in info["accounts"]] == ["allocation_used_up", "ok"]
    assert info["accounts"][1]["spent_neurons"] == pytest.approx(2 * SCHNELL_1024)
    assert_no_secret_logged(two_accounts)


def test_cloudflares_neurons_header_is_the_figure_used(two_accounts, cf):
    cf.state.neurons_header = "172.8"
    try:
        resp = requests.post(two_accounts.api + "/images/generations", headers=bearer(BOB),
                             json={"prompt": "a cat"}, timeout=30)
    finally:
        cf.state.neurons_header = None
    assert resp.status_code == 200 and resp.headers["X-Neurons"] == "172.8"
    mine = requests.get(two_accounts.api + "/usage", headers=bearer(BOB), timeout=10).json()
    assert mine["key"]["spent_neurons"] == pytest.approx(172.8)
    admin = requests.get(two_accounts.api + "/usage", headers=bearer(ADMIN), timeout=10).json()
    assert admin["accounts"][0]["spent_neurons"] == pytest.approx(172.8)
    # /metrics is open: the neurons per model, no account label.
    metrics = requests.get(two_accounts.url + "/metrics", timeout=10).text
    assert any(line.startswith("flux_worker_neurons_total") and line.endswith(" 172.8")
               for line in metrics.splitlines())
    assert "account=" not in metrics and FREE_ID[:8] not in metrics


def test_stream_moves_to_the_next_account_without_an_error(two_accounts, cf):
    cf.exhaust(FREE_ID)
    resp = requests.post(two_accounts.api + "/chat/completions", headers=bearer(ALICE),
                         json={"model": "flux", "stream": True,
                               "messages": [{"role": "user", "content": "a lighthouse 16:9"}]},
                         stream=True, timeout=30)
    assert resp.status_code == 200 and resp.headers["X-Neurons"] == "57.6"   # the estimate
    events = [line[6:] for line in resp.iter_lines(decode_unicode=True)
              if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content") or ""
                   for e in events[:-1] if json.loads(e)["choices"])
    assert "/image/" in text and "❌" not in text
    assert runs(cf) == [FREE_ID, PAID_ID]
    # the openai SDK reads the same stream
    chunks = list(sdk(two_accounts, ALICE).chat.completions.create(
        model="flux", stream=True, messages=[{"role": "user", "content": "a fox"}]))
    assert "/image/" in "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert_no_secret_logged(two_accounts)


def test_all_accounts_used_up_is_429_naming_the_reset(two_accounts, cf):
    cf.exhaust(FREE_ID, PAID_ID)
    with pytest.raises(openai.RateLimitError) as info:
        sdk(two_accounts, ALICE).images.generate(model="flux", prompt="a cat")
    body = info.value.response.json()["error"]
    assert body["code"] == "insufficient_quota" and "00:00 UTC" in body["message"]
    assert runs(cf) == [FREE_ID, PAID_ID]
    # the next request is refused without calling Cloudflare at all
    assert requests.post(two_accounts.api + "/images/generations", headers=bearer(ALICE),
                         json={"prompt": "a cat"}, timeout=30).status_code == 429
    assert runs(cf) == [FREE_ID, PAID_ID]


def test_rejected_token_is_skipped_and_reported_on_readyz(cf, tmp_path):
    env = env_for(cf, CF_ACCOUNTS=f"{FREE_ID}:cf-WRONG-token-SECRET,{PAID_ID}:{PAID_TOKEN}")
    service = start_service(tmp_path, env, workers=1)
    try:
        resp = requests.post(service.api + "/images/generations", headers=bearer(ALICE),
                             json={"prompt": "a cat", "n": 2}, timeout=30)
        assert resp.status_code == 200 and float(resp.headers["X-Neurons"]) == 115.2
        # /readyz, open, says an account is skipped; the admin's /v1/usage says which and why.
        ready = requests.get(service.url + "/readyz", timeout=10).json()
        assert ready["checks"]["accounts"].startswith("some Cloudflare accounts are skipped")
        admin = requests.get(service.api + "/usage", headers=bearer(ADMIN), timeout=10).json()
        states = {a["account"]: a["state"] for a in admin["accounts"]}
        assert states == {FREE_ID[:8] + "…": "token_rejected", PAID_ID[:8] + "…": "ok"}
        log = service.log()
        assert "REJECTED" in log and "cf-WRONG-token-SECRET" not in log
        assert_no_secret_logged(service)
    finally:
        service.stop()


def test_usage_for_a_key_and_for_the_admin(two_accounts, cf):
    requests.post(two_accounts.api + "/images/generations", headers=bearer(ALICE),
                  json={"prompt": "a cat", "n": 2}, timeout=30).raise_for_status()
    mine = requests.get(two_accounts.api + "/usage", headers=bearer(ALICE), timeout=10).json()
    short = hashlib.sha256(ALICE.encode()).hexdigest()[:12]
    assert mine["key"]["key"] == short
    assert mine["key"]["spent_neurons"] == pytest.approx(2 * SCHNELL_1024)
    assert "keys" not in mine and "accounts" not in mine
    admin = requests.get(two_accounts.api + "/usage", headers=bearer(ADMIN), timeout=10)
    body = admin.json()
    assert {line["key"] for line in body["keys"]} >= {short}
    assert [a["account"] for a in body["accounts"]] == [FREE_ID[:8] + "…", PAID_ID[:8] + "…"]
    assert body["accounts"][0]["spent_neurons"] == pytest.approx(2 * SCHNELL_1024)
    for secret in (ALICE, BOB, ADMIN, FREE_TOKEN, PAID_TOKEN):
        assert secret not in admin.text
    assert requests.get(two_accounts.api + "/usage", timeout=10).status_code == 401
    assert_no_secret_logged(two_accounts)


def test_key_budgets_hold_across_two_instances_sharing_redis(cf, tmp_path):
    need_redis()
    with RedisServer() as redis:
        env = env_for(cf, STORAGE_URL=redis.url, KEY_BUDGETS=f"{ALICE}=100",
                      KEY_DAILY_NEURONS="1000")
        first = start_service(tmp_path / "a", env, workers=2)
        second = start_service(tmp_path / "b", env, workers=2)
        try:
            assert sdk(first, ALICE).images.generate(model="flux", prompt="a cat").data
            # 57.6 spent on the first instance; the second knows, and 57.6 more would pass 100
            with pytest.raises(openai.RateLimitError) as info:
                sdk(second, ALICE).images.generate(model="flux", prompt="a cat")
            message = info.value.response.json()["error"]["message"]
            assert "API key's daily budget of 100.0 neurons" in message
            assert "42.4 left" in message and "00:00 UTC" in message
            assert len(runs(cf)) == 1                   # nothing was sent upstream
            # Bob has the default budget, counted on both instances alike
            assert sdk(second, BOB).images.generate(model="flux", prompt="a dog").data
            usage = requests.get(first.api + "/usage", headers=bearer(BOB), timeout=10).json()
            assert usage["key"]["spent_neurons"] == pytest.approx(SCHNELL_1024)
            admin = requests.get(first.api + "/usage", headers=bearer(ADMIN), timeout=10).json()
            assert admin["service"]["spent_neurons"] == pytest.approx(2 * SCHNELL_1024)
            for service in (first, second):
                assert_no_secret_logged(service)
        finally:
            first.stop()
            second.stop()


def test_a_dollar_budget_counts_workers_ai_images_at_the_paid_rate(cf, tmp_path):
    # DAILY_USD=$0.002: the first image is billed 100 neurons by Cloudflare ($0.0011), the
    # second its estimate of 57.6 ($0.0006336); the third would pass the budget.
    service = start_service(tmp_path, env_for(cf, DAILY_USD="0.002", SHOW_COST="true"),
                            workers=2)
    try:
        cf.state.neurons_header = "100"
        try:
            assert sdk(service, ALICE).images.generate(model="flux", prompt="a cat").data
        finally:
            cf.state.neurons_header = None
        answer = sdk(service, BOB).chat.completions.create(
            model="flux", messages=[{"role": "user", "content": "a dog"}])
        assert "57.6 neurons ($0.000634 at the Workers AI paid rate)" in (
            answer.choices[0].message.content)
        with pytest.raises(openai.RateLimitError) as info:
            sdk(service, ALICE).images.generate(model="flux", prompt="a fox")
        error = info.value.response.json()["error"]
        assert error["code"] == "insufficient_quota"
        assert error["message"].startswith(
            "This service's daily dollar budget (DAILY_USD) of $0.002 is used up: $0.000266 "
            "left, and this request needs about $0.000634.")
        assert "00:00 UTC" in error["message"]
        assert len(runs(cf)) == 2                       # nothing was sent upstream
        admin = requests.get(service.api + "/usage", headers=bearer(ADMIN), timeout=10).json()
        assert admin["service"]["spent_neurons"] == pytest.approx(157.6)
        assert admin["service"]["spent_usd"] == pytest.approx(0.0017336)
        assert admin["service"]["budget_usd"] == 0.002
        assert admin["service"]["left_usd"] == pytest.approx(0.0002664)
        assert admin["service"]["budget_neurons"] is None
        assert admin["models"] == [{"model": "@cf/black-forest-labs/flux-1-schnell",
                                    "spent_neurons": pytest.approx(157.6),
                                    "spent_usd": pytest.approx(0.0017336)}]
        mine = requests.get(service.api + "/usage", headers=bearer(ALICE), timeout=10).json()
        assert mine["key"]["spent_usd"] == pytest.approx(0.0011)
        assert mine["key"]["spent_neurons"] == pytest.approx(100)
        metrics = requests.get(service.url + "/metrics", timeout=10).text
        assert any(line.startswith("flux_worker_usd_total") and "flux-1-schnell" in line
                   and float(line.rsplit(" ", 1)[1]) == pytest.approx(0.0017336)
                   for line in metrics.splitlines())
        assert_no_secret_logged(service)
    finally:
        service.stop()


def test_open_routes_tell_anyone_nothing_of_accounts_spend_or_storage(cf, tmp_path):
    # Spend recorded on two accounts (one used up), budgets set, then Redis (images and
    # counters) stopped: an anonymous caller of every open route learns ready or not, and why
    # in general words; no account, no spend, no budget, no Redis address or errno text.
    need_redis()
    cf.exhaust(FREE_ID)
    with RedisServer() as redis:
        env = env_for(cf, STORAGE_URL=redis.url, DAILY_NEURONS="98765",
                      KEY_DAILY_NEURONS="4321")
        service = start_service(tmp_path, env, workers=1)
        try:
            cf.state.neurons_header = "313.37"
            try:
                assert sdk(service, ALICE).images.generate(model="flux", prompt="a cat").data
            finally:
                cf.state.neurons_header = None
            redis.stop()
            port = str(redis.port)
            open_routes = [("/", {"Accept": "text/html"}), ("/", {"Accept": "application/json"}),
                           ("/readyz", {}), ("/healthz", {}), ("/metrics", {})]
            for path, headers in open_routes:
                resp = requests.get(service.url + path, headers=headers, timeout=10)
                seen = "\n".join(f"{k}: {v}" for k, v in resp.headers.items()) + resp.text
                for detail in (FREE_ID[:8], PAID_ID[:8], "allocation_used_up", "spent_neurons",
                               "budget", f"127.0.0.1:{port}", "Error 111", "Connection refused",
                               "Redis", "account=", FREE_TOKEN, PAID_TOKEN):
                    assert detail not in seen, (path, headers, detail)
                if path != "/metrics":
                    # /metrics keeps the neurons per model, and its timings' digits may hold
                    # any figure by chance.
                    for figure in ("313.37", "98765", "4321", port):
                        assert figure not in seen, (path, headers, figure)
            ready = requests.get(service.url + "/readyz", timeout=10)
            assert ready.status_code == 503 and ready.json()["status"] == "unavailable"
            assert ready.json()["checks"]["storage"].startswith("image storage is unreachable")
            # The cause is in the log, and told to a configured key.
            assert "Error 111" in service.log()
            behind_key = requests.get(service.url + "/readyz", headers=bearer(ALICE), timeout=10)
            assert port in behind_key.json()["error"]["message"]
        finally:
            service.stop()


def test_budgets_refuse_quickly_while_their_counters_are_down(tmp_path):
    # COUNTERS_URL in Redis, DAILY_NEURONS set, Redis stopped: a budget that cannot be counted
    # is not kept, so generations are refused (503), at once once the outage is known, and
    # /readyz says the counters are unreachable; nothing is sent upstream meanwhile.
    need_redis()
    with RedisServer() as redis:
        service = start_service(tmp_path, {"API_KEY": API_KEY, "COUNTERS_URL": redis.url,
                                           "DAILY_NEURONS": "100000"}, workers=1)
        try:
            def chat():
                started = time.monotonic()
                resp = requests.post(service.api + "/chat/completions", timeout=30,
                                     headers={"Authorization": f"Bearer {API_KEY}"},
                                     json={"messages": [{"role": "user", "content": "a cat"}]})
                return resp, time.monotonic() - started

            assert chat()[0].status_code == 200
            redis.stop()
            answers = [chat() for _ in range(8)]
            assert {resp.status_code for resp, _ in answers} == {503}
            assert {resp.json()["error"]["code"] for resp, _ in answers} == {"storage_error"}
            assert max(took for _, took in answers[1:]) < 1.0     # no timeout wait per request
            ready = requests.get(service.url + "/readyz", timeout=10)
            assert ready.status_code == 503
            assert ready.json()["checks"]["counters"] == (
                "the usage counters (COUNTERS_URL) are unreachable")
            assert "6379" not in ready.text and str(redis.url) not in ready.text
        finally:
            service.stop()
