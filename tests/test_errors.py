"""Every error path answers with the one OpenAI-shaped body, CORS headers included.

Client mistakes go through the demo app; upstream failures through a Cloudflare-configured app
whose HTTP edge is played by `responses`. A spy around the real store proves nothing is stored
when generation fails.
"""

from __future__ import annotations

import base64
import io
import json
from unittest import mock

import pytest
import responses
from PIL import Image

from flux_worker.errors import StorageError, StorageFull
from tests.support import TEST_KEY, sse_chunks

CF_BASE = "http://cf.invalid/client/v4"
CF_TOKEN = "cf-secret-token-abcdef"
SCHNELL_URL = f"{CF_BASE}/accounts/acct/ai/run/@cf/black-forest-labs/flux-1-schnell"
USER = {"messages": [{"role": "user", "content": "a cat 16:9"}]}
CHAT = "/v1/chat/completions"


def says(content) -> dict:
    """Build the test client's keywords for a chat request of one user message."""
    return {"json": {"messages": [{"role": "user", "content": content}]}}


def assert_error_shape(resp, status, code=None, type_=None):
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json()
    assert set(body) >= {"error"}
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and len(err["message"]) > 15
    if code is not None:
        assert err["code"] == code
    if type_ is not None:
        assert err["type"] == type_
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert resp.headers["Content-Type"].startswith("application/json")
    for secret in (TEST_KEY, CF_TOKEN):
        assert secret not in resp.get_data(as_text=True)
    return err


CLIENT_ERRORS = [
    ("post", CHAT, {"data": "{not json", "content_type": "application/json"}, 400),
    ("post", CHAT, {"data": "", "content_type": "application/json"}, 400),
    ("post", CHAT, {"json": [1, 2]}, 400),
    ("post", CHAT, {"json": {}}, 400),
    ("post", CHAT, {"json": {"messages": "hi"}}, 400),
    ("post", CHAT, {"json": {"messages": [{"role": "system", "content": "x"}]}}, 400),
    ("post", CHAT, says(5), 400),
    ("post", CHAT, says("  "), 400),
    ("post", CHAT, says("16:9"), 400),
    ("post", CHAT, {"json": dict(USER, stream="yes")}, 400),
    ("post", CHAT, {"json": dict(USER, model=42)}, 400),
    ("post", "/v1/images/generations", {"json": {"prompt": ""}}, 400),
    ("post", "/v1/images/generations", {"json": {"prompt": "x", "n": 99}}, 400),
    ("post", "/v1/images/generations", {"json": {"prompt": "x", "size": "huge"}}, 400),
    ("post", "/v1/images/generations", {"json": {"prompt": "x", "response_format": "gif"}}, 400),
    ("post", "/v1/images/generations", {"json": {"prompt": "x", "model": "nope"}}, 404),
    ("get", "/v1/models/nope", {}, 404),
    ("get", "/v1/nothing-here", {}, 404),
    ("get", "/image/not-a-key", {}, 404),
    ("get", CHAT, {}, 405),
    ("delete", "/v1/models", {}, 405),
    ("post", CHAT, {"data": "x" * (2 << 20), "content_type": "application/json"}, 413),
]


@pytest.mark.parametrize("method,path,kwargs,status", CLIENT_ERRORS)
def test_client_errors_have_openai_shape(client, auth, method, path, kwargs, status):
    resp = getattr(client, method)(path, headers=auth, **kwargs)
    assert_error_shape(resp, status, type_="invalid_request_error")


def test_prompt_too_long(client, auth):
    resp = client.post("/v1/chat/completions", headers=auth,
                       json={"messages": [{"role": "user", "content": "a" * 2049}]})
    assert_error_shape(resp, 400, code="prompt_too_long")


def test_preflight_is_204_on_any_path(client):
    for path in ("/v1/chat/completions", "/whatever"):
        resp = client.options(path, headers={"Origin": "https://chat.example",
                                             "Access-Control-Request-Method": "POST",
                                             "Access-Control-Request-Headers": "authorization"})
        assert resp.status_code == 204
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert "authorization" in resp.headers["Access-Control-Allow-Headers"].lower()


def test_cors_origin_list(apps):
    client = apps.client(CORS_ORIGINS="https://a.example,https://b.example")
    ok = client.get("/healthz", headers={"Origin": "https://b.example"})
    assert ok.headers["Access-Control-Allow-Origin"] == "https://b.example"
    other = client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


class SpyStore:
    """Wraps the real store and records puts."""

    def __init__(self, inner):
        self.inner, self.kind, self.puts = inner, inner.kind, []

    def put(self, key, *args, **kwargs):
        self.puts.append(key)
        return self.inner.put(key, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.fixture
def cf_app(apps):
    services = apps.services(CF_ACCOUNT_ID="acct", CF_API_TOKEN=CF_TOKEN, CF_API_BASE=CF_BASE,
                             UPSTREAM_RETRIES="0")
    services.store = services.pipeline.store = SpyStore(services.store)
    return apps.app(services=services)


def cf_error(status, code, message, headers=None):
    return dict(status=status, headers=headers or {}, json={
        "result": None, "success": False, "errors": [{"code": code, "message": message}],
        "messages": []})


UPSTREAM = [
    (cf_error(400, 3030, "AiError: AiError: Your output has been flagged. (e900ad1a)"), 400,
     "content_policy_violation"),
    (cf_error(429, 4006, "AiError: AiError: you have used up your daily free allocation of 10,000 "
                         "neurons, please upgrade"), 429, "insufficient_quota"),
    (cf_error(429, 3036, "Account limited"), 429, "insufficient_quota"),
    (cf_error(429, 3040, "Capacity temporarily exceeded, please try again."), 503,
     "rate_limit_exceeded"),
    (cf_error(401, 10000, "Authentication error"), 502, "upstream_auth_failed"),
    (cf_error(500, 8008, "AiError: 8008: Internal server error"), 502, "upstream_error"),
    (dict(status=200, body="{not json", content_type="application/json"), 502, "upstream_error"),
    (dict(status=200, json={"success": True, "result": {
        "image": base64.b64encode(b"this is not an image").decode()}}), 502, "upstream_error"),
]


@pytest.mark.parametrize("upstream,status,code", UPSTREAM)
@pytest.mark.parametrize("stream", [False, True])
@responses.activate
def test_upstream_failures_map_and_store_nothing(cf_app, upstream, status, code, stream):
    responses.add(responses.POST, SCHNELL_URL, **upstream)
    client = cf_app.test_client()
    resp = client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {TEST_KEY}"},
                       json=dict(USER, stream=stream))
    if stream:
        text = resp.get_data(as_text=True)
        assert resp.status_code == 200 and text.endswith("data: [DONE]\n\n")
        chunks = sse_chunks(text)
        last_words = chunks[-2]["choices"][0]["delta"]["content"]
        assert "❌" in last_words and chunks[-1]["choices"][0]["finish_reason"] == "stop"
        assert CF_TOKEN not in text
    else:
        err = assert_error_shape(resp, status, code=code)
        if status == 429 or code == "rate_limit_exceeded":
            assert int(resp.headers["Retry-After"]) > 0
        if code == "insufficient_quota":
            assert "00:00 UTC" in err["message"]
    assert cf_app.extensions["flux_worker"].store.puts == []


@responses.activate
def test_schnell_gets_only_prompt_and_steps_and_output_is_resized(cf_app):
    buf = io.BytesIO()
    Image.new("RGB", (1024, 1024), "navy").save(buf, "JPEG")
    responses.add(responses.POST, SCHNELL_URL, json={
        "result": {"image": base64.b64encode(buf.getvalue()).decode()}, "success": True,
        "errors": [], "messages": []})
    client = cf_app.test_client()
    resp = client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {TEST_KEY}"},
                       json=USER)
    assert resp.status_code == 200
    sent = json.loads(responses.calls[0].request.body)
    assert sent == {"prompt": "a cat", "steps": 4}
    assert responses.calls[0].request.headers["Authorization"] == f"Bearer {CF_TOKEN}"
    content = resp.get_json()["choices"][0]["message"]["content"]
    url = content.rsplit("(", 1)[1].rstrip(")")
    img = Image.open(io.BytesIO(client.get(url.split("localhost", 1)[1]).data))
    assert img.size == (1024, 576) and img.format == "JPEG"


@pytest.mark.parametrize("failure,status", [
    (StorageFull("Image storage is full: free disk space"), 507),
    (StorageError("Image storage (Redis) is unreachable"), 503),
])
def test_storage_failures_are_storage_errors(apps, tmp_path, failure, status):
    services = apps.services(STORAGE_URL=f"disk://{tmp_path}")
    client = apps.app(services=services).test_client()
    with mock.patch.object(services.store, "put", side_effect=failure), \
            mock.patch.object(services.store, "ping", side_effect=failure):
        resp = client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {TEST_KEY}"},
                           json=USER)
        assert_error_shape(resp, status, code="storage_error", type_="storage_error")
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.get_json()["status"] == "unavailable"
    # Storage is back: the same process recovers without a restart.
    assert client.get("/readyz").status_code == 200
    assert client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {TEST_KEY}"},
                       json=USER).status_code == 200
