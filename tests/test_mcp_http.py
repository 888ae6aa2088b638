"""The /mcp mount inside the WSGI app: key check, request ids, CORS, access log, JSON-RPC."""

from __future__ import annotations

import logging
import os
import pathlib
import signal
import subprocess
import sys

import pytest
from werkzeug.test import Client

from flux_worker import create_app
from tests.support import TEST_KEY, make_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
ACCEPT = "application/json, text/event-stream"
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {},
    "clientInfo": {"name": "test", "version": "1"}}}


@pytest.fixture
def app():
    application = create_app(make_config())
    yield application
    application.wsgi_app.app.close()  # TrustedProxyFix -> McpMount
    application.extensions["flux_worker"].close()


def post(app, body, key=TEST_KEY, **headers):
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return Client(app).post("/mcp", json=body, headers={"Accept": ACCEPT, **headers},
                            buffered=True)


def test_wrong_or_missing_key_gets_the_api_401(app):
    api = Client(app).get("/v1/models", headers={"Authorization": "Bearer sk-wrong"})
    wrong = post(app, INITIALIZE, key="sk-wrong")
    assert wrong.status_code == 401 and wrong.get_json() == api.get_json()
    assert wrong.headers["WWW-Authenticate"] == "Bearer"
    missing = post(app, INITIALIZE, key=None)
    assert missing.status_code == 401
    assert missing.get_json()["error"]["code"] == "invalid_api_key"
    assert "didn't provide an API key" in missing.get_json()["error"]["message"]


def test_initialize_answers_json_with_request_id_and_cors(app, caplog):
    with caplog.at_level(logging.INFO, logger="flux_worker.access"):
        resp = post(app, INITIALIZE, **{"X-Request-ID": "mcp-test-1"})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.headers["X-Request-ID"] == "mcp-test-1"
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    result = resp.get_json()["result"]
    assert result["serverInfo"]["name"] == "flux-worker"
    assert "tools" in result["capabilities"]
    assert "Mcp-Session-Id" not in resp.headers  # stateless: any worker answers the next call
    assert any("mcp-test-1 POST /mcp 200" in r.getMessage() for r in caplog.records)


def test_tools_list_without_a_session(app):
    resp = post(app, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                **{"MCP-Protocol-Version": "2025-11-25"})
    assert resp.status_code == 200
    names = {t["name"] for t in resp.get_json()["result"]["tools"]}
    assert names == {"generate_image", "edit_image", "list_models"}


def test_preflight_needs_no_key(app):
    resp = Client(app).options("/mcp", headers={
        "Origin": "https://agent.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, mcp-protocol-version"})
    assert resp.status_code == 204
    assert "mcp-protocol-version" in resp.headers["Access-Control-Allow-Headers"]


def test_other_paths_are_not_mcp(app):
    assert Client(app).get("/healthz").status_code == 200
    assert Client(app).post("/mcpx", json={}).status_code == 404


@pytest.mark.parametrize("method", ["GET", "DELETE", "PUT"])
def test_only_post_is_served(app, method):
    # GET would open an event stream a stateless server never writes to.
    resp = Client(app).open("/mcp", method=method, buffered=True,
                            headers={"Authorization": f"Bearer {TEST_KEY}", "Accept": ACCEPT})
    assert resp.status_code == 405 and resp.headers["Allow"] == "POST, OPTIONS"
    assert resp.get_json()["error"]["code"] == "method_not_allowed"
    assert "POST" in resp.get_json()["error"]["message"]


def test_key_is_checked_before_the_method(app):
    resp = Client(app).get("/mcp", buffered=True, headers={"Accept": ACCEPT})
    assert resp.status_code == 401


def test_a_forked_process_starts_its_own_transport(app):
    # gunicorn forks workers from the master; a loop thread started before the fork does not
    # exist in the child, so the bridge must notice the new process and start again there.
    assert post(app, INITIALIZE).status_code == 200  # started in this process
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: answer one request, report its status, leave at once
        signal.alarm(20)  # a transport left behind by the fork would hang here: fail instead
        status = 0
        try:
            status = post(app, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                          **{"MCP-Protocol-Version": "2025-11-25"}).status_code
        finally:
            os.write(write, str(status).encode())
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        answer = pipe.read()
    os.waitpid(pid, 0)
    assert answer == "200"
    assert post(app, INITIALIZE).status_code == 200  # the parent's transport is untouched


def test_a_body_over_the_limit_gets_the_api_413():
    application = create_app(make_config(MAX_BODY_BYTES="2048", MAX_UPLOAD_BYTES="4096"))
    try:
        big = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
               "params": {"name": "generate_image", "arguments": {"prompt": "x" * 5000}}}
        resp = post(application, big)
        assert resp.status_code == 413
        assert resp.get_json()["error"]["code"] == "payload_too_large"
        assert "MAX_UPLOAD_BYTES" in resp.get_json()["error"]["message"]
        # Within the limit, the same route answers MCP as usual.
        assert post(application, INITIALIZE).status_code == 200
    finally:
        application.wsgi_app.app.close()
        application.extensions["flux_worker"].close()


def test_the_sdk_loads_with_the_first_mcp_request_not_with_the_app():
    # The SDK is half of the app's import time and ~28 MiB per worker (docs/benchmarks.md).
    script = (
        "import sys\n"
        "from werkzeug.test import Client\n"
        "from flux_worker import create_app\n"
        "from tests.support import TEST_KEY, make_config\n"
        "app = create_app(make_config())\n"
        "loaded = lambda: sorted(m for m in sys.modules if m.split('.')[0] in "
        "('mcp', 'mcp_types', 'a2wsgi'))\n"
        "assert loaded() == [], loaded()\n"
        "Client(app).get('/v1/models', headers={'Authorization': 'Bearer ' + TEST_KEY})\n"
        "assert loaded() == [], loaded()\n"
        "resp = Client(app).post('/mcp', json={'jsonrpc': '2.0', 'id': 1, 'method': 'ping'},\n"
        "    headers={'Authorization': 'Bearer ' + TEST_KEY,\n"
        "             'Accept': 'application/json, text/event-stream'})\n"
        "assert resp.status_code == 200, resp.get_data(as_text=True)\n"
        "assert 'mcp' in loaded(), loaded()\n"
        "app.wsgi_app.app.close()\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
