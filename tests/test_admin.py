"""The admin page (web/admin.py, web/admin_session.py) and its data route /v1/admin/overview:
sign-in, the session cookie, CSRF, the one admin check, headers, and the numbers it shows."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from flux_worker.cost.days import utc_day
from flux_worker.cost.ledgers import NEURONS, USD, key_counter, model_counter, short_hash
from flux_worker.web import admin_session
from flux_worker.web.admin_auth import require_admin
from tests.support import TEST_KEY, bearer, wait_until

ADMIN = "sk-admin-page-key-0001"
OTHER_ADMIN = "sk-admin-page-key-0002"
SCHNELL = "@cf/black-forest-labs/flux-1-schnell"
OVERVIEW = "/v1/admin/overview"


@pytest.fixture
def admin_app(apps):
    app = apps.app(ADMIN_API_KEY=ADMIN)
    # A change route as the admin API's are (the keys' POST/PATCH/DELETE): the one check.
    app.add_url_rule("/v1/admin/test-change", "test_change", _change, methods=["POST"])
    return app


def _change():
    require_admin()
    return {"changed": True}


def sign_in(client, key: str = ADMIN, **kwargs):
    return client.post("/admin/login", data={"key": key}, **kwargs)


def signed_in(app):
    """A client with a session, and the page's CSRF token."""
    client = app.test_client()
    assert sign_in(client).status_code == 303
    page = client.get("/admin").get_data(as_text=True)
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    return client, token


def altered(token: str) -> str:
    """`token` with its last character changed."""
    return token[:-1] + ("B" if token.endswith("A") else "A")


def set_cookie_of(response) -> str:
    cookies = [c for c in response.headers.getlist("Set-Cookie")
               if c.startswith(admin_session.COOKIE + "=")]
    assert len(cookies) == 1, cookies
    return cookies[0]


# --- off, sign-in, the cookie ----------------------------------------------------------------

def test_without_an_admin_key_the_page_is_off_and_says_how_to_turn_it_on(client):
    page = client.get("/admin")
    assert page.status_code == 404
    assert "ADMIN_API_KEY" in page.get_data(as_text=True) and page.mimetype == "text/html"
    as_json = client.get("/admin", headers={"Accept": "application/json"})
    assert as_json.status_code == 404 and as_json.get_json()["error"]["code"] == "not_found"
    assert client.post("/admin/login", data={"key": "x"}).status_code == 404
    assert client.get(OVERVIEW, headers=bearer(TEST_KEY)).status_code == 404


def test_sign_in_with_the_admin_key_sets_a_strict_http_only_cookie(admin_app):
    client = admin_app.test_client()
    assert 'id="signin"' in client.get("/admin").get_data(as_text=True)
    answer = sign_in(client)
    assert answer.status_code == 303 and answer.location.endswith("/admin")
    cookie = set_cookie_of(answer)
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert f"Max-Age={admin_session.LIFETIME}" in cookie
    assert "Secure" not in cookie                     # plain HTTP: a Secure cookie never returns
    assert ADMIN not in cookie
    page = client.get("/admin").get_data(as_text=True)
    assert 'id="admin-config"' in page and ADMIN not in page
    assert client.get(OVERVIEW).status_code == 200


@pytest.mark.parametrize("how", ["https", "trusted proxy"])
def test_the_cookie_is_secure_behind_https(admin_app, how):
    client = admin_app.test_client()
    if how == "https":
        answer = sign_in(client, base_url="https://admin.example")
    else:  # the test client's peer is 127.0.0.1, a trusted proxy by default
        answer = sign_in(client, headers={"X-Forwarded-Proto": "https"})
    assert "; Secure" in set_cookie_of(answer)


def test_an_untrusted_peer_cannot_claim_https(apps):
    client = apps.client(ADMIN_API_KEY=ADMIN, TRUSTED_PROXIES="")
    answer = sign_in(client, headers={"X-Forwarded-Proto": "https"})
    assert "Secure" not in set_cookie_of(answer)


def test_a_wrong_key_is_refused_and_failures_are_counted(admin_app, caplog):
    client = admin_app.test_client()
    wrong = sign_in(client, key="sk-wrong")
    assert wrong.status_code == 403 and not wrong.headers.getlist("Set-Cookie")
    assert "not the admin key (ADMIN_API_KEY)" in wrong.get_data(as_text=True)
    assert sign_in(client, key=TEST_KEY).status_code == 403      # a client key is no admin key
    as_json = sign_in(client, key="sk-wrong", headers={"Accept": "application/json"})
    assert as_json.get_json()["error"]["code"] == "permission_denied"
    for _ in range(admin_session.LOGIN_FAILURES - 3):
        sign_in(client, key="sk-wrong")
    # Now even the right key waits: guessing is bounded per address.
    blocked = sign_in(client)
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0
    assert not blocked.headers.getlist("Set-Cookie")
    assert "sk-wrong" not in caplog.text and ADMIN not in caplog.text


def test_a_good_sign_in_forgets_the_failures(admin_app):
    client = admin_app.test_client()
    for _ in range(admin_session.LOGIN_FAILURES - 1):
        sign_in(client, key="sk-wrong")
    assert sign_in(client).status_code == 303
    for _ in range(admin_session.LOGIN_FAILURES - 1):
        sign_in(client, key="sk-wrong")
    assert sign_in(client).status_code == 303


# --- the session across instances, key changes and sign-out ----------------------------------

def test_another_instance_accepts_the_session_and_a_new_admin_key_ends_it(admin_app, apps):
    client, _ = signed_in(admin_app)
    cookie = client.get_cookie(admin_session.COOKIE).value
    same_key = apps.app(ADMIN_API_KEY=ADMIN).test_client()
    same_key.set_cookie(admin_session.COOKIE, cookie)
    assert same_key.get(OVERVIEW).status_code == 200
    new_key = apps.app(ADMIN_API_KEY=OTHER_ADMIN).test_client()
    new_key.set_cookie(admin_session.COOKIE, cookie)
    assert new_key.get(OVERVIEW).status_code == 401
    assert 'id="signin"' in new_key.get("/admin").get_data(as_text=True)


@pytest.mark.parametrize("cookie", ["", "garbage", "1.2.3", "9999999999.nonce.c2lnbmF0dXJl"])
def test_a_forged_cookie_is_no_session(admin_app, cookie):
    client = admin_app.test_client()
    client.set_cookie(admin_session.COOKIE, cookie)
    assert client.get(OVERVIEW).status_code == 401


def test_an_expired_session_is_refused():
    value, _ = admin_session.issue(ADMIN, now=1000.0)
    assert admin_session.verify(ADMIN, value, 1000.0 + admin_session.LIFETIME - 1) is not None
    assert admin_session.verify(ADMIN, value, 1000.0 + admin_session.LIFETIME) is None
    assert admin_session.verify(OTHER_ADMIN, value, 1000.0) is None


def test_sign_out_needs_the_csrf_token_and_ends_the_session_for_a_copied_cookie(admin_app):
    client, token = signed_in(admin_app)
    cookie = client.get_cookie(admin_session.COOKIE).value
    assert client.post("/admin/logout").status_code == 403
    assert client.post("/admin/logout", data={"csrf_token": altered(token)}).status_code == 403
    assert client.get(OVERVIEW).status_code == 200            # refused sign-outs changed nothing
    answer = client.post("/admin/logout", data={"csrf_token": token})
    assert answer.status_code == 303
    assert "Max-Age=0" in set_cookie_of(answer) or "Expires=Thu, 01 Jan 1970" in \
        set_cookie_of(answer)
    replay = admin_app.test_client()
    replay.set_cookie(admin_session.COOKIE, cookie)
    assert replay.get(OVERVIEW).status_code == 401


# --- CSRF and the one admin check ------------------------------------------------------------

def test_a_session_changes_nothing_without_its_csrf_token(admin_app):
    client, token = signed_in(admin_app)
    missing = client.post("/v1/admin/test-change")
    assert missing.status_code == 403
    assert missing.get_json()["error"]["code"] == "permission_denied"
    assert client.post("/v1/admin/test-change",
                       headers={"X-CSRF-Token": altered(token)}).status_code == 403
    other, other_token = signed_in(admin_app)                 # another session's token
    assert other_token != token
    assert client.post("/v1/admin/test-change",
                       headers={"X-CSRF-Token": other_token}).status_code == 403
    assert client.post("/v1/admin/test-change",
                       headers={"X-CSRF-Token": token}).get_json() == {"changed": True}


def test_the_bearer_admin_key_needs_no_csrf_token(admin_app):
    client = admin_app.test_client()
    assert client.post("/v1/admin/test-change", headers=bearer(ADMIN)).status_code == 200


def test_a_client_key_is_refused_on_every_admin_route_even_beside_a_session(admin_app):
    anonymous = admin_app.test_client()
    for method, path in (("GET", OVERVIEW), ("POST", "/v1/admin/test-change")):
        assert anonymous.open(path, method=method).status_code == 401
        assert anonymous.open(path, method=method, headers=bearer(TEST_KEY)).status_code == 401
    client, token = signed_in(admin_app)
    assert client.get(OVERVIEW, headers=bearer(TEST_KEY)).status_code == 401
    assert client.post("/v1/admin/test-change", headers={
        **bearer(TEST_KEY), "X-CSRF-Token": token}).status_code == 401


# --- headers ---------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/admin", OVERVIEW])
@pytest.mark.parametrize("signed", [False, True])
def test_strict_csp_no_store_no_frames_no_referrer(admin_app, path, signed):
    client = signed_in(admin_app)[0] if signed else admin_app.test_client()
    answer = client.get(path)
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert answer.headers["Referrer-Policy"] == "no-referrer"
    if path == "/admin":
        csp = answer.headers["Content-Security-Policy"]
        for directive in ("default-src 'none'", "script-src 'self'", "style-src 'self'",
                          "connect-src 'self'", "form-action 'self'", "frame-ancestors 'none'"):
            assert directive in csp
        assert "unsafe-inline" not in csp
        assert "<script>" not in answer.get_data(as_text=True)   # the JSON block is data


# --- the numbers -----------------------------------------------------------------------------

def test_the_overview_adds_up_a_seeded_ledger_over_several_days(apps):
    app = apps.app(ADMIN_API_KEY=ADMIN, DAILY_USD="5", KEY_BUDGETS=f"{TEST_KEY}=$1")
    books = app.extensions["flux_worker"].books
    today = datetime.now(timezone.utc)
    for back, usd in ((0, 0.25), (1, 0.5), (12, 1.0), (31, 100.0)):
        day = utc_day(today - timedelta(days=back))
        amounts = {}
        for counter in ("service", key_counter(TEST_KEY), model_counter(SCHNELL)):
            amounts[USD.counter(counter)] = USD.whole(usd)
            amounts[NEURONS.counter(counter)] = NEURONS.whole(usd * 1000)
        books.add(day, amounts)
    body = app.test_client().get(OVERVIEW, headers=bearer(ADMIN)).get_json()
    spend = body["spend"]
    assert spend["total"] == {"today": {"neurons": 250.0, "usd": 0.25},
                              "last_30_days": {"neurons": 1750.0, "usd": 1.75}}
    assert [d["usd"] for d in spend["days"]][-2:] == [0.5, 0.25]
    assert sum(d["usd"] for d in spend["days"]) == 1.75
    assert spend["keys"] == [{"owner": short_hash(TEST_KEY), "name": None,
                              "today": {"neurons": 250.0, "usd": 0.25},
                              "last_30_days": {"neurons": 1750.0, "usd": 1.75}}]
    assert spend["models"][0]["model"] == SCHNELL
    assert spend["models"][0]["provider"] == "demo"          # the demo backend draws it
    assert spend["providers"][0]["provider"] == "demo"
    assert body["budgets"]["service"]["left_usd"] == 4.75
    key_line = body["budgets"]["keys"][0]
    assert key_line["key"] == short_hash(TEST_KEY) and key_line["left_usd"] == 0.75
    assert TEST_KEY not in str(body) and ADMIN not in str(body)


def test_open_routes_still_show_nothing_about_spend(admin_app):
    client, _ = signed_in(admin_app)                          # even to a signed-in browser
    for path in ("/", "/healthz", "/readyz"):
        text = client.get(path, headers={"Accept": "application/json"}).get_data(as_text=True)
        assert "spent" not in text and "budget" not in text, path


# --- recent generations and the activity log -------------------------------------------------

def test_recent_generations_of_every_key_with_cost_and_the_activity_log(admin_app):
    client = admin_app.test_client()
    made = client.post("/v1/images/generations", headers=bearer(TEST_KEY),
                       json={"prompt": "a cat 16:9", "response_format": "url"})
    assert made.status_code == 200
    assert client.post("/v1/images/generations", headers=bearer(TEST_KEY),
                       json={"prompt": ""}).status_code == 400
    [item] = client.get("/v1/admin/generations", headers=bearer(ADMIN)).get_json()["data"]
    assert item["url"] == made.get_json()["data"][0]["url"]
    assert (item["prompt"], item["size"], item["owner"], item["provider"]) == (
        "a cat 16:9", "1024x576", short_hash(TEST_KEY), "demo")
    assert set(item["cost"]) == {"neurons", "usd"}
    activity = admin_app.extensions["flux_worker"].activity
    wait_until(lambda: activity.newest(1), message="the refusal is logged")
    lines = client.get("/v1/admin/activity?limit=5", headers=bearer(ADMIN)).get_json()["data"]
    assert (lines[0]["owner"], lines[0]["status"], lines[0]["path"]) == (
        short_hash(TEST_KEY), 400, "/v1/images/generations")
    for path in ("/v1/admin/generations", "/v1/admin/activity"):
        assert client.get(path, headers=bearer(TEST_KEY)).status_code == 401
        assert TEST_KEY not in client.get(path, headers=bearer(ADMIN)).get_data(as_text=True)


def test_without_a_history_the_generations_say_why(apps):
    client = apps.client(ADMIN_API_KEY=ADMIN, IMAGE_HISTORY="off")
    answer = client.get("/v1/admin/generations", headers=bearer(ADMIN))
    assert answer.status_code == 404 and answer.get_json()["error"]["code"] == "history_unavailable"
