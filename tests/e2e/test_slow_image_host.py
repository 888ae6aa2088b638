"""A trickling image host cannot freeze the service: every download ends at its 10 s deadline.

gunicorn with 1 worker x 16 threads, FETCH_REMOTE_IMAGES=true, and 20 edits at once whose image
links point at a host on 127.0.0.1 that sends a byte every 0.5 s (headers, body, or nothing at
all). Before, each such download held its thread as long as the host kept trickling (70 s and
more in the probe). Now each ends with a 400 that says the download took too long, /healthz and
/readyz answer at once meanwhile, and the host only ever sees the requests that were admitted
(the in-flight cap answers the rest 503 before anything is downloaded).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest
import requests

from harness.fakes.image_host import PATHS, HostileImageHost
from harness.service import API_KEY, cloudflare_env, start_service

pytestmark = pytest.mark.e2e

LOOPBACK_APP = "harness.loopback_fetch_app:app"
EDITS = 20
FETCH_DEADLINE = 10          # flux_worker.net.fetch.REMOTE_TIMEOUT
# A 400 comes this long after its attempt began at the latest: the deadline plus room for a
# loaded machine; without the deadline it is the host's 90 s, or the client's 40 s timeout.
ANSWER_WITHIN = FETCH_DEADLINE + 5
# /healthz and /readyz never wait behind the downloads (they took a minute in the probe).
HEALTH_WITHIN = 1.0


@dataclass
class Attempt:
    link: str
    status: int | None
    message: str
    seconds: float


def _edit(service, link: str, attempts: list[Attempt], until: float) -> None:
    """One client's edit, sent again after Retry-After while the in-flight cap refuses it."""
    while time.monotonic() < until:
        started = time.monotonic()
        try:
            resp = requests.post(service.api + "/images/edits", timeout=40, headers={
                "Authorization": f"Bearer {API_KEY}"}, json={
                "prompt": "make it blue", "images": [{"image_url": link}]})
            status, message = resp.status_code, resp.json()["error"]["message"]
        except requests.RequestException as exc:
            status, message = None, type(exc).__name__
        attempts.append(Attempt(link, status, message, time.monotonic() - started))
        if status != 503:
            return
        time.sleep(float(resp.headers.get("Retry-After", "1")))


def test_trickling_image_hosts_end_at_the_deadline_and_health_stays_quick(cf, fake_cf, tmp_path):
    with HostileImageHost(pause=0.5, give_up=90) as host:
        service = start_service(tmp_path, cloudflare_env(fake_cf, FETCH_REMOTE_IMAGES="true",
                                                         GUNICORN_THREADS="16"),
                                workers=1, app=LOOPBACK_APP)
        try:
            links = [host.url(path) for path in PATHS] + [host.never_accepted]
            attempts: list[Attempt] = []
            until = time.monotonic() + 80
            clients = [threading.Thread(target=_edit, args=(service, links[i % len(links)],
                                                             attempts, until))
                       for i in range(EDITS)]
            for client in clients:
                client.start()
            health: list[float | None] = []
            while any(client.is_alive() for client in clients):
                for path in ("/healthz", "/readyz"):
                    started = time.monotonic()
                    try:
                        ok = requests.get(service.url + path, timeout=5).status_code == 200
                        health.append(time.monotonic() - started if ok else None)
                    except requests.RequestException:
                        health.append(None)
                time.sleep(0.25)
            for client in clients:
                client.join()
        finally:
            service.stop()

    finals = [a for a in attempts if a.status != 503]
    assert len(finals) == EDITS, [(a.status, a.message) for a in attempts]
    for attempt in finals:
        assert attempt.status == 400, (attempt.link, attempt.message)
        assert f"took longer than {FETCH_DEADLINE} seconds to download" in attempt.message
        assert attempt.seconds < ANSWER_WITHIN, (attempt.link, attempt.seconds)
    assert None not in health
    assert max(health) < HEALTH_WITHIN, sorted(health)[-5:]
    # Admission came first: refused attempts never reached the host (the never-accepting
    # port counts nothing, so only the links to the accepting one are compared).
    admitted = sum(1 for a in finals if a.link != host.never_accepted)
    assert sum(host.requests.values()) == admitted
    assert not [r for r in cf.requests() if r["kind"] == "run"]    # nothing went upstream
