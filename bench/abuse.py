"""Abuse scenarios: can a request, a client or an upstream freeze, exhaust or bill the service?

    python -m bench.abuse [--only slowloris,full-load] [--clients 300]

Each scenario starts the real service (`gunicorn -c gunicorn.conf.py`, two workers) against the
fake Cloudflare on 127.0.0.1, runs one attack for a bounded time, and meanwhile checks whether
`/healthz` and a fresh generation still answer (within 5 s; the time is printed). It then prints
how many upstream calls were made for nobody (for a client that had left, was refused, or whose
image could not be kept). Scenarios:

- regex-freeze: chat requests of 60 KB ("generate" then spaces) that once froze a worker;
- slowloris: `--clients` connections trickling their headers or body a byte a second;
- full-load: `--clients` streams against a 10 s upstream, GUNICORN_THREADS=64;
- dropped-streams: 200 streams dropped at once, MAX_INFLIGHT=4, a 3 s upstream;
- storage-outage: redis-server as STORAGE_URL, stopped for 8 s under steady traffic;
- trickling-upstream: an upstream that sends its answer a byte at a time (when the fake can);
- counters-outage: COUNTERS_URL on a redis-server that is stopped, then hung (SIGSTOP), while
  DAILY_NEURONS applies: how many generations pass, how long a refusal takes, what /readyz says;
- account-overshoot: CF_ACCOUNTS with 300 neurons each and 50 requests at once: spend per
  account against its budget;
- hang-ups: 30 streams closed after 0.4 s and 30 Images requests with a 0.5 s timeout under a
  200-neuron key budget: `/v1/usage` against the neurons the fake billed;
- slow-image-host: 20 edits whose image links trickle a byte every 0.5 s (FETCH_REMOTE_IMAGES);
- slow-bodies: 2 × `--clients` keyless uploads trickled a byte a second (chunked, Expect:
  100-continue, or a Content-Length over the limit), to /mcp and chat, on 256 threads × 2;
- one-client-connections: 2,100 slow header connections from 127.0.0.2 (one address);
- big-uploads: 6 edits at once, each of four plain 8000x5000 RGBA PNGs (harness/big_uploads.py):
  the workers' summed RSS above idle at its peak, what each keeps afterwards, latency p50/p95;
- open-routes: anonymous reads of `/`, `/readyz`, `/metrics`, `/healthz` with two accounts, spend,
  budgets and Redis stopped, then the page of a presigned bucket (moto): what they give away.

Loopback only, every loop bounded (about three minutes in all). Needs redis-server for one
scenario (skipped without it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator
from urllib.parse import urlsplit

import diskcache
import requests

from harness.fakes import cloudflare
from harness.service import (
    API_KEY,
    CF_ACCOUNT,
    CF_TOKEN,
    LLM_KEY,
    Service,
    cloudflare_env,
    start_service,
)

if TYPE_CHECKING:
    from harness.redis_server import RedisServer

AUTH = {"Authorization": f"Bearer {API_KEY}"}
PROBE_TIMEOUT = 5.0


@dataclass
class Report:
    """What one scenario found."""

    name: str
    health_ms: list[float | None] = field(default_factory=list)     # None: no answer in time
    generation: list[tuple[int | None, float]] = field(default_factory=list)
    for_nobody: int | str = 0
    notes: str = ""

    def line(self) -> str:
        answered = [ms for ms in self.health_ms if ms is not None]
        health = (f"{len(answered)}/{len(self.health_ms)} answered, max "
                  f"{max(answered):.0f} ms" if answered else f"0/{len(self.health_ms)} answered")
        gens = ", ".join(f"{status or 'none'} in {ms:.0f} ms" for status, ms in self.generation)
        return (f"| {self.name} | {health} | {gens or '-'} | {self.for_nobody} | {self.notes} |")


def probe(service: Service, report: Report, *, generate: bool = True) -> None:
    """Ask /healthz and (optionally) for a fresh generation; record the answers and times."""
    start = time.monotonic()
    try:
        ok = requests.get(service.url + "/healthz", timeout=PROBE_TIMEOUT).status_code == 200
        report.health_ms.append((time.monotonic() - start) * 1000 if ok else None)
    except requests.RequestException:
        report.health_ms.append(None)
    if not generate:
        return
    start = time.monotonic()
    try:
        resp = requests.post(service.api + "/chat/completions", headers=AUTH,
                             timeout=PROBE_TIMEOUT, json={
                                 "model": "flux-1-schnell",
                                 "messages": [{"role": "user", "content": "a lighthouse"}]})
        report.generation.append((resp.status_code, (time.monotonic() - start) * 1000))
    except requests.RequestException:
        report.generation.append((None, (time.monotonic() - start) * 1000))


def image_calls(fake) -> int:
    return sum(1 for r in fake.requests() if r.get("kind") == "run")


def fake(latency: float = 0.0) -> cloudflare.FakeServer:
    return cloudflare.start(account_id=CF_ACCOUNT, api_token=CF_TOKEN, llm_key=LLM_KEY,
                            latency=latency)


def address(service: Service) -> tuple[str, int]:
    parts = urlsplit(service.url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def raw_chat(body: bytes) -> bytes:
    return (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
            f"{API_KEY}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"\r\n").encode() + body


# ---- scenarios ------------------------------------------------------------------------------

def regex_freeze(work: Path, clients: int) -> Report:
    report = Report("regex freeze (4 × 60 KB chat bodies: spaces, newlines)")
    with fake() as cf:
        service = start_service(work, cloudflare_env(cf))
        try:
            statuses: list[str] = []

            def attack(filler: str) -> None:
                body: dict[str, Any] = {"model": "flux-1-schnell", "messages": [
                    {"role": "user", "content": "generate" + filler * 60_000}]}
                start = time.monotonic()
                try:
                    resp = requests.post(service.api + "/chat/completions", headers=AUTH,
                                         json=body, timeout=30)
                    statuses.append(f"{resp.status_code} in {time.monotonic() - start:.1f} s")
                except requests.RequestException:
                    statuses.append(f"none in {time.monotonic() - start:.1f} s")

            # Spaces and newlines, two of each: the runs that made the title patterns quadratic.
            attackers = [threading.Thread(target=attack, args=(filler,))
                         for filler in (" ", "\n", " ", "\n")]
            for t in attackers:
                t.start()
            time.sleep(0.5)
            before = image_calls(cf)
            for _ in range(3):
                probe(service, report)
                time.sleep(0.5)
            for t in attackers:
                t.join(40)
            probes = sum(1 for s, _ in report.generation if s == 200)
            report.for_nobody = max(0, image_calls(cf) - before - probes)
            report.notes = "attack answers: " + ", ".join(sorted(statuses))
        finally:
            service.stop()
    return report


def slowloris(work: Path, clients: int) -> Report:
    report = Report(f"slowloris ({clients} trickling connections)")
    with fake() as cf:
        service = start_service(work, cloudflare_env(cf, REQUEST_READ_TIMEOUT="8"))
        request = raw_chat(b'{"model": "flux-1-schnell", "messages": '
                           b'[{"role": "user", "content": "a cat"}]}')
        header_end = request.index(b"\r\n\r\n") + 4
        socks, offsets, cut = [], [], 0
        try:
            for i in range(clients):
                sock = socket.create_connection(address(service), timeout=5)
                if i % 2:
                    sock.sendall(request[:header_end])        # headers at once, body trickled
                socks.append(sock)
                offsets.append(header_end if i % 2 else 0)
            for second in range(12):
                for i, sock in enumerate(socks):
                    end = min(offsets[i] + 1, len(request) - 1)
                    try:
                        sock.sendall(request[offsets[i]:end])
                    except OSError:
                        pass
                    offsets[i] = end
                if second in (2, 4, 6):
                    probe(service, report)
                time.sleep(1)
            for sock in socks:
                sock.settimeout(0.2)
                try:
                    cut += sock.recv(1) == b""
                except TimeoutError:
                    pass
                except OSError:
                    cut += 1
            report.notes = (f"{cut}/{clients} trickling connections closed by the server "
                            f"after REQUEST_READ_TIMEOUT=8 s")
            # Only the probes' generations reach the upstream; a trickled request never does.
            report.for_nobody = image_calls(cf) - len(report.generation)
        finally:
            for sock in socks:
                sock.close()
            service.stop()
    return report


def full_load(work: Path, clients: int) -> Report:
    report = Report(f"full load ({clients} streams, 10 s upstream, 64 threads × 2)")
    with fake(latency=10) as cf:
        service = start_service(work, cloudflare_env(cf, UPSTREAM_TIMEOUT="30",
                                                     GUNICORN_THREADS="64"))
        statuses: list[int | None] = []

        def stream() -> None:
            try:
                with requests.post(service.api + "/chat/completions", headers=AUTH, stream=True,
                                   timeout=(10, 40), json={
                                       "model": "flux-1-schnell", "stream": True,
                                       "messages": [{"role": "user", "content": "a cat"}]}) as r:
                    b"".join(r.iter_content(None))
                    statuses.append(r.status_code)
            except requests.RequestException:
                statuses.append(None)

        try:
            with ThreadPoolExecutor(clients) as pool:
                for _ in range(clients):
                    pool.submit(stream)
                time.sleep(3)
                readyz = []
                for _ in range(3):
                    probe(service, report)
                    ready = time.monotonic()
                    try:
                        requests.get(service.url + "/readyz", timeout=PROBE_TIMEOUT)
                        readyz.append(f"{1000 * (time.monotonic() - ready):.0f}")
                    except requests.RequestException:
                        readyz.append("none")
                    time.sleep(1)
                report.notes = f"/readyz ms: {', '.join(readyz)}; "
            report.notes += (f"{statuses.count(200)} streams served, {statuses.count(503)} "
                             f"refused 503, {statuses.count(None)} got nothing")
            report.for_nobody = 0
        finally:
            service.stop()
    return report


def dropped_streams(work: Path, clients: int) -> Report:
    report = Report("dropped streams (200, MAX_INFLIGHT=4, 3 s upstream, 1 worker)")
    with fake(latency=3) as cf:
        service = start_service(work, cloudflare_env(cf, MAX_INFLIGHT="4"), workers=1)
        host, port = address(service)
        statuses: list[int] = []

        def drop() -> None:
            with socket.create_connection((host, port), timeout=10) as sock:
                sock.sendall(raw_chat(b'{"model": "flux-1-schnell", "stream": true, '
                                      b'"messages": [{"role": "user", "content": "a cat"}]}'))
                line = sock.recv(64).split(b" ", 2)
                statuses.append(int(line[1]) if len(line) > 1 else 0)

        try:
            with ThreadPoolExecutor(20) as pool:
                for _ in range(200):
                    pool.submit(drop)
            time.sleep(5)                             # the abandoned generations end
            calls_for_dropped = image_calls(cf)
            probe(service, report)
            with diskcache.Cache(str(work / "images")) as cache:
                kept = len(cache) - sum(1 for s, _ in report.generation if s == 200)
            report.for_nobody = calls_for_dropped
            report.notes = (f"{statuses.count(200)} admitted then dropped, "
                            f"{statuses.count(503)} refused; images stored for them: {kept}")
        finally:
            service.stop()
    return report


def redis_or_skip(report: Report) -> "RedisServer | None":
    """A redis-server for a scenario, or None (the report says skipped) without the binary."""
    from harness.redis_server import RedisServer, RedisUnavailable
    try:
        return RedisServer()
    except RedisUnavailable as exc:
        report.notes = f"skipped: {exc}"
        report.for_nobody = "-"
        return None


def storage_outage(work: Path, clients: int) -> Report:
    report = Report("storage outage (redis stopped 8 s, 4 clients)")
    redis = redis_or_skip(report)
    if redis is None:
        return report
    with redis, fake() as cf:
        service = start_service(work, cloudflare_env(cf, STORAGE_URL=redis.url))
        stop = threading.Event()
        refused = [0]

        def client() -> None:
            while not stop.is_set():
                try:
                    resp = requests.post(service.api + "/chat/completions", headers=AUTH,
                                         timeout=10, json={"model": "flux-1-schnell", "messages": [
                                             {"role": "user", "content": "a cat"}]})
                    refused[0] += resp.status_code == 503
                except requests.RequestException:
                    pass

        try:
            threads = [threading.Thread(target=client) for _ in range(4)]
            for t in threads:
                t.start()
            time.sleep(2)
            redis.stop()
            before = image_calls(cf)
            time.sleep(1)
            probe(service, report)
            time.sleep(7)
            during = image_calls(cf) - before
            redis.start()
            time.sleep(3)
            probe(service, report)
            stop.set()
            for t in threads:
                t.join(15)
            report.for_nobody = during
            report.notes = f"{refused[0]} answered 503 while storage was down"
        finally:
            stop.set()
            service.stop()
    return report


def trickling_upstream(work: Path, clients: int) -> Report:
    report = Report("trickling upstream")
    if "trickle" not in cloudflare.IMAGE_FAULTS:
        report.notes = "skipped: the fake Cloudflare has no trickle fault yet"
        report.for_nobody = "-"
        return report
    with fake() as cf:
        service = start_service(work, cloudflare_env(cf, UPSTREAM_TIMEOUT="5"))
        try:
            cf.add_faults(*[{"kind": "trickle"}] * 4)
            with ThreadPoolExecutor(4) as pool:
                futures = [pool.submit(requests.post, service.api + "/chat/completions",
                                       headers=AUTH, timeout=60, json={
                                           "model": "flux-1-schnell", "messages": [
                                               {"role": "user", "content": "a cat"}]})
                           for _ in range(4)]
                time.sleep(1)
                probe(service, report)
                started = time.monotonic()
                answers = [f.result().status_code for f in futures]
            report.notes = (f"trickled calls answered {answers} within "
                            f"{time.monotonic() - started + 1:.0f} s (UPSTREAM_TIMEOUT=5)")
        finally:
            service.stop()
    return report


# What an anonymous caller must not learn from an open route (open-routes): the accounts, spend
# and budgets are ADMIN_API_KEY's, storage's address and errno texts the log's.
OPEN_ROUTES = (("/", {"Accept": "text/html"}), ("/", {"Accept": "application/json"}),
               ("/readyz", {}), ("/metrics", {}), ("/healthz", {}))
ACCOUNT_A, ACCOUNT_B = "f00dface0000aaaa1111bbbb", "beefcafe2222cccc3333dddd"
ADMIN_KEY = "sk-abuse-admin-key-0001"


def leaks(seen: str, details: dict[str, tuple[str, ...]]) -> list[str]:
    """The kinds of detail (account, spend, ...) any of whose texts `seen` contains."""
    return [kind for kind, texts in details.items() if any(t in seen for t in texts)]


def open_routes(work: Path, clients: int) -> Report:
    from harness.s3_server import MotoServer
    report = Report("open routes (2 accounts, spend, budgets, Redis stopped; presigned page)")
    redis = redis_or_skip(report)
    if redis is None:
        return report
    found: list[str] = []
    with redis, cloudflare.start(account_id=ACCOUNT_A, api_token=CF_TOKEN, llm_key=LLM_KEY,
                                 more_accounts={ACCOUNT_B: CF_TOKEN}) as cf:
        env = cloudflare_env(cf, STORAGE_URL=redis.url, ADMIN_API_KEY=ADMIN_KEY,
                             CF_ACCOUNTS=f"{ACCOUNT_A}:{CF_TOKEN},{ACCOUNT_B}:{CF_TOKEN}",
                             DAILY_NEURONS="98765", KEY_DAILY_NEURONS="4321")
        for single in ("CF_ACCOUNT_ID", "CF_API_TOKEN"):  # CF_ACCOUNTS replaces them
            env.pop(single)
        service = start_service(work / "redis", env)
        try:
            cf.exhaust(ACCOUNT_A)
            cf.state.neurons_header = "313.37"
            probe(service, report)
            # Read once with storage up (the counters hold the spend), once with Redis stopped.
            for phase in ("", ", Redis stopped"):
                if phase:
                    redis.stop()
                    probe(service, report, generate=False)
                for path, headers in OPEN_ROUTES:
                    resp = requests.get(service.url + path, headers=headers,
                                        timeout=PROBE_TIMEOUT)
                    seen = "\n".join(f"{k}: {v}" for k, v in resp.headers.items()) + resp.text
                    details = {"account ids": (ACCOUNT_A[:8], ACCOUNT_B[:8]),
                               "account states": ("allocation_used_up", "allocation used up"),
                               "storage address": (f"127.0.0.1:{redis.port}",),
                               "errno text": ("Error 111", "Connection refused")}
                    if path != "/metrics":  # its neurons per model stay; timings' digits vary
                        details.update({"spend": ("313.37", "313.4"),
                                        "budget": ("98765", "4321")})
                    where = f"{path}{' (JSON)' if 'json' in str(headers) else ''}{phase}"
                    found += [f"{where}: {kind}" for kind in leaks(seen, details)]
        finally:
            cf.state.neurons_header = None
            service.stop()
    with MotoServer() as s3, fake() as cf:
        bucket = s3.create_bucket()
        service = start_service(work / "s3", cloudflare_env(
            cf, STORAGE_URL=f"s3://{bucket}", IMAGE_LINKS="presigned", COUNTERS_URL="memory://",
            **s3.env()))
        try:
            page = requests.get(service.url + "/", timeout=PROBE_TIMEOUT)
            if f"127.0.0.1:{s3.port}" in page.headers.get("Content-Security-Policy", ""):
                found.append("/ (presigned): bucket host in the CSP")
        finally:
            service.stop()
    report.for_nobody = "-"
    report.notes = (f"{len(found)} leaks: " + "; ".join(found)) if found else "0 leaks"
    return report


SCHNELL_1024 = 57.6        # neurons of one flux-1-schnell image at 1024x1024, 4 steps


def billed(fake) -> list[dict]:
    """The image calls the fake answered with an image: each one billed upstream."""
    return [r for r in fake.requests() if r.get("kind") == "run" and r.get("status") == 200]


def timed_chat(service: Service, timeout: float = 30) -> tuple[int | None, float]:
    """One chat generation: its status (None: no answer) and milliseconds."""
    start = time.monotonic()
    try:
        status: int | None = requests.post(
            service.api + "/chat/completions", headers=AUTH, timeout=timeout, json={
                "model": "flux-1-schnell", "messages": [{"role": "user", "content": "a cat"}]},
        ).status_code
    except requests.RequestException:
        status = None
    return status, (time.monotonic() - start) * 1000


def timed_readyz(service: Service) -> str:
    start = time.monotonic()
    try:
        status = str(requests.get(service.url + "/readyz", timeout=10).status_code)
    except requests.RequestException:
        status = "none"
    return f"{status} in {(time.monotonic() - start) * 1000:.0f} ms"


def counters_outage(work: Path, clients: int) -> Report:
    report = Report("counters outage (COUNTERS_URL redis stopped, then hung; DAILY_NEURONS)")
    redis = redis_or_skip(report)
    if redis is None:
        return report
    with redis, fake() as cf:
        service = start_service(work, cloudflare_env(cf, COUNTERS_URL=redis.url,
                                                     DAILY_NEURONS="10000"))
        try:
            timed_chat(service)                              # a pooled connection
            before = len(billed(cf))
            redis.stop()
            stopped = [timed_chat(service) for _ in range(20)]
            probe(service, report)
            ready_stopped = timed_readyz(service)
            during = len(billed(cf)) - before
            redis.start()
            time.sleep(1.5)
            timed_chat(service)
            before = len(billed(cf))
            process = redis._process
            assert process is not None
            process.send_signal(signal.SIGSTOP)
            try:
                hung = [timed_chat(service) for _ in range(20)]
                probe(service, report, generate=False)
                ready_hung = timed_readyz(service)
            finally:
                process.send_signal(signal.SIGCONT)
            during += len(billed(cf)) - before
            time.sleep(1.5)
            probe(service, report)
            spent = requests.get(service.api + "/usage", headers=AUTH,
                                 timeout=10).json()["service"]["spent_neurons"]

            def passed(answers: list[tuple[int | None, float]]) -> str:
                ok = sum(1 for status, _ in answers if status == 200)
                refused = sum(1 for status, _ in answers if status == 503)
                # Those that found the outage waited the counters' timeout (0.5 s); the others
                # went by the remembered answer.
                waited = [ms for _, ms in answers if ms >= 400]
                quick = [ms for _, ms in answers if ms < 400]
                return (f"{ok}/{len(answers)} passed, {refused} refused 503: {len(waited)} "
                        f"waited {max(waited, default=0):.0f} ms at most, the other "
                        f"{len(quick)} {max(quick, default=0):.0f} ms at most")

            report.for_nobody = during
            report.notes = (f"stopped: {passed(stopped)}, /readyz {ready_stopped}; hung: "
                            f"{passed(hung)}, /readyz {ready_hung}; afterwards /v1/usage "
                            f"{spent:g} neurons for {len(billed(cf))} billed images")
        finally:
            service.stop()
    return report


def account_overshoot(work: Path, clients: int) -> Report:
    report = Report("account overshoot (CF_ACCOUNTS a@300,b@300, 50 requests at once, 1 s)")
    alpha, beta = ("alpha000aaaabbbbccccdddd", "cf-ALPHA-token"), ("beta1111aaaabbbbccccdddd",
                                                                   "cf-BETA-token")
    with cloudflare.start(account_id=alpha[0], api_token=alpha[1], more_accounts=dict([beta]),
                          latency=1.0) as cf:
        env = cloudflare_env(cf, CF_ACCOUNTS=f"{alpha[0]}:{alpha[1]}@300,{beta[0]}:{beta[1]}@300",
                             GUNICORN_THREADS="64", UPSTREAM_RETRIES="0")
        del env["CF_ACCOUNT_ID"], env["CF_API_TOKEN"]
        service = start_service(work, env)
        try:
            def images(_: int) -> int | None:
                try:
                    return requests.post(service.api + "/images/generations", headers=AUTH,
                                         timeout=60, json={"prompt": "a cat"}).status_code
                except requests.RequestException:
                    return None

            with ThreadPoolExecutor(50) as pool:
                answers = pool.map(images, range(50))
                time.sleep(0.5)
                probe(service, report, generate=False)
                statuses = list(answers)
            made = billed(cf)
            spend = ", ".join(
                f"{who[:5]}… {SCHNELL_1024 * sum(1 for r in made if r['account'] == who):g} of "
                "300" for who in (alpha[0], beta[0]))
            report.notes = (f"{statuses.count(200)} served, {statuses.count(429)} refused 429; "
                            f"neurons billed per account: {spend}")
        finally:
            service.stop()
    return report


def hang_ups(work: Path, clients: int) -> Report:
    report = Report("hang-ups (30 streams closed at 0.4 s, 30 Images with 0.5 s timeout, "
                    "key budget 200, 1 s upstream)")
    with fake(latency=1.0) as cf:
        service = start_service(work, cloudflare_env(cf, KEY_DAILY_NEURONS="200",
                                                     UPSTREAM_RETRIES="0"), workers=1)
        try:
            statuses: list[int] = []
            for _ in range(30):
                with requests.post(service.api + "/chat/completions", headers=AUTH,
                                   stream=True, timeout=30, json={
                                       "model": "flux-1-schnell", "stream": True, "messages": [
                                           {"role": "user", "content": "a cat"}]}) as resp:
                    statuses.append(resp.status_code)
                    time.sleep(0.4)                       # then the client hangs up
            probe(service, report, generate=False)
            for _ in range(30):
                try:
                    statuses.append(requests.post(service.api + "/images/generations",
                                                  headers=AUTH, json={"prompt": "a cat"},
                                                  timeout=0.5).status_code)
                except requests.Timeout:
                    statuses.append(0)
            time.sleep(2.5)                               # the abandoned generations end
            neurons = SCHNELL_1024 * len(billed(cf))
            usage = requests.get(service.api + "/usage", headers=AUTH, timeout=10).json()["key"]
            metrics = requests.get(service.url + "/metrics", timeout=10).text
            cancelled = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                            if line.startswith("flux_worker_cancelled_neurons_total"))
            report.for_nobody = len(billed(cf))
            report.notes = (f"fake billed {neurons:g} neurons, /v1/usage says "
                            f"{usage['spent_neurons']:g} of {usage['budget_neurons']:g}; "
                            f"{statuses.count(429)} refused 429; /metrics cancelled neurons "
                            f"{cancelled:g}")
        finally:
            service.stop()
    return report


def slow_image_host(work: Path, clients: int) -> Report:
    """20 edits naming images on a host that trickles a byte every 0.5 s, 1 worker x 16 threads.

    The service loads harness/loopback_fetch_app.py (its downloader may reach 127.0.0.1);
    the edits are sent once, as the probe did: the in-flight cap's 503s are not retried.
    """
    from harness.fakes.image_host import PATHS, HostileImageHost

    edits = min(clients, 20)
    report = Report(f"slow image host ({edits} edits, a byte per 0.5 s, 1 worker × 16 threads)")
    with fake() as cf, HostileImageHost(pause=0.5, give_up=90) as host:
        service = start_service(work, cloudflare_env(cf, FETCH_REMOTE_IMAGES="true",
                                                     GUNICORN_THREADS="16"),
                                workers=1, app="harness.loopback_fetch_app:app")
        links = [host.url(path) for path in PATHS] + [host.never_accepted]
        answers: list[tuple[int | None, float]] = []

        def edit(link: str) -> None:
            start = time.monotonic()
            try:
                resp = requests.post(service.api + "/images/edits", headers=AUTH, timeout=100,
                                     json={"prompt": "make it blue",
                                           "images": [{"image_url": link}]})
                answers.append((resp.status_code, time.monotonic() - start))
            except requests.RequestException:
                answers.append((None, time.monotonic() - start))

        try:
            with ThreadPoolExecutor(edits) as pool:
                for i in range(edits):
                    pool.submit(edit, links[i % len(links)])
                time.sleep(1)
                while len(answers) < edits:
                    probe(service, report, generate=len(report.generation) < 3)
                    time.sleep(1)
            times: dict[int | None, list[float]] = {}
            for status, seconds in answers:
                times.setdefault(status, []).append(seconds)
            report.notes = "edits: " + ", ".join(
                f"{len(t)} × {status or 'none'} in {min(t):.1f}-{max(t):.1f} s"
                for status, t in sorted(times.items(), key=lambda item: str(item[0])))
            report.notes += f"; requests the host saw: {sum(host.requests.values())}"
            # The edits never reach the upstream; only the probes' generations may.
            report.for_nobody = image_calls(cf) - sum(1 for s, _ in report.generation if s == 200)
        finally:
            service.stop()
    return report


def _upload_head(path: str, *lines: str) -> bytes:
    """The head of a POST without a key, as a careless or hostile client sends it."""
    return ("\r\n".join([f"POST {path} HTTP/1.1", "Host: 127.0.0.1",
                         "Content-Type: application/json", *lines]) + "\r\n\r\n").encode()


def _answer_or_open(sock: socket.socket) -> bytes | None:
    """What the server sent (b"" if it closed without a word), or None if it still listens."""
    sock.setblocking(False)
    try:
        return sock.recv(65536, socket.MSG_PEEK)
    except BlockingIOError:
        return None
    except OSError:
        return b""
    finally:
        sock.settimeout(5)


def slow_bodies(work: Path, clients: int) -> Report:
    """`2 × --clients` uploads without a key, a byte a second: chunked, after `100 Continue`, or
    with a Content-Length over the limit, to /mcp and to chat, on the default 256 threads × 2.
    An upload the server answered or closed is replaced at once, as an attacker would."""
    count = 2 * clients
    report = Report(f"slow bodies ({count} keyless uploads: chunked, 100-continue, oversized)")
    heads = {
        "chunked": [_upload_head("/mcp", "Transfer-Encoding: chunked"),
                    _upload_head("/v1/chat/completions", "Transfer-Encoding: chunked")],
        "100-continue": [_upload_head("/mcp", "Expect: 100-continue", "Content-Length: 500"),
                         _upload_head("/v1/chat/completions", "Expect: 100-continue",
                                      "Content-Length: 500")],
        "oversized": [_upload_head("/mcp", "Content-Length: 30000000"),
                      _upload_head("/v1/chat/completions", "Content-Length: 2000000")],
    }
    with fake() as cf:
        service = start_service(work, cloudflare_env(cf, GUNICORN_THREADS="256"))
        socks: list[tuple[str, socket.socket]] = []
        told: dict[str, int] = {kind: 0 for kind in heads}      # answered 4xx
        cut: dict[str, int] = {kind: 0 for kind in heads}       # closed without an answer

        def upload(i: int) -> tuple[str, socket.socket]:
            kind = list(heads)[i % 3]
            sock = socket.create_connection(address(service), timeout=5)
            sock.sendall(heads[kind][(i // 3) % 2])
            return kind, sock

        try:
            socks = [upload(i) for i in range(count)]
            for second in range(16):
                for i, (kind, sock) in enumerate(socks):
                    answer = _answer_or_open(sock)
                    if answer is not None:
                        told[kind] += b" 4" in answer.split(b"\r\n", 1)[0]
                        cut[kind] += not answer
                        sock.close()
                        try:
                            socks[i] = upload(i)
                        except OSError:
                            continue
                        sock = socks[i][1]
                    try:
                        sock.send(b"a")   # a chunk-size digit or a body byte: never the end
                    except OSError:
                        pass
                if second % 2:
                    probe(service, report)
                time.sleep(1)
            report.notes = "in 16 s, answered 4xx / closed unanswered: " + ", ".join(
                f"{kind} {told[kind]}/{cut[kind]}" for kind in heads)
            report.for_nobody = image_calls(cf) - len(report.generation)
        finally:
            for _, sock in socks:
                sock.close()
            service.stop()
    return report


def one_client_connections(work: Path, clients: int) -> Report:
    """2,100 slow header connections from one address (127.0.0.2), more than the 2 × 1,000
    connections gunicorn's two workers take; /healthz is asked from 127.0.0.1."""
    count = 2100
    report = Report(f"one client's connections ({count} slow heads from 127.0.0.2)")
    with fake() as cf:
        service = start_service(work, cloudflare_env(cf))
        socks: list[socket.socket] = []
        try:
            for _ in range(count):
                sock = socket.socket()
                sock.settimeout(5)
                sock.bind(("127.0.0.2", 0))
                sock.connect(address(service))
                try:
                    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                except OSError:
                    pass
                socks.append(sock)
            for second in range(16):
                for sock in socks:
                    try:
                        sock.send(b"X")
                    except OSError:
                        pass
                if second % 2:
                    probe(service, report, generate=False)
                time.sleep(1)
            answers = [_answer_or_open(sock) for sock in socks]
            held = answers.count(None)
            told = sum(1 for a in answers if a and a.startswith(b"HTTP/1.1 429 "))
            report.notes = f"{held} held, {told} refused 429 at once, {count - held - told} closed"
            report.for_nobody = image_calls(cf)
        finally:
            for sock in socks:
                sock.close()
            service.stop()
    return report


def big_uploads(work: Path, clients: int) -> Report:
    """Six edits of four 8000x5000 PNGs at once, two workers: their memory, not their speed."""
    from harness import big_uploads as uploads

    report = Report("big uploads (6 edits × 4 PNGs of 8000x5000 RGBA, 2 workers)")
    with fake() as cf:
        service = start_service(work, cloudflare_env(cf))
        try:
            figures = uploads.run(service)
            probe(service, report)
            report.notes = figures.line()
            report.for_nobody = image_calls(cf) - 8 - uploads.EDITS - sum(
                1 for status, _ in report.generation if status == 200)
        finally:
            service.stop()
    return report


SCENARIOS: dict[str, Callable[[Path, int], Report]] = {
    "regex-freeze": regex_freeze, "slowloris": slowloris, "full-load": full_load,
    "dropped-streams": dropped_streams, "storage-outage": storage_outage,
    "trickling-upstream": trickling_upstream, "open-routes": open_routes,
    "counters-outage": counters_outage, "account-overshoot": account_overshoot,
    "hang-ups": hang_ups, "slow-image-host": slow_image_host, "slow-bodies": slow_bodies,
    "one-client-connections": one_client_connections, "big-uploads": big_uploads,
}


def run(names: list[str], clients: int) -> Iterator[Report]:
    """Run the scenarios in order, each against a fresh service in its own folder."""
    root = Path(tempfile.mkdtemp(prefix="flux-abuse-"))
    try:
        for name in names:
            started = time.monotonic()
            report = SCENARIOS[name](root / name, clients)
            report.notes += f" ({time.monotonic() - started:.0f} s)"
            yield report
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(SCENARIOS),
                        help="comma-separated scenarios: " + ", ".join(SCENARIOS))
    parser.add_argument("--clients", type=int, default=300)
    parser.add_argument("--json", action="store_true", help="print JSON lines instead")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(names) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if not args.json:
        print("| scenario | /healthz during the attack | fresh generation (status, time) | "
              "upstream calls for nobody | notes |")
        print("|---|---|---|---|---|")
    for report in run(names, args.clients):
        if args.json:
            print(json.dumps(report.__dict__))
        else:
            print(report.line(), flush=True)


if __name__ == "__main__":
    main()
