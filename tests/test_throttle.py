"""Rate limits in every storage kind, the in-flight cap, and both through the API."""

from __future__ import annotations

import functools
import threading

import pytest

from flux_worker.backends.demo import DemoBackend
from flux_worker.cost.throttle import InflightGate, RateLimiter
from flux_worker.errors import Overloaded, RateLimited
from flux_worker.storage import CountersLocation
from tests import support
from tests.support import TEST_KEY


@pytest.fixture(params=["memory", "disk", "redis"])
def counters(request, tmp_path):
    if request.param == "memory":
        return CountersLocation.parse("memory://")
    if request.param == "disk":
        return CountersLocation.parse(f"disk://{tmp_path}")
    return CountersLocation.parse(request.getfixturevalue("redis_url"))


def test_limit_then_429_with_retry_after(counters):
    limiter = RateLimiter("2/minute;100/day", counters)
    limiter.hit("key-a")
    limiter.hit("key-a")
    with pytest.raises(RateLimited) as info:
        limiter.hit("key-a")
    assert 0 < info.value.retry_after <= 60 and info.value.status == 429
    assert "key-a" not in info.value.message
    limiter.hit("key-b")  # other keys have their own count
    limiter.storage.reset()


@pytest.mark.parametrize("kind", ["disk", "redis"])
def test_disk_and_redis_counts_are_shared_between_instances(kind, tmp_path, request):
    # memory:// counts are per process by design, so it is not in this test.
    url = f"disk://{tmp_path}" if kind == "disk" else request.getfixturevalue("redis_url")
    counters = CountersLocation.parse(url)
    first, second = RateLimiter("3/minute", counters), RateLimiter("3/minute", counters)
    first.hit("shared")
    second.hit("shared")
    first.hit("shared")
    with pytest.raises(RateLimited):
        second.hit("shared")
    first.storage.reset()


def test_inflight_gate():
    gate = InflightGate(1)
    gate.acquire()
    with pytest.raises(Overloaded) as info:
        gate.acquire()
    assert info.value.status == 503 and info.value.retry_after
    gate.release()
    gate.acquire()
    assert gate.in_use == 1
    unlimited = InflightGate(0)
    for _ in range(100):
        unlimited.acquire()


ask = functools.partial(support.chat, content="a cat")


def test_rate_limit_through_the_api(apps):
    client = apps.client(RATE_LIMIT="2/minute")
    assert ask(client).status_code == 200
    assert ask(client, stream=True).status_code == 200
    resp = ask(client)
    assert resp.status_code == 429
    assert int(resp.headers["Retry-After"]) > 0
    assert resp.get_json()["error"]["code"] == "rate_limit_exceeded"
    # Models listing is not a generation and is not limited.
    models = client.get("/v1/models", headers={"Authorization": f"Bearer {TEST_KEY}"})
    assert models.status_code == 200


class BlockingBackend(DemoBackend):
    """The demo backend, held until released: injects a slow upstream."""

    def __init__(self):
        self.entered, self.release = threading.Event(), threading.Event()

    def generate(self, request):
        self.entered.set()
        self.release.wait(10)
        return super().generate(request)


@pytest.mark.parametrize("stream", [False, True])
def test_inflight_cap_answers_503_and_frees_the_slot(apps, stream):
    services = apps.services(MAX_INFLIGHT="1")
    backend = BlockingBackend()
    services.backend = services.pipeline.backend = backend
    app = apps.app(services=services)
    first = {}

    def run_first():
        resp = ask(app.test_client(), stream=stream)
        first["body"] = resp.get_data(as_text=True)  # a stream runs (and holds its slot) here
        first["resp"] = resp

    worker = threading.Thread(target=run_first)
    worker.start()
    assert backend.entered.wait(10)
    busy = ask(app.test_client())
    assert busy.status_code == 503 and busy.headers["Retry-After"]
    assert busy.get_json()["error"]["code"] == "rate_limit_exceeded"
    backend.release.set()
    worker.join(10)
    assert first["resp"].status_code == 200 and "image/" in first["body"]
    assert ask(app.test_client()).status_code == 200
