"""The three edges answer alike: Flask's error boundary, the image fast path and the /mcp mount.

Each failure is driven through a Flask route (POST /v1/chat/completions), GET /image/<key> (the
fast path) and POST /mcp, and the answers must be the same bytes with the same CORS, Vary and
WWW-Authenticate headers. Where an edge cannot meet a failure on its own (an image needs no key;
the mount has no storage to fail), the failure is injected at the first thing that edge does:
the key check on the keyed edges, `store.open` on the fast path.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import pytest
from flask import Flask

from flux_worker import create_app
from flux_worker.errors import (
    APIError,
    AuthenticationError,
    InvalidRequest,
    MethodNotAllowed,
    StorageError,
    StorageFull,
    public_error,
    without_addresses,
)
from flux_worker.keys.ring import KeyRing
from flux_worker.web import edge
from tests.support import TEST_KEY, make_config

ALLOWED = "https://a.example"
CORS_LIST = f"{ALLOWED},https://b.example"
ACCEPT = "application/json, text/event-stream"
IMAGE = "/image/" + "A" * 32  # a well-formed key: the fast path asks storage for it
CHAT = {"model": "flux", "messages": [{"role": "user", "content": "a cat"}]}
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {},
    "clientInfo": {"name": "test", "version": "1"}}}
# Every header in which two edges could differ for the same error; the request id differs by
# design (one per request) and is checked for presence only.
COMPARED = ("Content-Type", "Content-Length", "Access-Control-Allow-Origin",
            "Access-Control-Allow-Methods", "Access-Control-Allow-Headers",
            "Access-Control-Expose-Headers", "Access-Control-Max-Age", "Vary",
            "WWW-Authenticate", "Retry-After", "Allow", "X-Content-Type-Options")
ADDRESSES = ("Image storage (Redis) is unreachable: Error 111 connecting to cache.internal:6379 "
             "(redis://10.0.0.5:6379/0, [fd00::5]:6379); spill file /var/lib/flux/spill.db")

# Buffered: each answer is read and closed before the app (and the MCP transport) is closed.
EDGES: dict[str, Callable] = {
    "flask": lambda client, headers: client.post("/v1/chat/completions", json=CHAT,
                                                 headers=headers, buffered=True),
    "fast path": lambda client, headers: client.get(IMAGE, headers=headers, buffered=True),
    "mcp": lambda client, headers: client.post("/mcp", json=INITIALIZE, buffered=True,
                                               headers={"Accept": ACCEPT, **headers}),
}


@contextlib.contextmanager
def running(**overrides: object) -> Iterator[Flask]:
    app = create_app(make_config(**overrides))
    try:
        yield app
    finally:
        app.wsgi_app.app.close()  # TrustedProxyFix -> McpMount: its transport, if started
        app.extensions["flux_worker"].close()


def raising(exc: APIError) -> Callable:
    def fail(*args, **kwargs):
        raise exc
    return fail


def inject(monkeypatch, app: Flask, exc: APIError, edges=tuple(EDGES)) -> None:
    """Make `edges` meet `exc` first: the key check of Flask and /mcp, the fast path's open."""
    if "flask" in edges or "mcp" in edges:      # both ask the one key check
        monkeypatch.setattr(app.extensions["flux_worker"].keyring, "check", raising(exc))
    if "fast path" in edges:
        monkeypatch.setattr(app.extensions["flux_worker"].store, "open", raising(exc))


def answers(app: Flask, headers: dict) -> dict:
    client = app.test_client()
    return {name: send(client, headers) for name, send in EDGES.items()}


def compared(response) -> dict:
    return {name: response.headers.get(name) for name in COMPARED}


def assert_alike(responses: dict) -> None:
    """The same status, body bytes and compared headers from every edge."""
    (first, reference), *others = responses.items()
    for name, response in others:
        assert response.status_code == reference.status_code, (first, name)
        assert response.get_data() == reference.get_data(), (first, name)
        assert compared(response) == compared(reference), (first, name)
    for response in responses.values():
        assert response.headers["X-Request-ID"]
        assert response.headers.getlist("Vary") in ([], ["Origin"])  # one Vary, not two


def key_error(token: str | None) -> AuthenticationError:
    """The 401 the key check raises for `token` (what an image request would have met)."""
    with pytest.raises(AuthenticationError) as info:
        KeyRing((TEST_KEY,)).check(token)
    return info.value


ORIGINS = pytest.mark.parametrize("cors,origin", [
    ("*", None), ("*", ALLOWED), (CORS_LIST, None), (CORS_LIST, ALLOWED),
    (CORS_LIST, "https://evil.example")])


def origin_headers(origin: str | None) -> dict:
    return {"Origin": origin} if origin else {}


@ORIGINS
@pytest.mark.parametrize("token", [None, "sk-wrong"], ids=["no key", "wrong key"])
def test_401_is_the_same_on_every_edge(monkeypatch, cors, origin, token):
    with running(CORS_ORIGINS=cors) as app:
        # Flask and /mcp refuse the key themselves; an image needs none, so its edge is handed
        # the very error the key check raised.
        inject(monkeypatch, app, key_error(token), edges=("fast path",))
        headers = origin_headers(origin)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        got = answers(app, headers)
    assert_alike(got)
    response = got["mcp"]
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.get_json()["error"]["code"] == "invalid_api_key"
    assert_cors(response, cors, origin)


def assert_cors(response, cors: str, origin: str | None) -> None:
    if cors == "*":
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert "Vary" not in response.headers
    else:
        assert response.headers["Vary"] == "Origin"  # caches must key on the Origin
        allowed = response.headers.get("Access-Control-Allow-Origin")
        assert allowed == (origin if origin == ALLOWED else None)


@ORIGINS
@pytest.mark.parametrize("exc", [
    StorageError(ADDRESSES, retry_after=5),
    StorageFull("No room left in /srv/flux/images on nas.local:2049."),
], ids=["unreachable", "full"])
def test_storage_errors_name_no_address_on_any_edge(monkeypatch, cors, origin, exc):
    with running(CORS_ORIGINS=cors) as app:
        inject(monkeypatch, app, exc)
        got = answers(app, {**origin_headers(origin), "Authorization": f"Bearer {TEST_KEY}"})
    assert_alike(got)
    response = got["fast path"]
    assert response.status_code == exc.status
    message = response.get_json()["error"]["message"]
    for address in ("cache.internal", "10.0.0.5", "fd00", "6379", "/var/lib", "/srv", "nas.local"):
        assert address not in message, message
    assert message == without_addresses(exc.message) and "<address>" in message
    assert response.headers.get("Retry-After") == (str(exc.retry_after) if exc.retry_after
                                                   else None)
    assert_cors(response, cors, origin)


@pytest.mark.parametrize("exc", [
    StorageError("No space left on device: 'caf\udce9.tmp'"),  # a file name that is not UTF-8
    InvalidRequest("The model `flux\ud83d` does not exist.", param="model\udc00"),
    AuthenticationError("Incorrect API key provided: sk-\ud800."),
], ids=["storage", "invalid", "auth"])
def test_lone_surrogates_are_repaired_on_every_edge(monkeypatch, exc):
    with running(CORS_ORIGINS=CORS_LIST) as app:
        inject(monkeypatch, app, exc)
        got = answers(app, {"Origin": ALLOWED})
    assert_alike(got)
    error = got["mcp"].get_json()["error"]
    assert got["mcp"].status_code == exc.status
    assert "?" in error["message"] and "\\ud" not in got["mcp"].get_data(as_text=True)
    assert error["param"] == (exc.param.replace("\udc00", "?") if exc.param else None)


def test_a_real_storage_outage_reads_the_same_on_flask_and_the_fast_path():
    # No keys: every route is open. Redis on a closed port fails with its address in the text.
    with running(STORAGE_URL="redis://127.0.0.1:9/0", API_KEY="",
                 CORS_ORIGINS=CORS_LIST) as app:
        client = app.test_client()
        headers = {"Origin": ALLOWED}
        chat = EDGES["flask"](client, headers)
        image = EDGES["fast path"](client, headers)
        ready = client.get("/readyz", headers=headers)
    assert_alike({"flask": chat, "fast path": image})
    assert chat.status_code == 503 and "127.0.0.1" not in chat.get_data(as_text=True)
    # /readyz says the same kind of error, in general words (no address, no errno text).
    shown = ready.get_json()["error"]
    assert (shown["type"], shown["code"]) == (image.get_json()["error"]["type"],
                                              image.get_json()["error"]["code"])
    assert "127.0.0.1" not in ready.get_data(as_text=True)
    assert "Error 111" not in ready.get_data(as_text=True)


def test_a_proved_key_sees_where_storage_failed(monkeypatch):
    # Behind a key (the API's routes with API_KEY set) the operator's own clients get the cause.
    with running() as app:
        monkeypatch.setattr(app.extensions["flux_worker"].generations.health, "check",
                            raising(StorageError(ADDRESSES)))
        response = app.test_client().post("/v1/chat/completions", json=CHAT,
                                          headers={"Authorization": f"Bearer {TEST_KEY}"})
    assert response.status_code == 503
    assert response.get_json()["error"]["message"] == ADDRESSES


def test_head_of_a_failing_image_has_headers_and_no_body(monkeypatch):
    with running(CORS_ORIGINS=CORS_LIST) as app:
        inject(monkeypatch, app, StorageError(ADDRESSES))
        get = app.test_client().get(IMAGE)
        head = app.test_client().head(IMAGE)
    assert head.status_code == 503 and head.get_data() == b""
    assert head.headers["Content-Length"] == get.headers["Content-Length"]
    assert head.headers["Vary"] == "Origin"


def test_successes_carry_the_same_cors_headers_on_every_edge():
    with running(CORS_ORIGINS=CORS_LIST) as app:
        client = app.test_client()
        auth = {"Authorization": f"Bearer {TEST_KEY}", "Origin": ALLOWED}
        made = client.post("/v1/images/generations", headers=auth,
                           json={"prompt": "a cat", "response_format": "url"}).get_json()
        path = "/" + made["data"][0]["url"].split("://", 1)[1].split("/", 1)[1]
        got = {"flask": client.get("/v1/models", headers=auth),
               "fast path": client.get(path, headers=auth),
               "mcp": EDGES["mcp"](client, auth)}
    cors = [{k: v for k, v in compared(r).items() if k.startswith("Access-") or k == "Vary"}
            for r in got.values()]
    assert all(r.status_code == 200 for r in got.values())
    assert cors[0] == cors[1] == cors[2] and cors[0]["Access-Control-Allow-Origin"] == ALLOWED
    assert cors[0]["Vary"] == "Origin"


def test_preflights_are_the_same_on_flask_and_mcp():
    with running(CORS_ORIGINS=CORS_LIST) as app:
        client = app.test_client()
        headers = {"Origin": ALLOWED, "Access-Control-Request-Method": "POST",
                   "Access-Control-Request-Headers": "authorization, content-type"}
        flask = client.options("/v1/chat/completions", headers=headers)
        mcp = client.options("/mcp", headers=headers, buffered=True)
    assert flask.status_code == mcp.status_code == 204
    assert compared(flask) == compared(mcp)


def test_405_names_allowed_methods_through_the_error():
    with running() as app:
        client = app.test_client()
        flask = client.delete("/v1/chat/completions", headers={"Authorization":
                                                               f"Bearer {TEST_KEY}"})
        mcp = client.get("/mcp", headers={"Authorization": f"Bearer {TEST_KEY}"}, buffered=True)
    assert flask.status_code == mcp.status_code == 405
    assert "POST" in flask.headers["Allow"].split(", ")
    assert mcp.headers["Allow"] == "POST, OPTIONS"
    assert flask.get_json()["error"]["code"] == mcp.get_json()["error"]["code"]


# -- the helper itself -----------------------------------------------------------------------

def test_error_answer_is_status_headers_and_json_bytes():
    answer = edge.error_answer(AuthenticationError("no \udc80 key"), behind_key=False)
    assert answer.status == 401 and answer.status_line == "401 Unauthorized"
    assert answer.body == (b'{"error":{"message":"no ? key","type":"invalid_request_error",'
                           b'"param":null,"code":"invalid_api_key"}}')
    assert dict(answer.headers) == {"Content-Type": "application/json",
                                    "Content-Length": str(len(answer.body)),
                                    "WWW-Authenticate": "Bearer"}
    allow = edge.error_answer(MethodNotAllowed("no", allow=("POST", "OPTIONS")), behind_key=True)
    assert ("Allow", "POST, OPTIONS") in allow.headers


def test_public_hides_addresses_only_from_callers_without_a_key():
    exc = StorageFull(ADDRESSES, retry_after=3)
    hidden = public_error(exc, behind_key=False)
    assert isinstance(hidden, StorageFull) and hidden.status == 507 and hidden.retry_after == 3
    assert "10.0.0.5" not in hidden.message
    assert public_error(exc, behind_key=True) is exc
    other = InvalidRequest("see http://example.com/x")
    assert public_error(other, behind_key=False) is other  # only storage errors name the store


def test_cors_headers_vary_only_with_a_list():
    assert ("Vary", "Origin") not in edge.cors_headers(("*",), ALLOWED)
    listed = dict(edge.cors_headers((ALLOWED,), ALLOWED))
    assert listed["Vary"] == "Origin" and listed["Access-Control-Allow-Origin"] == ALLOWED
    assert "Access-Control-Allow-Origin" not in dict(edge.cors_headers((ALLOWED,), "https://x"))
    assert dict(edge.cors_headers(("*",), None, "x-custom"))["Access-Control-Allow-Headers"] \
        == "x-custom"


def test_with_headers_merges_vary_and_lets_extra_win():
    merged = edge.with_headers([("Vary", "Accept"), ("Content-Type", "text/plain")],
                               [("Vary", "Origin"), ("Content-Type", "application/json")])
    assert merged == [("Vary", "Accept, Origin"), ("Content-Type", "application/json")]
    assert edge.with_headers([("Vary", "origin")], [("Vary", "Origin")]) == [("Vary", "origin")]
