"""Nothing a client or an upstream does freezes, exhausts or bills the service (issue 10).

The real service under gunicorn, the local fake Cloudflare and a real redis-server, driven by
the scenarios of bench/abuse.py (the same code prints the figures in docs/hardening.md).
"""

from __future__ import annotations

import diskcache
import pytest
import requests

from bench import abuse
from tests.redis_server import RedisServer

from .service import LLM_KEY, cloudflare_env, start_service

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def service(fake_cf, tmp_path_factory):
    """One process of 16 threads (MAX_INFLIGHT auto: 14), short upstream deadline."""
    tmp = tmp_path_factory.mktemp("abuse")
    svc = start_service(tmp, cloudflare_env(fake_cf, UPSTREAM_TIMEOUT="5", LOG_LEVEL="INFO"),
                        workers=1)
    yield svc
    svc.stop()


def _healthy_after(service) -> None:
    assert abuse.healthz_ok(service)
    assert abuse.generation(service).startswith("200"), service.log()[-3000:]


def test_slow_clients_hold_no_thread(service, cf):
    """300 connections trickling heads and bodies: /healthz and a generation within a second."""
    outcome = abuse.slowloris(service, cf, count=300, hold=2.5)
    assert outcome.healthz, outcome
    assert outcome.generation.startswith("200"), outcome
    _healthy_after(service)


def test_health_answers_under_full_load_and_every_client_gets_an_answer(service, cf):
    """300 open streams against a 60 s upstream: probes answer, each client gets 200 or 503."""
    outcome = abuse.full_load(service, cf, count=300, latency=60.0)
    assert outcome.healthz, outcome            # /healthz and /readyz, and 0 clients got nothing
    assert "0 got nothing" in outcome.detail
    assert outcome.generation.startswith(("200", "503")), outcome
    # The streams' generations end at UPSTREAM_TIMEOUT (5 s) once the clients are gone.


def test_regex_freeze_request_is_answered_at_once(service, cf):
    outcome = abuse.regex_freeze(service, cf, count=2)
    assert outcome.healthz and outcome.seconds < 10, outcome


def test_trickling_upstream_is_cut_at_the_deadline(fake_cf, cf, tmp_path):
    env = cloudflare_env(fake_cf, UPSTREAM_TIMEOUT="3", UPSTREAM_RETRIES="0",
                         CF_IS_TRANSLATE="true", EXTERNAL_API_BASE=fake_cf.url + "/v1",
                         EXTERNAL_MODEL="gpt-4o-mini", EXTERNAL_API_KEY=LLM_KEY,
                         TRANSLATE_TIMEOUT="2")
    svc = start_service(tmp_path, env, workers=1)
    try:
        cf.add_faults("trickle")
        first = abuse.generation(svc, timeout=30)
        assert first.startswith("504"), first
        assert float(first.split(" in ")[1].split()[0]) < 3 + 2, first
        cf.add_llm_faults("trickle")
        resp = requests.post(svc.api + "/chat/completions", headers=abuse.AUTH, timeout=30,
                             json={"model": "flux", "messages": [
                                 {"role": "user", "content": "un chat roux"}]})
        assert resp.status_code == 200, resp.text
        assert resp.elapsed.total_seconds() < 2 + 2
        # The translation fell back to the prompt as typed.
        runs = [r for r in cf.requests() if r["kind"] == "run"]
        assert runs[-1]["json"]["prompt"] == "un chat roux"
        cf.add_faults("huge")
        huge = requests.post(svc.api + "/chat/completions", headers=abuse.AUTH, timeout=30,
                             json={"model": "flux", "messages": [
                                 {"role": "user", "content": "a cat"}]})
        assert huge.status_code == 502 and "32 MB" in huge.json()["error"]["message"]
    finally:
        svc.stop()


def test_dropped_streams_leave_nothing_running_billed_or_stored(fake_cf, cf, tmp_path):
    """200 streams dropped at once, MAX_INFLIGHT=4, 2 s upstream: at most 4 billed, 0 stored."""
    svc = start_service(tmp_path, cloudflare_env(fake_cf, MAX_INFLIGHT="4"), workers=1)

    def stored() -> int:
        with diskcache.Cache(str(tmp_path / "images")) as cache:
            return len(cache)
    try:
        outcome = abuse.dropped_streams(svc, cf, count=200, latency=2.0, stored=stored)
        assert outcome.for_nobody is not None and outcome.for_nobody <= 4, outcome
        assert "0 images kept for nobody" in outcome.detail, outcome
        assert outcome.healthz, outcome
        # Every slot came back: a fresh generation is admitted again.
        assert outcome.generation.startswith("200"), outcome
    finally:
        svc.stop()


def test_storage_outage_buys_no_generation(fake_cf, cf, tmp_path):
    """Redis stopped, then hung (SIGSTOP): every generation is a quick 503, and the counting
    fake sees no upstream call."""
    with RedisServer() as redis:
        svc = start_service(tmp_path, cloudflare_env(fake_cf, STORAGE_URL=redis.url,
                                                     RATE_LIMIT="1000/minute"), workers=1)
        try:
            outcome = abuse.storage_outage(svc, cf, redis, count=20)
            assert outcome.for_nobody == 0, outcome
            assert "{'503': 20}" in outcome.detail, outcome
            assert outcome.healthz, outcome
            assert outcome.generation.startswith("200"), outcome   # back once Redis is
            hung = abuse.storage_hang(svc, cf, redis, count=3)
            assert hung.for_nobody == 0 and "{'503': 3}" in hung.detail, hung
            assert float(hung.detail.rsplit("slowest ", 1)[1].split()[0]) < 5, hung
            assert hung.generation.startswith("200"), hung
        finally:
            svc.stop()


def test_strange_bodies_are_refused_before_any_upstream_call(service, cf):
    """Through gunicorn: a chunked body over MAX_BODY_BYTES is 413, lone surrogates and deep
    nesting are 400, and the counting fake sees no generation for any of them."""
    url = service.api + "/chat/completions"

    def chunks():
        for _ in range(2048):
            yield b"a" * 1024                        # 2 MB, over the 1 MB default
    too_big = requests.post(url, headers=abuse.AUTH, data=chunks(), timeout=30)
    assert too_big.status_code == 413, too_big.text
    for raw in (b'{"model": "flux", "stream": true, "messages": '
                b'[{"role": "user", "content": "a cat \\ud83d"}]}',
                b'{"model": "flux", "messages": ' + b"[" * 5000 + b"]" * 5000 + b"}"):
        refused = requests.post(url, data=raw, timeout=30, headers={
            **abuse.AUTH, "Content-Type": "application/json"})
        assert refused.status_code == 400, refused.text
        assert refused.headers["Content-Type"].startswith("application/json")
    assert abuse.upstream_calls(cf) == 0
    _healthy_after(service)
