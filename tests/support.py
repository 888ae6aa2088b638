"""What many test files need: apps that close what they open, the chat request, SSE and image-link
parsing, metric values, a fake clock, waiting for a condition, and servers that skip when missing.

Apps and services
    make_config(**env)        a Config for tests: demo backend, memory storage, one API key
    app_with(**env)           a context manager: (app, services), both closed at its end
    Apps                      builds apps for one test and closes them all (the `apps` fixture)
    close_app(app)            close an app's MCP transport and its services
    track_services()          count Services never closed (the conftest fails such a test)

Requests and answers
    bearer(key)               the Authorization header for `key`; AUTH is TEST_KEY's
    chat(target, content)     POST /v1/chat/completions to a test client or a running service
    IMAGE_LINK, image_url()   the Markdown image in an answer, and its URL (asserted present)
    sse_events(), sse_chunks()  the events of a text/event-stream body
    metric_value(text, name)  a Prometheus sample (summed) from a /metrics scrape

Time
    FakeClock                 a clock that moves only when told to (seconds or datetimes)
    wait_until(condition)     poll until true, instead of sleeping for a guessed time

Servers (the processes themselves live in harness/, shared with bench/)
    need_redis(), RedisServer  redis-server, or a skip (a failure under FLUX_REQUIRE_REDIS=1)
    free_port()               a free TCP port on 127.0.0.1
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import re
import time
from datetime import datetime, timedelta
from typing import Any, Callable, Iterator, TypeVar
from urllib.parse import urlsplit

import openai
import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from flux_worker import create_app
from flux_worker.config import Config
from flux_worker.services import Services, build_services
from harness import redis_server as _redis
from harness.ports import free_port
from harness.service import API_KEY as SERVICE_KEY

__all__ = [
    "AUTH", "Apps", "CHAT_PATH", "FakeClock", "IMAGE_LINK", "RedisServer", "TEST_KEY", "app_with",
    "bearer", "chat", "chat_body", "close_app", "free_port", "image_url", "make_config",
    "metric_value", "need_redis", "open_services", "sse_chunks", "sse_data", "sse_events",
    "track_services", "wait_until",
]

T = TypeVar("T")
TEST_KEY = "sk-test-key-123456"


def bearer(key: str) -> dict[str, str]:
    """The Authorization header that presents `key`."""
    return {"Authorization": f"Bearer {key}"}


AUTH = bearer(TEST_KEY)
# The browser tests' key (the playground's key field) and how long a page step may take.
BROWSER_KEY = "sk-browser-test-key-42"
BROWSER_TIMEOUT_MS = 10_000

# --- configuration and apps ------------------------------------------------------------------


def sdk(service: Any, key: str = SERVICE_KEY, timeout: float = 60) -> openai.OpenAI:
    """The official client pointed at a running service (`harness.service`), no retries."""
    return openai.OpenAI(base_url=service.api, api_key=key, max_retries=0, timeout=timeout)


def address(service: Any) -> tuple[str, int]:
    """The host and port a running service listens on, for raw-socket clients."""
    parts = urlsplit(service.url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def png(width: int = 256, height: int = 256) -> bytes:
    """A plain PNG picture, as a client would upload for an edit."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), (20, 120, 200)).save(out, "PNG")
    return out.getvalue()


def size_of(data: bytes) -> tuple[int, int]:
    """The pixel size of encoded image bytes (decoded, so broken bytes fail here)."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return img.size


def make_config(**overrides: object) -> Config:
    """A configuration for tests: demo backend, memory storage, one API key."""
    env = {"API_KEY": TEST_KEY, "STORAGE_URL": "memory://", "IMAGE_EXPIRATION": "600"}
    env.update({k: str(v) for k, v in overrides.items()})
    return Config.from_env(env)


def close_app(app: Flask) -> None:
    """Close what `create_app` opened: the MCP transport (if a request started it) and services."""
    from flux_worker.web.mcp import McpMount

    # The WSGI chain is proxies -> MCP mount -> image fast path -> Flask; find the mount in it.
    layer: Any = app.wsgi_app
    while layer is not None and not isinstance(layer, McpMount):
        layer = getattr(layer, "app", None)
    if layer is not None:
        layer.close()
    app.extensions["flux_worker"].close()


class Apps:
    """Apps (and their services) built for one test, all closed by `close()`.

    The `apps` fixture hands one out and closes it after the test; `app_with` is the same for a
    single app in a `with` block.
    """

    def __init__(self) -> None:
        self._services: list[Services] = []
        self._apps: list[Flask] = []

    def services(self, config: Config | None = None, **overrides: object) -> Services:
        """Services from `config`, or from `make_config(**overrides)`; closed with the others."""
        built = build_services(config if config is not None else make_config(**overrides))
        self._services.append(built)
        return built

    def app(self, config: Config | None = None, *, services: Services | None = None,
            testing: bool = False, **overrides: object) -> Flask:
        """An app on `services` (which it then owns), or on `config` / `make_config(**overrides)`.

        `testing` sets Flask's TESTING (exceptions then reach the test instead of a 500 page).
        """
        if services is None:
            # create_app builds the services itself, after it has set up logging (and the
            # redaction of the configuration's secrets), as in production.
            app = create_app(config if config is not None else make_config(**overrides))
            self._services.append(app.extensions["flux_worker"])
        else:
            if not any(s is services for s in self._services):
                self._services.append(services)
            app = create_app(services=services)
        if testing:
            app.config["TESTING"] = True
        self._apps.append(app)
        return app

    def client(self, config: Config | None = None, **overrides: object) -> FlaskClient:
        """A test client of a new app, as `app()` builds it."""
        return self.app(config, **overrides).test_client()

    def close(self) -> None:
        """Close every app's MCP transport and every services object, each once."""
        apps, self._apps = self._apps, []
        services, self._services = self._services, []
        closed: list[Services] = []
        try:
            for app in apps:
                close_app(app)
                closed.append(app.extensions["flux_worker"])
        finally:
            for built in services:
                if not any(built is done for done in closed):
                    built.close()


@contextlib.contextmanager
def app_with(config: Config | None = None, **overrides: object) -> Iterator[tuple[Flask, Services]]:
    """An app built from `config` or `make_config(**overrides)` and its services, closed after."""
    apps = Apps()
    try:
        services = apps.services(config, **overrides)
        yield apps.app(services=services, testing=True), services
    finally:
        apps.close()


# Services built and not closed yet, while track_services() is on: the conftest clears it before
# each test and fails a test that leaves one behind (each holds connections, files or threads).
open_services: dict[int, Services] = {}


def track_services() -> None:
    """Record every Services built from now on in `open_services` until it is closed."""
    if getattr(Services, "_tracked_by_tests", False):
        return
    built, closed = Services.__init__, Services.close

    @functools.wraps(built)
    def init(self: Services, *args: Any, **kwargs: Any) -> None:
        built(self, *args, **kwargs)
        open_services[id(self)] = self

    @functools.wraps(closed)
    def close(self: Services) -> None:
        open_services.pop(id(self), None)
        closed(self)

    Services.__init__ = init  # type: ignore[method-assign]
    Services.close = close  # type: ignore[method-assign]
    Services._tracked_by_tests = True  # type: ignore[attr-defined]


# --- requests and answers --------------------------------------------------------------------

CHAT_PATH = "/v1/chat/completions"


def chat_body(content: str = "a cute cat", *, messages: list | None = None,
              **fields: Any) -> dict:
    """A chat request: one user message with `content` (or `messages`) and any other fields."""
    if messages is None:
        messages = [{"role": "user", "content": content}]
    return {"messages": messages, **fields}


def chat(target: Any, content: str = "a cute cat", *, key: str | None = None,
         headers: dict | None = None, messages: list | None = None, timeout: float = 30,
         **fields: Any) -> Any:
    """POST a chat completion request and return the response.

    `target` is a Flask test client (the answer is Flask's response) or a running service from
    harness.service (anything with `.api`; the answer is a `requests` response, after at most
    `timeout` seconds). The request presents `key`: by default the key the target was made with
    (TEST_KEY for make_config, harness.service.API_KEY for a service); `headers` replace that.
    `fields` (model, stream, n, ...) join the body; a field left out is not sent.
    """
    body = chat_body(content, messages=messages, **fields)
    service = hasattr(target, "api")
    if headers is None:
        headers = bearer(key if key is not None else SERVICE_KEY if service else TEST_KEY)
    if service:
        return requests.post(target.api + "/chat/completions", headers=headers, json=body,
                             timeout=timeout)
    return target.post(CHAT_PATH, headers=headers, json=body)


# A Markdown image, as chat answers end: ![alt](url).
IMAGE_LINK = re.compile(r"!\[[^\]]*\]\((?P<url>[^)\s]+)\)")


def image_url(text: str) -> str:
    """The URL of the first Markdown image in `text`; fails the test when there is none."""
    found = IMAGE_LINK.search(text)
    assert found, f"no image link in: {text!r}"
    return found["url"]


def _body_text(body: Any) -> str:
    """The text of a Flask or requests response, or `body` itself."""
    if isinstance(body, str):
        return body
    if isinstance(body, bytes):
        return body.decode()
    if isinstance(body, requests.Response):
        return body.text
    return body.get_data(as_text=True)


def sse_data(body: Any) -> list[str]:
    """The `data:` payloads of an event stream, in order; every event must be one."""
    payloads = []
    for block in _body_text(body).split("\n\n"):
        if not block.strip():
            continue
        assert block.startswith("data: "), block
        payloads.append(block[len("data: "):])
    return payloads


def sse_events(body: Any) -> list:
    """The events of an event stream as JSON, with the closing "[DONE]" kept as that string."""
    return [data if data == "[DONE]" else json.loads(data) for data in sse_data(body)]


def sse_chunks(body: Any) -> list[dict]:
    """The JSON chunks of an event stream, which must end with "[DONE]" (left out here)."""
    payloads = sse_data(body)
    assert payloads and payloads[-1] == "[DONE]", payloads[-1:]
    return [json.loads(data) for data in payloads[:-1]]


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels`, in a /metrics text."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


# --- time ------------------------------------------------------------------------------------


class FakeClock:
    """A clock that moves only when told to; `now` is seconds (a float) or a datetime.

    It starts at `now`, or at the real time: diskcache and Redis expire by the wall clock, so a
    store's own expiry must agree with the fake one at the start.
    """

    def __init__(self, now: Any = None):
        self.now: Any = time.time() if now is None else now

    def __call__(self) -> Any:
        return self.now

    def advance(self, seconds: float = 0.0, **delta: float) -> None:
        """Move forward by `seconds` plus `delta` (timedelta's keywords: minutes=2, hours=1)."""
        if isinstance(self.now, datetime):
            self.now += timedelta(seconds=seconds, **delta)
        else:
            self.now += seconds + timedelta(**delta).total_seconds()


def wait_until(condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.05, *,
               message: str = "", fail: bool = True) -> T:
    """Call `condition` every `interval` seconds until it returns something true, and return that.

    A test waits for what it needs rather than sleeping for a time that is too long on a fast
    machine and too short on a loaded one. After `timeout` seconds it fails with `message`, or,
    with fail=False, returns the last (false) answer so that the test's own assertions speak.
    Mind what "true" is: a `requests` response with a 4xx or 5xx status is false.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        left = deadline - time.monotonic()
        if value or left <= 0:
            break
        time.sleep(min(interval, left))
    if not value and fail:
        what = message or getattr(condition, "__name__", repr(condition))
        raise AssertionError(f"still not true after {timeout:g} s: {what}")
    return value


# --- servers ---------------------------------------------------------------------------------


def need_redis() -> str:
    """The path of redis-server; without it, skip the test (fail it under FLUX_REQUIRE_REDIS=1)."""
    try:
        return _redis.redis_server_binary()
    except _redis.RedisUnavailable as exc:
        if os.environ.get("FLUX_REQUIRE_REDIS") == "1":
            pytest.fail(f"FLUX_REQUIRE_REDIS=1 but {exc}", pytrace=False)
        pytest.skip(str(exc))


class RedisServer(_redis.RedisServer):
    """harness's RedisServer, which skips the test without redis-server (see need_redis)."""

    def __init__(self, **kwargs: Any):
        need_redis()
        super().__init__(**kwargs)
