"""The fake Cloudflare's several accounts, its used-up accounts and its neurons header."""

from __future__ import annotations

from harness.fakes.cloudflare import make_app

SCHNELL = "@cf/black-forest-labs/flux-1-schnell"


def run(client, account: str, token: str):
    return client.post(f"/client/v4/accounts/{account}/ai/run/{SCHNELL}",
                       json={"prompt": "a cat", "steps": 4},
                       headers={"Authorization": f"Bearer {token}"})


def test_each_account_takes_only_its_own_token():
    client = make_app(account_id="one", api_token="t1", more_accounts={"two": "t2"}).test_client()
    assert run(client, "one", "t1").status_code == 200
    assert run(client, "two", "t2").status_code == 200
    crossed = run(client, "two", "t1")
    assert crossed.status_code == 401 and crossed.get_json()["errors"][0]["code"] == 10000
    assert run(client, "three", "t1").get_json()["errors"][0]["code"] == 7003
    assert run(client, "one", "nope").status_code == 401


def test_an_exhausted_account_answers_4006_until_cleared():
    app = make_app(account_id="one", api_token="t1", more_accounts={"two": "t2"})
    client = app.test_client()
    client.post("/_fake/accounts", json={"exhausted": ["one"]})
    used_up = run(client, "one", "t1")
    assert used_up.status_code == 429 and used_up.get_json()["errors"][0]["code"] == 4006
    assert "daily free allocation" in used_up.get_json()["errors"][0]["message"]
    assert run(client, "two", "t2").status_code == 200
    client.post("/_fake/reset")
    assert run(client, "one", "t1").status_code == 200


def test_neurons_header_on_json_successes_only_when_configured():
    plain = make_app(account_id="one", api_token="t1").test_client()
    assert "cf-ai-neurons" not in run(plain, "one", "t1").headers
    told = make_app(account_id="one", api_token="t1", neurons_header="57.6").test_client()
    assert run(told, "one", "t1").headers["cf-ai-neurons"] == "57.6"
