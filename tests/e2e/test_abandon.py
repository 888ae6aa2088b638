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
from tests.support import RedisServer, metric_value, wait_until

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


def generations_ended(service, fake) -> bool:
    """Whether every upstream call the fake received has been answered, and the service runs no
    generation any more (its in-flight gauge drops only once a generation has really ended)."""
    if any(call["status"] is None for call in image_calls(fake)):
        return False
    scrape = requests.get(service.url + "/metrics", timeout=10)
    return metric_value(scrape.text, "flux_worker_generations_in_flight") == 0


def cancelled_lines(service) -> list[str]:
    """The access-log lines of answers nobody received (499: the client had left)."""
    return [line for line in service.log().splitlines()
            if "flux_worker.access" in line and " 499 " in line]


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
                # A client's pause between attempts: the drops arrive over a second or so,
                # while admitted generations still run, rather than in one burst.
                time.sleep(0.05)

        threads = [threading.Thread(target=client, args=(DROPPERS // 20,)) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(statuses) == DROPPERS and set(statuses) <= {200, 503}, set(statuses)
        admitted = statuses.count(200)
        assert admitted >= 1

        # Every abandoned generation has ended (a stray write after that is caught below: the
        # last request takes a whole upstream call, and then exactly one image is stored).
        wait_until(lambda: generations_ended(service, slow_cf), timeout=UPSTREAM_SECONDS + 10,
                   interval=0.2, message="the abandoned generations to end")
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
        # Their generations have come back: each of the six requests ends with its 499 line.
        wait_until(lambda: len(cancelled_lines(service)) >= 6
                   and generations_ended(service, slow_cf), timeout=UPSTREAM_SECONDS + 10,
                   interval=0.2, fail=False)
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
            ok_since = time.monotonic()    # the last time storage was seen to work
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
            # Time has to pass here: once the "ok" a process may still trust has aged out,
            # every request must probe storage and buy nothing.
            time.sleep(max(0.0, ok_since + STORE_OK_CACHE + 1 - time.monotonic()))
            for _ in range(10):
                assert chat(service, timeout=10).status_code == 503
            assert len(image_calls(cf)) == bought, "an image was bought while storage was down"
            assert requests.get(service.url + "/healthz", timeout=5).status_code == 200
            assert requests.get(service.url + "/readyz", timeout=5).status_code == 503

            redis.start()
            wait_until(lambda: requests.get(service.url + "/readyz", timeout=5).status_code == 200,
                       timeout=15, interval=0.2, message="storage never came back")
            # A process that saw the failure trusts it for a second (StoreHealth's failed_for):
            # time has to pass for both processes to look again by themselves.
            time.sleep(STORE_FAILED_CACHE + 0.5)
            for _ in range(4):    # both processes, whichever answers
                resp = chat(service)
                assert resp.status_code == 200, resp.text
            assert len(image_calls(cf)) == bought + 4
        finally:
            service.stop()
