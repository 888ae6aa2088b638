"""The Bearer key: parsed once per request, and the same identity and budget on every edge."""

from __future__ import annotations

import pytest
from werkzeug.test import Client

from flux_worker import create_app
from flux_worker.errors import AuthenticationError
from flux_worker.web import auth as web_auth
from tests.support import TEST_KEY, make_config

ADMIN = "sk-admin-key-0000"
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {},
    "clientInfo": {"name": "test", "version": "1"}}}


@pytest.fixture
def app():
    application = create_app(make_config(ADMIN_API_KEY=ADMIN))
    yield application
    application.wsgi_app.app.close()  # TrustedProxyFix -> McpMount
    application.extensions["flux_worker"].close()


@pytest.fixture
def parses(monkeypatch):
    """The Authorization headers parsed for a Bearer token, one entry per parse."""
    calls: list = []
    real = web_auth.bearer_token

    def counting(auth):
        calls.append(auth)
        return real(auth)

    monkeypatch.setattr(web_auth, "bearer_token", counting)
    return calls


@pytest.mark.parametrize("who", ["admin", "client"])
def test_usage_parses_the_authorization_header_once(app, parses, who):
    key = ADMIN if who == "admin" else TEST_KEY
    response = app.test_client().get("/v1/usage", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert len(parses) == 1
    assert ("keys" in response.get_json()) == (who == "admin")
    assert ("key" in response.get_json()) == (who == "client")


def test_a_chat_parses_the_authorization_header_once(app, parses):
    response = app.test_client().post("/v1/chat/completions", headers={
        "Authorization": f"Bearer {TEST_KEY}"}, json={
        "model": "flux", "messages": [{"role": "user", "content": "a cat"}]})
    assert response.status_code == 200
    assert len(parses) == 1  # the key check, the rate-limit identity and the budget share it


def test_mcp_parses_the_authorization_header_once(app, parses):
    response = Client(app).post("/mcp", json=INITIALIZE, buffered=True, headers={
        "Authorization": f"Bearer {TEST_KEY}", "Accept": "application/json, text/event-stream"})
    assert response.status_code == 200
    assert len(parses) == 1


def test_a_refused_key_is_no_identity(app):
    with app.test_request_context(headers={"Authorization": "Bearer sk-wrong"}):
        with pytest.raises(AuthenticationError):
            web_auth.require_api_key()
        assert web_auth.caller_key() is None
        assert web_auth.caller_identity() != "sk-wrong"
        assert not web_auth.key_proved()
    with app.test_request_context(headers={"Authorization": f"Bearer {TEST_KEY}"}):
        web_auth.require_api_key()
        assert web_auth.caller_key() == web_auth.caller_identity() == TEST_KEY
        assert web_auth.key_proved()


def test_identity_and_budget_without_keys_are_the_address():
    open_app = create_app(make_config(API_KEY=""))
    try:
        with open_app.test_request_context(headers={"Authorization": "Bearer sk-any"},
                                           environ_base={"REMOTE_ADDR": "10.0.0.9"}):
            web_auth.require_api_key()
            assert web_auth.caller_identity() == "10.0.0.9"
            assert web_auth.caller_key() is None and web_auth.caller_terms() is None
            assert not web_auth.key_proved()
    finally:
        open_app.wsgi_app.app.close()
        open_app.extensions["flux_worker"].close()
    assert web_auth.bearer_of_header("Bearer  sk-x ") == "sk-x"
    assert web_auth.bearer_of_header("Basic dXNlcjpwYXNz") is None
    assert web_auth.bearer_of_header(None) is None
