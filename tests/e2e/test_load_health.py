"""Full load against the real gunicorn: health probes never wait behind generations.

300 streams are opened at once against an upstream that takes 15 s per image. The default
in-flight cap (GUNICORN_THREADS minus an eighth) admits what the threads can hold and answers
the rest 503 with Retry-After at once, so every client gets an answer, and `/healthz` and
`/readyz` keep answering within a second on the threads the cap leaves free. (With no cap,
as before, the streams took every thread and the probes timed out.)
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pytest
import requests

from harness.fakes import cloudflare
from harness.service import API_KEY, CF_ACCOUNT, CF_TOKEN, LLM_KEY, cloudflare_env, start_service
from tests.support import wait_until

pytestmark = pytest.mark.e2e
AUTH = {"Authorization": f"Bearer {API_KEY}"}
CLIENTS = 300
UPSTREAM_SECONDS = 15
THREADS = 64               # per process; the default cap is then 56 per process
WORKERS = 2


@dataclass
class Outcome:
    """What one streaming client got."""

    status: int | None = None
    retry_after: str | None = None
    finished: bool = False           # a 200 stream that ended with [DONE]
    error: str = ""
    first_answer: float = field(default=0.0)


@pytest.fixture(scope="module")
def slow_cf():
    """A fake Cloudflare that takes UPSTREAM_SECONDS per image."""
    server = cloudflare.start(account_id=CF_ACCOUNT, api_token=CF_TOKEN, llm_key=LLM_KEY,
                              latency=UPSTREAM_SECONDS)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def service(slow_cf, tmp_path_factory):
    svc = start_service(tmp_path_factory.mktemp("load-health"),
                        cloudflare_env(slow_cf, UPSTREAM_TIMEOUT=str(UPSTREAM_SECONDS * 3),
                                       GUNICORN_THREADS=str(THREADS)), workers=WORKERS)
    yield svc
    svc.stop()


def stream_one(service, outcome: Outcome, start: float) -> None:
    try:
        with requests.post(service.api + "/chat/completions", headers=AUTH, stream=True,
                           timeout=(10, UPSTREAM_SECONDS * 3), json={
                               "model": "flux-1-schnell", "stream": True,
                               "messages": [{"role": "user", "content": "a cute cat"}]}) as resp:
            outcome.first_answer = time.monotonic() - start
            outcome.status = resp.status_code
            outcome.retry_after = resp.headers.get("Retry-After")
            body = b"".join(resp.iter_content(None))
            outcome.finished = resp.status_code == 200 and body.rstrip().endswith(b"[DONE]")
    except requests.RequestException as exc:
        outcome.error = repr(exc)


def probe(url: str) -> float:
    start = time.monotonic()
    resp = requests.get(url, timeout=10)
    took = time.monotonic() - start
    assert resp.status_code == 200, (url, resp.status_code, resp.text)
    return took


def test_probes_answer_and_every_client_gets_an_answer_under_full_load(service, slow_cf):
    outcomes = [Outcome() for _ in range(CLIENTS)]
    start = time.monotonic()
    clients = [threading.Thread(target=stream_one, args=(service, o, start), daemon=True)
               for o in outcomes]
    for client in clients:
        client.start()
    # Every stream is open or was refused (the probes then run beside them all); half the
    # upstream's time at most, so that the probes still meet the streams running.
    wait_until(lambda: all(o.status is not None or o.error for o in outcomes),
               timeout=UPSTREAM_SECONDS / 2, interval=0.1, fail=False)
    probes = []
    for _ in range(5):
        probes.append(("healthz", probe(service.url + "/healthz")))
        probes.append(("readyz", probe(service.url + "/readyz")))
        # The point: probes over several seconds of full load, not one burst.
        time.sleep(1)
    for client in clients:
        client.join(UPSTREAM_SECONDS * 4)
    assert all(not c.is_alive() for c in clients), "a client is still waiting"

    slow = [(name, round(took, 2)) for name, took in probes if took >= 1]
    assert not slow, f"probes waited behind generations: {slow}"
    errors = [o.error for o in outcomes if o.error]
    assert not errors, f"{len(errors)} clients got nothing: {errors[:3]}"
    admitted = [o for o in outcomes if o.status == 200]
    refused = [o for o in outcomes if o.status == 503]
    assert len(admitted) + len(refused) == CLIENTS, {o.status for o in outcomes}
    # The cap: at most (threads minus an eighth) per process, all of it used under this load.
    assert 0 < len(admitted) <= WORKERS * (THREADS - THREADS // 8)
    assert all(o.finished for o in admitted), "an admitted stream did not end with [DONE]"
    assert all(o.retry_after and int(o.retry_after) > 0 for o in refused)
    assert all(o.first_answer < 5 for o in refused), "a refusal waited in a queue"
    # Nothing was started upstream for a refused client.
    assert len([r for r in slow_cf.requests() if r.get("kind") == "run"]) == len(admitted)
