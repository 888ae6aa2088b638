"""The history routes and the activity log at the web edge (Flask's test client, demo backend,
memory storage): what is recorded, what each caller sees, and failures that must not spread."""

from __future__ import annotations

from werkzeug.test import Client

from flux_worker import metrics
from flux_worker.cost.ledgers import short_hash
from tests.support import AUTH, TEST_KEY, app_with, bearer, wait_until

ADMIN = "sk-admin-web-test"


def test_a_generation_is_listed_for_its_key_and_with_its_owner_for_the_admin():
    with app_with(ADMIN_API_KEY=ADMIN) as (app, _):
        client = app.test_client()
        made = client.post("/v1/images/generations", headers=AUTH,
                           json={"prompt": "a cat 16:9", "response_format": "url"})
        assert made.status_code == 200
        listed = client.get("/images/history", headers=AUTH).get_json()
        [item] = listed["data"]
        assert item["url"] == made.get_json()["data"][0]["url"]
        assert (item["prompt"], item["size"], "owner" in item) == ("a cat 16:9", "1024x576", False)
        admin = client.get("/v1/images/history", headers=bearer(ADMIN)).get_json()
        assert admin["data"][0]["owner"] == short_hash(TEST_KEY)
        assert client.get("/v1/images/history", headers=bearer("sk-wrong")).status_code == 401


def test_a_failing_history_write_never_fails_the_generation(monkeypatch):
    with app_with() as (app, services):
        def broken(entry):
            raise ConnectionError("down")

        monkeypatch.setattr(services.history.store, "add", broken)
        before = metrics.HISTORY_FAILURES._value.get()
        made = app.test_client().post("/v1/images/generations", headers=AUTH,
                                      json={"prompt": "a cat"})
        assert made.status_code == 200
        assert metrics.HISTORY_FAILURES._value.get() == before + 1


def test_answered_errors_go_to_the_activity_log_with_their_owner():
    with app_with() as (app, services):
        client = app.test_client()
        client.post("/v1/images/generations", headers=AUTH, json={"prompt": ""})
        client.get("/v1/models", headers=bearer("sk-wrong"))
        Client(app).post("/mcp", json={}, headers=bearer("sk-wrong"))
        # Written by the log's own thread: wait for the third line.
        mcp, wrong, empty = wait_until(lambda: (lines := services.activity.newest(3))
                                       and len(lines) == 3 and lines)
        assert (empty.owner, empty.status, empty.path) == (short_hash(TEST_KEY), 400,
                                                           "/v1/images/generations")
        assert (wrong.owner, wrong.status, wrong.code) == ("anonymous", 401, "invalid_api_key")
        assert (mcp.path, mcp.status) == ("/mcp", 401)
        assert "sk-wrong" not in str(services.activity.newest())


def test_a_failing_activity_write_still_answers_the_error(monkeypatch):
    with app_with() as (app, services):
        def broken(line):
            raise ConnectionError("down")

        monkeypatch.setattr(services.activity.store, "push", broken)
        answer = app.test_client().get("/v1/models", headers=bearer("sk-wrong"))
        assert answer.status_code == 401
