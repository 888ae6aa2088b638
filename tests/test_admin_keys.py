"""The admin API for run-time keys through the app: who may use it, what it answers, and a
created key's terms holding on the API (budgets, rate limit, models, expiry, revocation)."""

from __future__ import annotations

import pytest

from flux_worker.keys.records import SECRET_PREFIX
from tests.support import AUTH, TEST_KEY, bearer

ADMIN_KEY = "sk-admin-000000000000"
ADMIN = bearer(ADMIN_KEY)
KEYS = "/v1/admin/keys"


@pytest.fixture
def admin_client(apps):
    return apps.client(ADMIN_API_KEY=ADMIN_KEY, COUNTERS_URL="memory://")


def create(client, **body) -> dict:
    response = client.post(KEYS, json={"name": "alice", **body}, headers=ADMIN)
    assert response.status_code == 201, response.get_json()
    assert response.headers["Cache-Control"] == "no-store"
    return response.get_json()


def generate(client, secret: str, **body):
    return client.post("/v1/images/generations", headers=bearer(secret),
                       json={"prompt": "a cat", "response_format": "url", **body})


def test_the_admin_api_is_off_without_admin_api_key(client):
    response = client.get(KEYS, headers=AUTH)
    assert response.status_code == 404
    assert "ADMIN_API_KEY" in response.get_json()["error"]["message"]


@pytest.mark.parametrize("headers", [{}, AUTH, bearer("sk-wrong")])
def test_only_the_admin_key_opens_the_admin_api(admin_client, headers):
    for method in ("get", "post"):
        response = getattr(admin_client, method)(KEYS, headers=headers, json={"name": "x"})
        assert response.status_code == 401
        assert response.get_json()["error"]["code"] == "invalid_api_key"


def test_the_admin_key_is_not_a_client_key(admin_client):
    assert generate(admin_client, ADMIN_KEY).status_code == 401


def test_create_shows_the_secret_once_and_the_key_works(admin_client):
    made = create(admin_client, daily_usd=0.5)
    secret = made.pop("secret")
    assert secret.startswith(SECRET_PREFIX) and made["status"] == "active"
    assert made["usage"]["budget_usd"] == 0.5 and made["usage"]["spent_usd"] == 0
    listed = admin_client.get(KEYS, headers=ADMIN).get_json()
    assert listed["object"] == "list" and [k["id"] for k in listed["data"]] == [made["id"]]
    assert secret not in str(listed) and "secret" not in listed["data"][0]
    assert admin_client.get(f"{KEYS}/{made['id']}", headers=ADMIN).get_json()["name"] == "alice"
    assert generate(admin_client, secret).status_code == 200
    assert generate(admin_client, TEST_KEY).status_code == 200    # API_KEY's keys still work
    usage = admin_client.get("/v1/usage", headers=bearer(secret)).get_json()
    assert usage["key"]["key"] == made["owner"] and usage["key"]["budget_usd"] == 0.5


def test_a_revoked_key_is_refused_on_its_next_request(admin_client):
    made = create(admin_client)
    assert generate(admin_client, made["secret"]).status_code == 200
    revoked = admin_client.delete(f"{KEYS}/{made['id']}", headers=ADMIN).get_json()
    assert revoked["status"] == "revoked" and revoked["revoked_at"]
    response = generate(admin_client, made["secret"])
    assert response.status_code == 401
    assert "was revoked" in response.get_json()["error"]["message"]
    mcp = admin_client.post("/mcp", headers={
        **bearer(made["secret"]), "Accept": "application/json, text/event-stream"},
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert mcp.status_code == 401 and "was revoked" in mcp.get_json()["error"]["message"]
    assert admin_client.post("/v1/chat/completions", headers=bearer(made["secret"]), json={
        "model": "flux", "messages": [{"role": "user", "content": "a cat"}]}).status_code == 401


def test_an_expired_key_is_refused_and_a_later_expiry_restores_it(admin_client):
    made = create(admin_client, expires_at=1)
    response = generate(admin_client, made["secret"])
    assert response.status_code == 401 and "expired on" in response.get_json()["error"]["message"]
    admin_client.patch(f"{KEYS}/{made['id']}", headers=ADMIN, json={"expires_in_days": 1})
    assert generate(admin_client, made["secret"]).status_code == 200


def test_a_key_limited_to_some_models_gets_a_403_for_others(admin_client):
    made = create(admin_client, models=["@cf/black-forest-labs/flux-1-schnell"])
    allowed = generate(admin_client, made["secret"], model="@cf/black-forest-labs/flux-1-schnell")
    assert allowed.status_code == 200
    refused = generate(admin_client, made["secret"], model="@cf/black-forest-labs/flux-2-klein-4b")
    assert refused.status_code == 403
    error = refused.get_json()["error"]
    assert error["code"] == "model_not_allowed" and "flux-1-schnell" in error["message"]
    chat = admin_client.post("/v1/chat/completions", headers=bearer(made["secret"]), json={
        "model": "gpt-4o", "messages": [{"role": "user", "content": "a cat"}]})
    assert chat.status_code == 200              # a chat client's free name: an allowed model
    listed = admin_client.get("/v1/models", headers=bearer(made["secret"])).get_json()["data"]
    assert [m["id"] for m in listed] == ["@cf/black-forest-labs/flux-1-schnell", "auto"]
    assert len(admin_client.get("/v1/models", headers=AUTH).get_json()["data"]) > 2
    mcp = admin_client.post("/mcp", headers={
        **bearer(made["secret"]), "Accept": "application/json, text/event-stream"}, json={
        "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "generate_image", "arguments": {
                "prompt": "a cat", "model": "@cf/black-forest-labs/flux-2-klein-4b"}}})
    assert '"isError":true' in mcp.get_data(as_text=True)
    assert "model_not_allowed: This API key may not use" in mcp.get_data(as_text=True)


def test_a_key_rate_limit_and_budget_hold(apps):
    client = apps.client(ADMIN_API_KEY=ADMIN_KEY, COUNTERS_URL="memory://",
                         IMAGE_BACKEND="demo")
    limited = create(client, rate_limit="2/minute")
    assert [generate(client, limited["secret"]).status_code for _ in range(3)] == [200, 200, 429]
    assert generate(client, TEST_KEY).status_code == 200     # RATE_LIMIT is unset: no limit
    poor = create(client, name="poor", daily_neurons=0.001)
    response = generate(client, poor["secret"])
    # The demo bills nothing, so a budget never refuses there; the key's line says so.
    assert response.status_code == 200
    line = client.get(f"{KEYS}/{poor['id']}", headers=ADMIN).get_json()["usage"]
    assert line["budget_neurons"] == 0.001


def test_an_open_demo_asks_for_keys_once_one_is_handed_out(apps):
    client = apps.client(API_KEY="", ADMIN_API_KEY=ADMIN_KEY, COUNTERS_URL="memory://")
    assert client.get("/", headers={"Accept": "application/json"}).get_json()[
        "auth_required"] is False
    assert generate(client, "anything").status_code == 200
    made = create(client)
    assert client.get("/", headers={"Accept": "application/json"}).get_json()[
        "auth_required"] is True
    assert generate(client, "anything").status_code == 401
    assert generate(client, made["secret"]).status_code == 200


@pytest.mark.parametrize("body,param", [
    ({"name": "x", "models": ["no-such-model"]}, "models"),
    ({"name": "x", "rate_limit": "often"}, "rate_limit"),
    ({"name": "x", "daily_usd": -2}, "daily_usd"),
    ({"nom": "x"}, None)])
def test_bad_bodies_are_400s_that_name_the_field(admin_client, body, param):
    response = admin_client.post(KEYS, json=body, headers=ADMIN)
    assert response.status_code in (400, 404), response.get_json()
    error = response.get_json()["error"]
    if param:
        assert error["param"] == param
    assert not admin_client.get(KEYS, headers=ADMIN).get_json()["data"]


def test_unknown_ids_are_404s(admin_client):
    for method in ("get", "patch", "delete"):
        response = getattr(admin_client, method)(f"{KEYS}/key_nope", headers=ADMIN, json={})
        assert response.status_code == 404


def test_a_run_time_key_has_a_history_of_its_own(admin_client):
    alice, bob = create(admin_client), create(admin_client, name="bob")
    assert generate(admin_client, alice["secret"]).status_code == 200
    mine = admin_client.get("/v1/images/history", headers=bearer(alice["secret"])).get_json()
    assert [e["prompt"] for e in mine["data"]] == ["a cat"]
    theirs = admin_client.get("/v1/images/history", headers=bearer(bob["secret"])).get_json()
    assert theirs["data"] == []
    everyone = admin_client.get("/v1/images/history", headers=ADMIN).get_json()["data"]
    assert [e["owner"] for e in everyone] == [alice["owner"]]


def test_a_background_response_keeps_the_key_terms(admin_client):
    made = create(admin_client, models=["@cf/black-forest-labs/flux-1-schnell"])
    response = admin_client.post("/v1/responses", headers=bearer(made["secret"]), json={
        "model": "gpt-5.4", "input": "a cat", "background": True,
        "tools": [{"type": "image_generation",
                   "model": "@cf/black-forest-labs/flux-2-klein-4b"}]})
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "model_not_allowed"
