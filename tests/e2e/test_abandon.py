"""Work for nobody, end to end: dropped streams and a storage outage, counted at the fake.

* 200 clients open a stream and drop it at once, with MAX_INFLIGHT=4 against an upstream of 3 s:
  a slot is held until its generation really ends, so the upstream never runs more than 4 at
  once and at most one call per admitted stream is made (no retry, no translation); nothing is
  stored for a client that is gone.
* A real redis-server as STORAGE_URL, stopped mid-run: generations answer 503 storage_error at
  once and the fake Cloudflare receives no call while it is down; once it is back, they work.
"""

from __future__ import annotations

import functools
import socket
import threading
import time
from urllib.parse import urlsplit

import diskcache
import pytest
import requests

from harness.fakes import cloudflare
from harness.service import API_KEY, CF_ACCOUNT, CF_TOKEN, LLM_KEY, cloudflare_env, start_service
from tests import support
from tests.support import RedisServer

pytestmark = pytest.mark.e2e
AUTH = {"Authorization": f"Bearer {API_KEY}"}
UPSTREAM_SECONDS = 3.0
CAP = 4
STORE_FAILED_CACHE = 1.0      # and how long a failure is
STORE_OK_CACHE = 5.0          # pipeline.StoreHealth's ok_for: how long an "ok" probe is trusted
DROPPERS = 200
CHAT = (b'{"model": "flux-1-schnell", "stream": true, "messages": [{"role": "user", '
        b'"content": "a cute cat 16:9"}]}')
chat = functools.partial(support.chat, model="flux-1-schnell")


@pytest.fixture
def slow_cf():
    """A fake Cloudflare taking UPSTREAM_SECONDS per image (it records every call)."""
    server = cloudflare.start(account_id=CF_ACCOUNT, api_token=CF_TOKEN, llm_key=LLM_KEY,
                              latency=UPSTREAM_SECONDS)
    yield server
    server.stop()


def image_calls(fake) -> list[dict]:
    return [r for r in fake.requests() if r.get("kind") == "run"]


def most_at_once(calls: list[dict], seconds: float) -> int:
    """The largest number of upstream calls running at one moment (each takes `seconds`)."""
    events = sorted([(c["time"], 1) for c in calls] + [(c["time"] + seconds, -1) for c in calls],
                    key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def drop_stream(host: str, port: int) -> int:
    """Open a stream, read its status line, then vanish; return the status."""
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer "
            f"{API_KEY}\r\nContent-Type: application/json\r\nContent-Length: {len(CHAT)}\r\n\r\n")
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(head.encode() + CHAT)
        answer = b""
        while b"\r\n" not in answer:
            piece = sock.recv(1024)
            if not piece:
                return 0
            answer += piece
    return int(answer.split(b" ", 2)[1])


def stored(path) -> int:
    with diskcache.Cache(str(path)) as cache:
        return len(cache)


def test_dropped_streams_hold_their_slot_and_store_nothing(slow_cf, tmp_path):
    service = start_service(tmp_path, cloudflare_env(slow_cf, MAX_INFLIGHT=str(CAP),
                                                     UPSTREAM_RETRIES="2"), workers=1)
    try:
        parts = urlsplit(service.url)
        statuses: list[int] = []
        lock = threading.Lock()

        def client(times: int) -> None:
            for _ in range(times):
                status = drop_stream(parts.hostname or "127.0.0.1", parts.port or 80)
                with lock:
                    statuses.append(status)
                time.sleep(0.05)

        threads = [threading.Thread(target=client, args=(DROPPERS // 20,)) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(statuses) == DROPPERS and set(statuses) <= {200, 503}, set(statuses)
        admitted = statuses.count(200)
        assert admitted >= 1

        time.sleep(UPSTREAM_SECONDS + 2)      # every abandoned generation has ended by now
        calls = image_calls(slow_cf)
        # One upstream call per admitted stream at most: no retry, nothing started for a
        # refused one; and never more than the cap at once.
        assert len(calls) <= admitted, (len(calls), admitted)
        assert most_at_once(calls, UPSTREAM_SECONDS) <= CAP
        assert stored(tmp_path / "images") == 0, "images were stored for clients that left"

        # The slots came back: a client that stays gets its image.
        resp = chat(service, "a cat")
        assert resp.status_code == 200, resp.text
        assert stored(tmp_path / "images") == 1
    finally:
        service.stop()


def test_callers_that_time_out_get_nothing_stored(slow_cf, tmp_path):
    service = start_service(tmp_path, cloudflare_env(slow_cf), workers=1)
    try:
        def give_up(path: str, body: dict) -> None:
            with pytest.raises(requests.Timeout):
                requests.post(service.api + path, headers=AUTH, json=body, timeout=1)

        callers = [threading.Thread(target=give_up, args=("/chat/completions", {
            "model": "flux-1-schnell", "messages": [{"role": "user", "content": "a cat"}]}))
            for _ in range(4)]
        callers += [threading.Thread(target=give_up, args=("/images/generations", {
            "model": "flux-1-schnell", "prompt": "a cat", "n": 2})) for _ in range(2)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join(10)
        time.sleep(UPSTREAM_SECONDS + 1)      # their generations have come back by now
        assert len(image_calls(slow_cf)) == 8
        assert stored(tmp_path / "images") == 0, "images were stored for callers that left"
        access = [line for line in service.log().splitlines() if "flux_worker.access" in line]
        assert sum(" 499 " in line for line in access) == 6, access
    finally:
        service.stop()


def test_storage_outage_answers_503_at_once_and_buys_nothing_upstream(fake_cf, cf, tmp_path):
    with RedisServer() as redis:
        service = start_service(tmp_path, cloudflare_env(fake_cf, STORAGE_URL=redis.url),
                                workers=2)
        try:
            assert chat(service).status_code == 200
            before = len(image_calls(cf))
            assert before == 1

            redis.stop()
            refused = []
            for _ in range(20):
                start = time.monotonic()
                resp = chat(service, timeout=10)
                refused.append((resp.status_code, resp.json()["error"]["code"],
                                time.monotonic() - start, resp.headers.get("Retry-After")))
            assert all(status == 503 and code == "storage_error" for status, code, _, _ in
                       refused), refused
            assert all(took < 1.5 for _, _, took, _ in refused), refused
            # Storage is probed at most every few seconds per process (a cached "ok"), so each
            # process may pay for one image, the one whose write reveals the outage; no more.
            assert len(image_calls(cf)) - before <= 2, "images were bought while storage was down"
            bought = len(image_calls(cf))
            time.sleep(STORE_OK_CACHE + 1)
            for _ in range(10):
                assert chat(service, timeout=10).status_code == 503
            assert len(image_calls(cf)) == bought, "an image was bought while storage was down"
            assert requests.get(service.url + "/healthz", timeout=5).status_code == 200
            assert requests.get(service.url + "/readyz", timeout=5).status_code == 503

            redis.start()
            deadline = time.monotonic() + 15
            while requests.get(service.url + "/readyz", timeout=5).status_code != 200:
                assert time.monotonic() < deadline, "storage never came back"
                time.sleep(0.2)
            # A process that saw the failure trusts it for a second (StoreHealth's failed_for).
            time.sleep(STORE_FAILED_CACHE + 0.5)
            for _ in range(4):    # both processes, whichever answers
                resp = chat(service)
                assert resp.status_code == 200, resp.text
            assert len(image_calls(cf)) == bought + 4
        finally:
            service.stop()
