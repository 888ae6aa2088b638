"""Admission: slots and rate limits counted in images, released exactly once, failing closed."""

from __future__ import annotations

import functools
import threading

import pytest

from flux_worker.backends.demo import DemoBackend
from flux_worker.cost.admission import Admission, Ticket
from flux_worker.cost.throttle import InflightGate, RateLimiter
from flux_worker.errors import Overloaded, RateLimited, StorageError
from flux_worker.storage import CountersLocation
from flux_worker.storage.health import StoreHealth
from tests import support
from tests.support import AUTH, FakeClock, wait_until

# This file's chat request: "stream" always sent, false unless a test asks for a stream.
chat = functools.partial(support.chat, content="a cat 16:9", stream=False)


def test_ticket_releases_exactly_once():
    calls = []
    ticket = Ticket(lambda: calls.append(1))
    with ticket:
        pass
    ticket.release()
    ticket.release()
    assert calls == [1] and ticket.released


def test_admit_counts_images_in_slots_and_in_the_limit():
    limiter = RateLimiter("5/minute", CountersLocation.parse("memory://"))
    admission = Admission(limiter, InflightGate(4))
    ticket = admission.admit("key", 4)
    assert admission.gate.in_use == 4
    with pytest.raises(Overloaded):
        admission.admit("key", 1)
    ticket.release()
    assert admission.gate.in_use == 0
    admission.admit("key", 1).release()  # 4 + 1 = 5 images this minute: the limit
    with pytest.raises(RateLimited):
        admission.check("key")
    with pytest.raises(RateLimited):
        admission.admit("key", 1)
    # A refusal by the limiter gives the slots it took back.
    assert admission.gate.in_use == 0


def test_a_batch_larger_than_the_cap_says_so():
    with pytest.raises(Overloaded, match="at most 2 images at once"):
        InflightGate(2).acquire(3)


class _BrokenStorage:
    """A limits storage whose every call fails, as Redis does while it is down."""

    def __getattr__(self, name):
        raise ConnectionError("connection refused to 10.1.2.3:6379")


def test_the_limiter_fails_closed_without_naming_the_address():
    limiter = RateLimiter("5/minute", CountersLocation.parse("memory://"))
    limiter.strategy.storage = _BrokenStorage()
    for call in (lambda: limiter.hit("k"), lambda: limiter.test("k")):
        with pytest.raises(StorageError) as info:
            call()
        assert info.value.status == 503 and info.value.retry_after
        assert "10.1.2.3" not in info.value.message


class GatedBackend(DemoBackend):
    """The demo backend, held until released, counting its calls."""

    def __init__(self):
        self.entered, self.release, self.calls = threading.Event(), threading.Event(), 0

    def generate(self, request):
        self.calls += 1
        self.entered.set()
        assert self.release.wait(10)
        return super().generate(request)


@pytest.fixture
def gated_app(apps):
    """Builds (app, services, backend) with a GatedBackend, all closed after the test."""

    def build(**config):
        services = apps.services(**config)
        backend = GatedBackend()
        services.backend = services.pipeline.backend = backend
        return apps.app(services=services), services, backend

    return build


def test_an_abandoned_stream_holds_its_slot_until_the_generation_ends_and_stores_nothing(
        gated_app):
    app, services, backend = gated_app(MAX_INFLIGHT="1")
    client = app.test_client()
    resp = chat(client, stream=True)
    events = resp.response  # the stream, not yet read
    assert backend.entered.wait(10)
    resp.close()  # the client goes away while the upstream call runs
    # The generation is still running upstream: its slot is still taken.
    assert services.admission.gate.in_use == 1
    assert chat(client).status_code == 503
    stored = []
    services.store.put = lambda *args, **kwargs: stored.append(args)  # must not be reached
    backend.release.set()
    wait_until(lambda: services.admission.gate.in_use == 0, timeout=4, fail=False)
    assert services.admission.gate.in_use == 0 and stored == [] and backend.calls == 1
    del events


def test_a_finished_stream_and_a_failed_one_free_their_slot(gated_app):
    app, services, backend = gated_app(MAX_INFLIGHT="1")
    backend.release.set()
    client = app.test_client()
    body = chat(client, stream=True).get_data(as_text=True)
    assert "[DONE]" in body and "/image/" in body
    assert services.admission.gate.in_use == 0
    # A failure after the stream began is a last chunk, and the slot is free again.
    services.pipeline.backend = services.backend = _Failing()
    body = chat(client, stream=True).get_data(as_text=True)
    assert "[DONE]" in body and services.admission.gate.in_use == 0


class _Failing:
    name = "failing"

    def generate(self, request):
        from flux_worker.errors import UpstreamError
        raise UpstreamError("the model failed")


def test_images_n_counts_n_slots(gated_app):
    app, services, backend = gated_app(MAX_INFLIGHT="3")
    backend.release.set()
    client = app.test_client()
    resp = client.post("/v1/images/generations", headers=AUTH,
                       json={"prompt": "a fox", "n": 4})
    assert resp.status_code == 503 and "at most 3 images" in resp.get_json()["error"]["message"]
    assert backend.calls == 0
    ok = client.post("/v1/images/generations", headers=AUTH, json={"prompt": "a fox", "n": 3})
    assert ok.status_code == 200 and len(ok.get_json()["data"]) == 3
    assert services.admission.gate.in_use == 0


def test_rate_limit_counts_images_and_comes_before_title_detection(gated_app):
    app, services, backend = gated_app(RATE_LIMIT="3/minute")
    backend.release.set()
    client = app.test_client()
    title = "Please generate a four to five word title summarizing our conversation"
    # Title requests cost nothing while the caller is within its limit...
    assert chat(client, content=title).status_code == 200
    ok = client.post("/v1/images/generations", headers=AUTH, json={"prompt": "a fox", "n": 3})
    assert ok.status_code == 200 and backend.calls == 3
    # ...but a caller over its limit is refused before its text is looked at.
    refused = chat(client, content=title)
    assert refused.status_code == 429 and refused.headers["Retry-After"]
    assert chat(client).status_code == 429 and backend.calls == 3


def test_storage_down_means_no_upstream_call_and_recovery_after_readyz(gated_app):
    app, services, backend = gated_app()
    backend.release.set()
    client = app.test_client()
    outage = StorageError("Image storage (Redis) is unreachable")

    def down():
        raise outage

    services.store.ping = down
    for stream in (False, True):
        resp = chat(client, stream=stream)
        assert resp.status_code == 503 and resp.get_json()["error"]["code"] == "storage_error"
    images = client.post("/v1/images/generations", headers=AUTH, json={"prompt": "a fox"})
    assert images.status_code == 503 and backend.calls == 0
    del services.store.ping
    assert client.get("/readyz").status_code == 200
    assert chat(client).status_code == 200 and backend.calls == 1


class _SlowPingStore:
    """A store whose ping blocks until released, counting the pings."""

    def __init__(self) -> None:
        self.pings = 0
        self.release = threading.Event()
        self.error: StorageError | None = None

    def ping(self) -> None:
        self.pings += 1
        self.release.wait(5)
        if self.error is not None:
            raise self.error


def _check_in_threads(health: StoreHealth, count: int) -> tuple[list, list[threading.Thread]]:
    outcomes: list = []

    def check() -> None:
        try:
            health.check()
            outcomes.append("ok")
        except StorageError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=check) for _ in range(count)]
    for thread in threads:
        thread.start()
    return outcomes, threads


def test_one_request_pings_while_the_others_go_by_the_last_answer():
    store, clock = _SlowPingStore(), FakeClock(100.0)
    health = StoreHealth(store, ok_for=5.0, failed_for=1.0, clock=clock)  # type: ignore[arg-type]
    # No answer yet: everyone waits for the first ping, which only one of them makes.
    outcomes, threads = _check_in_threads(health, 20)
    store.release.set()
    for thread in threads:
        thread.join(5)
    assert outcomes == ["ok"] * 20 and store.pings == 1
    # The answer has aged: one request pings, the others trust the last answer meanwhile.
    clock.now += 6
    store.release.clear()
    outcomes, threads = _check_in_threads(health, 20)
    for thread in threads[1:]:
        thread.join(0.05)
    assert store.pings == 2 and outcomes.count("ok") >= 19
    store.error = StorageError("Image storage (disk) could not check its directory")
    store.release.set()
    for thread in threads:
        thread.join(5)
    assert outcomes.count("ok") == 19 and isinstance(outcomes[-1], StorageError)
    # That failure holds for a second without another ping, whoever asks.
    outcomes, threads = _check_in_threads(health, 5)
    for thread in threads:
        thread.join(5)
    assert store.pings == 2 and all(isinstance(o, StorageError) for o in outcomes)
