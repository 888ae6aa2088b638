"""What the open routes tell an anonymous caller: ready or not and why in general words, no more.

`/`, `/healthz`, `/readyz` and `/metrics` answer anyone. Spend, budgets and the Cloudflare
accounts are `ADMIN_API_KEY`'s (`GET /v1/usage`); a client key sees its own line; where storage
lives (hosts, ports, the bucket's endpoint) and how it failed (errno texts) stay in the log.
"""

from __future__ import annotations

import base64
import io
import json

import pytest
import responses
from PIL import Image

from flux_worker.cost.ledgers import short_hash
from flux_worker.errors import StorageError
from tests.support import app_with

ALICE, BOB = "sk-alice-open-000001", "sk-bob-open-000002"
ADMIN = "sk-admin-open-999999"
# Two accounts with ids no other text on the page could contain by chance.
USED_UP, WORKING = "f00dface0000aaaa1111bbbb2222cccc", "beefcafe3333dddd4444eeee5555ffff"
TOKENS = ("cf-open-token-SECRET-1", "cf-open-token-SECRET-2")
API = "https://api.cloudflare.com/client/v4"      # only `responses` answers it
SPENT = "313.37"                                  # Cloudflare's figure for one image
SERVICE_BUDGET, KEY_BUDGET = "98765", "4321"
# What a Redis outage says in the log: its address and the errno text of the refused connect.
OUTAGE = ("Image storage (Redis) is unreachable: Error 111 connecting to 10.1.2.3:6379. "
          "Connection refused.. Check that Redis is running and that STORAGE_URL points at it.")
STORAGE_DETAILS = ("10.1.2.3", "6379", "Error 111", "Connection refused", "Redis")
ACCOUNT_DETAILS = (USED_UP[:8], WORKING[:8], "allocation_used_up", "allocation used up",
                   "spent_neurons", "budget", *TOKENS)
FIGURES = (SPENT, SERVICE_BUDGET, KEY_BUDGET)
R2 = "https://0123456789abcdef.r2.cloudflarestorage.com"


def _jpeg_b64() -> str:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (20, 120, 220)).save(out, "JPEG")
    return base64.b64encode(out.getvalue()).decode()


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def text_of(resp) -> str:
    """Everything a caller receives: status line, headers and body."""
    headers = "\n".join(f"{name}: {value}" for name, value in resp.headers.items())
    return f"{resp.status}\n{headers}\n\n{resp.get_data(as_text=True)}"


@pytest.fixture
def spent_and_broken(monkeypatch):
    """An app with two accounts (the first used up), budgets, spend recorded, storage down."""
    env = {"API_KEY": f"{ALICE},{BOB}", "ADMIN_API_KEY": ADMIN,
           "CF_ACCOUNTS": f"{USED_UP}:{TOKENS[0]},{WORKING}:{TOKENS[1]}",
           "UPSTREAM_RETRIES": "0", "DAILY_NEURONS": SERVICE_BUDGET,
           "KEY_DAILY_NEURONS": KEY_BUDGET}
    with app_with(**env) as (app, services), responses.RequestsMock() as cf:
        run = "/ai/run/@cf/black-forest-labs/flux-1-schnell"
        cf.post(f"{API}/accounts/{USED_UP}{run}", status=429, json={
            "result": {}, "success": False, "messages": [],
            "errors": [{"code": 4006, "message": "AiError: you have used up your daily free "
                                                 "allocation"}]})
        cf.post(f"{API}/accounts/{WORKING}{run}", headers={"cf-ai-neurons": SPENT}, json={
            "result": {"image": _jpeg_b64()}, "success": True, "errors": [], "messages": []})
        client = app.test_client()
        for key in (ALICE, BOB):
            resp = client.post("/v1/chat/completions", headers=bearer(key), json={
                "model": "flux", "messages": [{"role": "user", "content": "a cute cat"}]})
            assert resp.status_code == 200, resp.get_data(as_text=True)

        def down():
            raise StorageError(OUTAGE)

        monkeypatch.setattr(services.store, "ping", down)
        yield client


OPEN = [("GET /", "/", {"Accept": "text/html"}),
        ("GET / as JSON", "/", {"Accept": "application/json"}),
        ("GET /readyz", "/readyz", {}),
        ("GET /healthz", "/healthz", {}),
        ("GET /metrics", "/metrics", {})]


@pytest.mark.parametrize("name, path, headers", OPEN, ids=[o[0] for o in OPEN])
def test_open_routes_show_no_account_spend_budget_or_storage_detail(spent_and_broken, name,
                                                                    path, headers):
    resp = spent_and_broken.get(path, headers=headers)
    seen = text_of(resp)
    assert resp.status_code in (200, 503), seen
    for detail in STORAGE_DETAILS + ACCOUNT_DETAILS:
        if path == "/metrics" and detail.isdigit():
            continue  # a port: a histogram's sum may hold its digits by chance, as below
        assert detail not in seen, f"{name} shows {detail!r}"
    if path != "/metrics":
        # /metrics stays open with the neurons spent per model (the service's total, no
        # account's and no budget); its histogram sums may contain any digits by chance.
        for figure in FIGURES:
            assert figure not in seen, f"{name} shows {figure!r}"
    else:
        assert "account=" not in seen


def test_readyz_says_not_ready_and_why_in_general_words(spent_and_broken):
    resp = spent_and_broken.get("/readyz")
    body = resp.get_json()
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "5"
    assert body["status"] == "unavailable"
    assert body["error"]["type"] == "storage_error"
    storage = body["checks"]["storage"]
    assert storage != "ok" and "storage" in storage and "unreachable" in storage
    # The accounts are a detail that does not make the service unready, in general words.
    accounts = body["checks"]["accounts"]
    assert isinstance(accounts, str) and accounts != "ok" and "ADMIN_API_KEY" in accounts
    assert body["checks"]["config"] == "ok"


def test_a_proved_key_sees_where_storage_failed_on_readyz(spent_and_broken):
    # The operator's curl with a key gets the cause, as every answer behind a key does; a wrong
    # key is simply anonymous (probes send none and must never get a 401).
    detailed = spent_and_broken.get("/readyz", headers=bearer(ALICE)).get_json()
    assert "10.1.2.3:6379" in detailed["error"]["message"]
    wrong = spent_and_broken.get("/readyz", headers=bearer("sk-wrong"))
    assert wrong.status_code == 503 and "10.1.2.3" not in wrong.get_data(as_text=True)
    # Accounts stay the admin's even behind a client key.
    assert USED_UP[:8] not in json.dumps(detailed)


def test_the_admin_still_sees_every_key_and_account(spent_and_broken):
    body = spent_and_broken.get("/v1/usage", headers=bearer(ADMIN)).get_json()
    assert body["service"]["spent_neurons"] == pytest.approx(2 * float(SPENT))
    assert body["service"]["budget_neurons"] == float(SERVICE_BUDGET)
    assert {line["key"] for line in body["keys"]} == {short_hash(ALICE), short_hash(BOB)}
    states = {a["account"]: a["state"] for a in body["accounts"]}
    assert states == {USED_UP[:8] + "…": "allocation_used_up", WORKING[:8] + "…": "ok"}
    assert body["accounts"][1]["spent_neurons"] == pytest.approx(2 * float(SPENT))
    text = json.dumps(body)
    for secret in (ALICE, BOB, ADMIN, *TOKENS):
        assert secret not in text


def test_a_client_key_sees_its_own_line_only(spent_and_broken):
    resp = spent_and_broken.get("/v1/usage", headers=bearer(ALICE))
    body = resp.get_json()
    assert body["key"] == {"key": short_hash(ALICE), "spent_neurons": float(SPENT),
                           "budget_neurons": float(KEY_BUDGET),
                           "left_neurons": pytest.approx(float(KEY_BUDGET) - float(SPENT)),
                           "spent_usd": pytest.approx(float(SPENT) * 0.011 / 1000),
                           "budget_usd": None, "left_usd": None}
    assert {"service", "keys", "models", "accounts"}.isdisjoint(body)
    seen = text_of(resp)
    for other in (short_hash(BOB), SERVICE_BUDGET, f"{2 * float(SPENT):.2f}", USED_UP[:8],
                  WORKING[:8]):
        assert other not in seen


def test_the_page_points_spend_to_v1_usage(spent_and_broken):
    page = spent_and_broken.get("/", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert "/v1/usage" in page and "Spend today" not in page


@pytest.mark.parametrize("links", ["presigned", "direct"])
def test_the_page_csp_names_no_bucket_host(links):
    # Building an S3 store connects to nothing and presigning is local: no request leaves.
    env = {"STORAGE_URL": "s3://images/flux", "IMAGE_LINKS": links, "S3_ENDPOINT_URL": R2,
           "AWS_REGION": "auto", "AWS_ACCESS_KEY_ID": "AKIAOPENROUTES000001",
           "AWS_SECRET_ACCESS_KEY": "open-routes-secret-0123456789abcdefghij",
           "COUNTERS_URL": "memory://"}
    if links == "direct":
        env["S3_PUBLIC_BASE_URL"] = "https://pub-0123456789abcdef.r2.dev"
    with app_with(**env) as (app, services):
        assert "0123456789abcdef" in (services.links.foreign_origin() or "")
        resp = app.test_client().get("/", headers={"Accept": "text/html"})
        info = app.test_client().get("/", headers={"Accept": "application/json"})
    assert resp.status_code == 200
    for seen in (text_of(resp), text_of(info)):
        assert "0123456789abcdef" not in seen and "r2.cloudflarestorage.com" not in seen
    policy = dict(part.strip().split(" ", 1) for part in
                  resp.headers["Content-Security-Policy"].split(";"))
    # The bucket's images still show: any https origin may serve an image, nothing more.
    assert policy["img-src"] == "'self' data: blob: https:"
    assert policy["script-src"] == "'self'" and policy["connect-src"] == "'self'"
    assert policy["default-src"] == "'none'"
