"""Costs seen through the API: X-Neurons, SHOW_COST, budgets, /v1/usage, models, metrics.

Spend, budgets and accounts are ADMIN_API_KEY's (a client key sees its own line); the open
routes' side of this is tests/test_open_routes.py.
"""

from __future__ import annotations

import base64
import functools
import io
import json

import pytest
import responses
from PIL import Image

from flux_worker.cost.ledgers import short_hash
from tests import support
from tests.support import bearer

ALICE, BOB = "sk-alice-key-000001", "sk-bob-key-000002"
ADMIN = "sk-admin-key-999999"
SCHNELL_1024 = 57.6          # 4 tiles x 4.8 + 4 steps x 9.6
CF_ACCOUNT, CF_TOKEN = "acc0123456789abcdef", "cf-token-SECRET-1"
API = "https://api.cloudflare.com/client/v4"


def _jpeg_b64() -> str:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 80, 40)).save(out, "JPEG")
    return base64.b64encode(out.getvalue()).decode()


JPEG_B64 = _jpeg_b64()


@pytest.fixture
def make_client(apps):
    """Builds a client of an app with ALICE's and BOB's keys and ADMIN as the admin key."""

    def build(**overrides):
        return apps.client(**{"API_KEY": f"{ALICE},{BOB}", "ADMIN_API_KEY": ADMIN, **overrides})

    return build


# As ALICE unless a test says otherwise.
chat = functools.partial(support.chat, key=ALICE, model="flux")


def usage(client, key=ALICE) -> dict:
    resp = client.get("/v1/usage", headers=bearer(key))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()


OK_BODY = {"result": {"image": JPEG_B64}, "success": True, "errors": [], "messages": []}


@pytest.fixture
def priced(make_client, rsps):
    """Clients whose images Cloudflare (mocked) draws, priced as Workers AI bills them."""
    rsps.post(run_url(), json=OK_BODY)
    return lambda **extra: cf_client(make_client, **extra)


def test_x_neurons_on_chat_images_and_streams(priced):
    client = priced()
    resp = chat(client)
    assert resp.status_code == 200 and resp.headers["X-Neurons"] == "57.6"
    resp = client.post("/v1/images/generations", headers=bearer(ALICE),
                       json={"model": "flux", "prompt": "a cat", "n": 2})
    assert resp.status_code == 200 and resp.headers["X-Neurons"] == "115.2"
    stream = chat(client, stream=True)
    assert stream.headers["X-Neurons"] == "57.6"      # the estimate, sent before the body
    stream.get_data()
    assert usage(client)["key"]["spent_neurons"] == pytest.approx(4 * SCHNELL_1024)
    assert "X-Neurons" in client.options("/v1/images/generations").headers[
        "Access-Control-Expose-Headers"]


def test_show_cost_line_in_the_answers_language(priced):
    plain = chat(priced()).get_json()["choices"][0]["message"]["content"]
    assert "neurons" not in plain
    english = chat(priced(SHOW_COST="true")).get_json()["choices"][0]["message"]["content"]
    assert english.rstrip().endswith(
        "💰 Cost: 57.6 neurons ($0.000634 at the Workers AI paid rate)")
    german = chat(priced(SHOW_COST="true", LANGUAGE="de")).get_json()
    assert "57.6 Neuronen ($0.000634" in german["choices"][0]["message"]["content"]


def test_key_budget_refuses_before_anything_is_generated(priced):
    client = priced(KEY_BUDGETS=f"{ALICE}=100")
    assert chat(client).status_code == 200
    refused = chat(client)
    assert refused.status_code == 429
    error = refused.get_json()["error"]
    assert error["code"] == "insufficient_quota" and error["type"] == "insufficient_quota"
    assert "API key's daily budget of 100.0 neurons" in error["message"]
    assert "42.4 left" in error["message"] and "00:00 UTC" in error["message"]
    assert int(refused.headers["Retry-After"]) > 0
    assert ALICE not in refused.get_data(as_text=True)
    # Bob has no budget of his own and none by default
    assert chat(client, key=BOB).status_code == 200
    assert usage(client)["key"]["spent_neurons"] == pytest.approx(SCHNELL_1024)
    # a batch that would pass the budget is refused whole
    assert client.post("/v1/images/generations", headers=bearer(ALICE),
                       json={"prompt": "a cat", "n": 1}).status_code == 429


def test_service_budget_and_stream_refusal_is_an_http_error(priced):
    client = priced(DAILY_NEURONS="100")
    assert chat(client, key=BOB).status_code == 200
    resp = chat(client, stream=True)
    assert resp.status_code == 429 and resp.mimetype == "application/json"
    assert "DAILY_NEURONS" in resp.get_json()["error"]["message"]


def test_usage_for_a_key_and_for_the_admin(priced):
    client = priced(KEY_DAILY_NEURONS="1000", DAILY_NEURONS="10000")
    chat(client)
    mine = usage(client)
    assert mine["object"] == "usage" and mine["resets_at"].endswith("T00:00:00Z")
    assert mine["key"] == {"key": short_hash(ALICE), "spent_neurons": 57.6,
                           "budget_neurons": 1000.0, "left_neurons": 942.4,
                           "spent_usd": pytest.approx(0.0006336), "budget_usd": None,
                           "left_usd": None}
    assert "keys" not in mine and "accounts" not in mine and "service" not in mine
    admin = client.get("/v1/usage", headers=bearer(ADMIN))
    body = admin.get_json()
    assert body["service"]["left_neurons"] == pytest.approx(9942.4)
    assert {line["key"] for line in body["keys"]} == {short_hash(ALICE), short_hash(BOB)}
    assert [a["account"] for a in body["accounts"]] == [CF_ACCOUNT[:8] + "…"]
    text = admin.get_data(as_text=True)
    assert ALICE not in text and BOB not in text and ADMIN not in text and CF_TOKEN not in text
    assert client.get("/v1/usage").status_code == 401
    assert client.get("/v1/usage", headers=bearer("sk-wrong")).status_code == 401
    # the admin key is not a client key
    assert chat(client, key=ADMIN).status_code == 401


def test_dollar_budgets_refuse_and_usage_reports_both_units(priced):
    # One schnell image costs 57.6 neurons, $0.0006336 at the paid rate.
    client = priced(DAILY_USD="0.001", KEY_BUDGETS=f"{BOB}=$0.0005,{BOB}=1000",
                    SHOW_COST="true")
    refused = chat(client, key=BOB)                    # Bob's own $0.0005 cannot take one
    assert refused.status_code == 429
    error = refused.get_json()["error"]
    assert error["code"] == "insufficient_quota"
    assert error["message"].startswith(
        "This API key's daily dollar budget of $0.0005 is used up: $0.0005 left, and this "
        "request needs about $0.000634.")
    assert chat(client).status_code == 200            # Alice: $0.0006336 of the $0.001
    refused = chat(client)
    assert refused.status_code == 429
    assert refused.get_json()["error"]["message"].startswith(
        "This service's daily dollar budget (DAILY_USD) of $0.001 is used up: $0.000366 left")
    mine = usage(client)["key"]
    assert mine == {"key": short_hash(ALICE), "spent_neurons": 57.6, "budget_neurons": None,
                    "left_neurons": None, "spent_usd": 0.0006336, "budget_usd": None,
                    "left_usd": None}
    admin = usage(client, ADMIN)
    assert admin["service"]["spent_usd"] == 0.0006336
    assert admin["service"]["budget_usd"] == 0.001
    assert admin["service"]["left_usd"] == pytest.approx(0.0003664)
    bob = next(line for line in admin["keys"] if line["key"] == short_hash(BOB))
    assert (bob["budget_usd"], bob["budget_neurons"], bob["spent_usd"]) == (0.0005, 1000, 0)
    assert admin["models"] == [{"model": "@cf/black-forest-labs/flux-1-schnell",
                                "spent_neurons": 57.6, "spent_usd": 0.0006336}]
    assert "models" not in usage(client)               # a client key sees its own line only
    # /metrics counts the dollars per model beside the neurons
    text = client.get("/metrics").get_data(as_text=True)
    line = next(line for line in text.splitlines() if line.startswith("flux_worker_usd_total")
                and "flux-1-schnell" in line)
    assert float(line.rsplit(" ", 1)[1]) >= 0.0006336 - 1e-12


def test_the_demo_spends_nothing_and_no_budget_refuses_it(make_client):
    """Demo images are drawn offline: 0 neurons everywhere, however small the budgets."""
    client = make_client(DAILY_NEURONS="100", KEY_DAILY_NEURONS="1", SHOW_COST="true")
    for _ in range(3):
        resp = chat(client)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        assert float(resp.headers["X-Neurons"]) == 0
    images = client.post("/v1/images/generations", headers=bearer(ALICE),
                         json={"model": "flux", "prompt": "a cat", "n": 2})
    assert images.status_code == 200 and float(images.headers["X-Neurons"]) == 0
    mine = usage(client)
    assert mine["key"]["spent_neurons"] == 0 and mine["key"]["spent_usd"] == 0
    assert usage(client, ADMIN)["service"]["spent_neurons"] == 0
    cost = client.get("/v1/models/flux-1-schnell", headers=bearer(ALICE)).get_json()["cost"]
    assert cost["estimate_neurons"] == 0 and "nothing is billed" in cost["price"]["note"]


def test_model_detail_has_price_and_default_size_estimate(make_client):
    client = cf_client(make_client)
    body = client.get("/v1/models/flux-2-dev", headers=bearer(ALICE)).get_json()
    assert body["cost"]["default_size"] == "1024x768"
    # 4 output tiles x 4 steps (FLUX_NUM_STEPS) x 37.2727 neurons
    assert body["cost"]["estimate_neurons"] == pytest.approx(596.364, abs=0.001)
    assert "per output tile per step" in body["cost"]["price"]["formula"]


def test_the_service_budget_is_the_admins_not_the_welcome_pages(priced):
    client = priced(DAILY_NEURONS="10000")
    chat(client)
    service = usage(client, ADMIN)["service"]
    assert service["spent_neurons"] == pytest.approx(57.6)
    assert service["budget_neurons"] == 10000
    info = client.get("/", headers={"Accept": "application/json"}).get_json()
    assert "budget" not in info and "accounts" not in info
    page = client.get("/", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert "10000" not in page and "57.6" not in page and "/v1/usage" in page


def test_metrics_count_neurons_per_model_and_no_account(priced):
    client = priced()
    chat(client)
    text = client.get("/metrics").get_data(as_text=True)
    line = next(line for line in text.splitlines() if line.startswith("flux_worker_neurons_total")
                and "flux-1-schnell" in line)
    # At least this chat's 57.6 (earlier tests in this process may have counted too), within
    # the rounding of summed floats. No account label: /metrics is open.
    assert "account=" not in line and float(line.rsplit(" ", 1)[1]) >= 57.6 - 1e-9


# -- the Cloudflare backend, at the HTTP edge ------------------------------------------------

@pytest.fixture
def rsps():
    with responses.RequestsMock() as mock:
        yield mock


def cf_client(make_client, **extra):
    return make_client(CF_ACCOUNT_ID=CF_ACCOUNT, CF_API_TOKEN=CF_TOKEN, UPSTREAM_RETRIES="0",
                       **extra)


def run_url(account=CF_ACCOUNT) -> str:
    return f"{API}/accounts/{account}/ai/run/@cf/black-forest-labs/flux-1-schnell"


def test_cloudflares_figure_replaces_the_estimate(make_client, rsps):
    client = cf_client(make_client, SHOW_COST="true")
    rsps.post(run_url(), json={"result": {"image": JPEG_B64}, "success": True, "errors": [],
                               "messages": []}, headers={"cf-ai-neurons": "172.8"})
    resp = chat(client)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.headers["X-Neurons"] == "172.8"
    assert "172.8 neurons" in resp.get_json()["choices"][0]["message"]["content"]
    body = client.get("/v1/usage", headers=bearer(ADMIN)).get_json()
    assert body["service"]["spent_neurons"] == pytest.approx(172.8)
    assert body["accounts"][0]["account"] == CF_ACCOUNT[:8] + "…"
    assert body["accounts"][0]["spent_neurons"] == pytest.approx(172.8)
    assert CF_TOKEN not in json.dumps(body)


def test_a_failed_generation_costs_nothing(make_client, rsps):
    client = cf_client(make_client, KEY_DAILY_NEURONS="100")
    rsps.post(run_url(), status=400, json={"result": {}, "success": False, "messages": [],
                                           "errors": [{"code": 3030, "message": "flagged"}]})
    assert chat(client).status_code == 400
    assert usage(client)["key"]["spent_neurons"] == 0
    assert usage(client, ADMIN)["service"]["spent_neurons"] == 0


def test_two_accounts_first_used_up_moves_on_and_the_admin_sees_both(make_client, rsps):
    second = "second0123456789abcdef"
    client = make_client(CF_ACCOUNTS=f"{CF_ACCOUNT}:{CF_TOKEN},{second}:other-SECRET@5000",
                         UPSTREAM_RETRIES="0")
    rsps.post(run_url(), status=429, json={"result": {}, "success": False, "messages": [],
                                           "errors": [{"code": 4006, "message": "AiError: you "
                                                       "have used up your daily free "
                                                       "allocation"}]})
    rsps.post(run_url(second), json={"result": {"image": JPEG_B64}, "success": True,
                                     "errors": [], "messages": []})
    assert chat(client).status_code == 200
    info = usage(client, ADMIN)
    assert [a["state"] for a in info["accounts"]] == ["allocation_used_up", "ok"]
    assert info["accounts"][1]["allocation_neurons"] == 5000
    assert info["accounts"][1]["spent_neurons"] == pytest.approx(57.6)
    # /readyz is open: it says some account is skipped, not which nor why.
    ready = client.get("/readyz").get_json()
    assert ready["checks"]["accounts"].startswith("some Cloudflare accounts are skipped")
    assert "SECRET" not in json.dumps(info) + json.dumps(ready)
    page = client.get("/", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert "second01" not in page and "SECRET" not in page


def test_budgets_fail_closed_and_readyz_says_so_while_the_counters_are_down(priced, redis_server):
    """COUNTERS_URL=redis://… stopped: generations 503 at once, /readyz 503 in general words."""
    client = priced(COUNTERS_URL=redis_server.url, DAILY_NEURONS="10000")
    assert chat(client).status_code == 200
    assert client.get("/readyz").get_json()["checks"]["counters"] == "ok"
    redis_server.stop()
    for _ in range(5):
        refused = chat(client)
        assert refused.status_code == 503, refused.get_data(as_text=True)
        error = refused.get_json()["error"]
        assert error["code"] == "storage_error" and "COUNTERS_URL" in error["message"]
        assert refused.headers["Retry-After"]
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.get_json()["status"] == "unavailable"
    checks = ready.get_json()["checks"]
    assert "unreachable" in checks["counters"] and checks["storage"] == "ok"
    assert str(redis_server.port) not in ready.get_data(as_text=True)
    redis_server.start()
    assert client.get("/readyz").get_json()["checks"]["counters"] == "ok"   # told at once
    assert chat(client).status_code == 200
