"""Strange input and hostile headers at the HTTP boundary (issue 10), through a test client."""

from __future__ import annotations

import io
import json
import logging

import pytest

from flux_worker.logs import RedactSecrets, printable
from flux_worker.web.body import MAX_DEPTH
from tests.support import TEST_KEY, make_config

AUTH = {"Authorization": f"Bearer {TEST_KEY}"}


def _post(client, path, raw: bytes, headers=None):
    return client.post(path, data=raw, headers={**AUTH, "Content-Type": "application/json",
                                                **(headers or {})})


def _generations(app) -> int:
    store = app.extensions["flux_worker"].store
    return len(getattr(store, "_items", getattr(store, "_images", {})))


@pytest.mark.parametrize("path,body", [
    ("/v1/chat/completions",
     '{"model": "flux", "messages": [{"role": "user", "content": "a cat \\ud83d"}]}'),
    ("/v1/chat/completions",
     '{"model": "flux", "stream": true, "messages": [{"role": "user", "content": "\\ud83d"}]}'),
    ("/v1/chat/completions",
     '{"model": "\\udc00", "messages": [{"role": "user", "content": "a cat"}]}'),
    ("/v1/images/generations", '{"prompt": "a cat", "size": "\\ud83d"}'),
    ("/v1/images/generations", '{"prompt": "a cat", "model": "flux\\ud800"}'),
    ("/v1/images/generations", '{"prompt": "a cat", "\\ud83d": 1}'),
])
def test_lone_surrogates_anywhere_are_400_before_any_work(client, app, path, body):
    before = _generations(app)
    response = _post(client, path, body.encode())
    assert response.status_code == 400, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert "surrogate" in error["message"] and error["type"] == "invalid_request_error"
    assert response.mimetype == "application/json"
    assert _generations(app) == before


def test_a_whole_surrogate_pair_is_fine(client):
    body = '{"model": "flux", "messages": [{"role": "user", "content": "a cat \\ud83d\\ude00"}]}'
    assert _post(client, "/v1/chat/completions", body.encode()).status_code == 200


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5000, 200_000])
def test_deeply_nested_json_is_400(client, depth):
    raw = b'{"prompt": "a cat", "x": ' + b"[" * depth + b"]" * depth + b"}"
    response = _post(client, "/v1/images/generations", raw)
    assert response.status_code in (400, 413), response.get_data(as_text=True)[:300]
    if len(raw) < make_config().max_body_bytes:
        assert response.status_code == 400
        assert "nested too deeply" in response.get_json()["error"]["message"]


def test_chunked_body_over_the_limit_is_413(client):
    limit = make_config().max_body_bytes
    raw = b'{"prompt": "' + b"a" * (limit + 10) + b'"}'
    response = client.post("/v1/images/generations", input_stream=io.BytesIO(raw),
                           headers={**AUTH, "Content-Type": "application/json",
                                    "Transfer-Encoding": "chunked"},
                           environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"


def test_chunked_body_under_the_limit_is_read(client):
    raw = b'{"model": "flux", "messages": [{"role": "user", "content": "a cat"}]}'
    response = client.post("/v1/chat/completions", input_stream=io.BytesIO(raw),
                           headers={**AUTH, "Content-Type": "application/json",
                                    "Transfer-Encoding": "chunked"},
                           environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code == 200


def test_401_names_the_bearer_scheme(client):
    response = client.get("/v1/models")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_access_log_escapes_control_characters(client, caplog):
    with caplog.at_level(logging.INFO, logger="flux_worker"):
        client.get("/v1/models/x%0a2026-01-01 INFO forged%1b[31m", headers=AUTH)
        client.post("/v1/chat/completions", headers=AUTH, json={
            "model": "m\nFORGED", "messages": [{"role": "user", "content": "generate a title "
                                                "for this conversation"}]})
    lines = [r.getMessage() for r in caplog.records]
    assert lines and not any("\n" in line or "\x1b" in line for line in lines), lines
    assert any("\\x0a2026-01-01" in line for line in lines)


def test_log_filter_escapes_every_message():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "path %s", ("/a\nb\x1b[0m",), None)
    RedactSecrets(("secret-value",)).filter(record)
    assert record.getMessage() == "path /a\\x0ab\\x1b[0m"
    assert printable("a\u2028b\x85") == "a\\u2028b\\x85"


@pytest.mark.parametrize("proto", ["javascript", "javascript://", "ftp", "https, javascript"])
def test_forwarded_proto_other_than_http_or_https_is_ignored(client, proto):
    info = client.get("/", headers={"Accept": "application/json",
                                    "X-Forwarded-Proto": proto}).get_json()
    assert info["base_url"].startswith("http://localhost"), info["base_url"]


def test_forwarded_host_and_prefix_must_be_sane(client):
    info = client.get("/", headers={"Accept": "application/json", "X-Forwarded-Proto": "https",
                                    "X-Forwarded-Host": "evil.example/\"><script>",
                                    "X-Forwarded-Prefix": "/a)b"}).get_json()
    assert info["base_url"] == "https://localhost/v1"
    info = client.get("/", headers={"Accept": "application/json",
                                    "X-Forwarded-Host": "img.example.com:8443",
                                    "X-Forwarded-Prefix": "/flux"}).get_json()
    assert info["base_url"] == "http://img.example.com:8443/flux/v1"


def test_fast_path_images_vary_on_origin_with_a_cors_list(apps):
    client = apps.client(CORS_ORIGINS="https://a.example,https://b.example")
    body = client.post("/v1/images/generations", headers=AUTH,
                       json={"prompt": "a cat", "response_format": "url"}).get_json()
    path = "/" + body["data"][0]["url"].split("://", 1)[1].split("/", 1)[1]
    response = client.get(path, headers={"Origin": "https://a.example"})
    assert response.status_code == 200
    assert "Origin" in response.headers.get("Vary", "")
    assert response.headers["Access-Control-Allow-Origin"] == "https://a.example"


def test_storage_failures_on_open_routes_reveal_no_address(apps):
    client = apps.client(STORAGE_URL="redis://127.0.0.1:9/0")
    for path in ("/readyz", "/image/" + "A" * 32):
        response = client.get(path)
        text = response.get_data(as_text=True)
        assert response.status_code == 503, text
        assert "127.0.0.1" not in text and ":9" not in text, text
        json.loads(text)
