"""Body limits and bodies without a length, through the test client: JSON keeps MAX_BODY_BYTES on
/v1/images/edits, a form refused for its shape says so, a chunked body reaches /mcp, and a body
that ends early is the client's 400, never a 500."""

from __future__ import annotations

import io
import json
import logging

import pytest

from flux_worker.bodies import gather_limit, upload_limit
from tests.support import AUTH, app_with, make_config

ACCEPT = "application/json, text/event-stream"
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {},
    "clientInfo": {"name": "test", "version": "1"}}}
# What gunicorn passes for a chunked body: no CONTENT_LENGTH (the test client would measure one).
CHUNKED = {"wsgi.input_terminated": True, "CONTENT_LENGTH": ""}


@pytest.fixture
def client():
    with app_with() as (app, _services):
        yield app.test_client()


class EndsEarly(io.BytesIO):
    """A chunked body whose client stops sending: like gunicorn's Body, a read that cannot be
    filled waits for more, and then raises NoMoreData (an OSError)."""

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        if size is None or size < 0 or len(data) < size:
            raise OSError("no more data")
        return data

    def read1(self, size: int | None = -1) -> bytes:
        return self.read(size)

    def readline(self, size: int | None = -1) -> bytes:
        raise OSError("no more data")


def test_edits_keep_the_json_limit_for_json(client):
    limit = make_config().max_body_bytes
    body = json.dumps({"prompt": "a cat", "model": "flux", "user": "a" * limit}).encode()
    assert limit < len(body) < make_config().max_upload_bytes
    response = client.post("/v1/images/edits", data=body, headers={
        **AUTH, "Content-Type": "application/json"})
    assert response.status_code == 413
    assert "MAX_BODY_BYTES" in response.get_json()["error"]["message"]


@pytest.mark.parametrize("form", [
    {f"field{i}": "x" for i in range(1001)},                          # over 1,000 parts
    {"prompt": "a cat", "notes": "x" * 600_000},                      # a 600 KB text field
])
def test_a_form_refused_for_its_shape_says_so(client, form):
    response = client.post("/v1/images/edits", data=form, headers=AUTH,
                           content_type="multipart/form-data")
    assert response.status_code == 413
    message = response.get_json()["error"]["message"]
    assert "larger than" not in message and "MAX_UPLOAD_BYTES" not in message, message
    assert "parts" in message and "text field" in message


def test_a_huge_part_header_says_so(client):
    boundary = "b0undary"
    raw = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"prompt\"\r\nX-Pad: "
           + "a" * 1_000_000 + f"\r\n\r\na cat\r\n--{boundary}--\r\n").encode()
    response = client.post("/v1/images/edits", data=raw, headers={
        **AUTH, "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 413
    assert "part header" in response.get_json()["error"]["message"]


def test_a_chunked_body_reaches_mcp(client):
    response = client.post("/mcp", input_stream=io.BytesIO(json.dumps(INITIALIZE).encode()),
                           headers={**AUTH, "Accept": ACCEPT, "Content-Type": "application/json",
                                    "Transfer-Encoding": "chunked"},
                           environ_overrides=CHUNKED)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["result"]["serverInfo"]


def test_a_chunked_body_over_the_mcp_limit_is_413(client):
    limit = upload_limit(make_config())
    response = client.post("/mcp", input_stream=io.BytesIO(b" " * (limit + 1)), headers={
        **AUTH, "Accept": ACCEPT, "Content-Type": "application/json",
        "Transfer-Encoding": "chunked"}, environ_overrides=CHUNKED)
    assert response.status_code == 413
    assert "MAX_UPLOAD_BYTES" in response.get_json()["error"]["message"]


@pytest.mark.parametrize("path,content_type", [
    ("/v1/chat/completions", "application/json"),
    ("/v1/images/edits", "multipart/form-data; boundary=b0undary"),
    ("/mcp", "application/json"),
])
def test_a_body_that_ends_early_is_a_400_without_a_traceback(client, caplog, path, content_type):
    with caplog.at_level(logging.INFO):
        response = client.post(path, input_stream=EndsEarly(b'{"model": "fl'), headers={
            **AUTH, "Accept": ACCEPT, "Content-Type": content_type,
            "Transfer-Encoding": "chunked"}, environ_overrides=CHUNKED)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert "ended before it was complete" in response.get_json()["error"]["message"]
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


def test_the_worker_gathers_no_less_than_a_route_takes():
    config = make_config()
    assert gather_limit(config, "/v1/chat/completions", False) == config.max_body_bytes
    assert gather_limit(config, "/v1/images/edits", False) == config.max_body_bytes
    assert gather_limit(config, "/v1/images/edits", True) >= config.max_upload_bytes
    assert gather_limit(config, "/mcp", False) == upload_limit(config)
    assert gather_limit(config, "/mcp/", False) == upload_limit(config)
