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
- trickling-upstream: an upstream that sends its answer a byte at a time (when the fake can).
- slow-bodies: 2 × `--clients` keyless uploads trickled a byte a second (chunked, Expect:
  100-continue, or a Content-Length over the limit), to /mcp and chat, on 256 threads × 2;
- one-client-connections: 2,100 slow header connections from 127.0.0.2 (one address).

Loopback only, every loop bounded (about three minutes in all). Needs redis-server for one
scenario (skipped without it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

import diskcache
import requests

from tests.e2e.service import (
    API_KEY,
    CF_ACCOUNT,
    CF_TOKEN,
    LLM_KEY,
    Service,
    cloudflare_env,
    start_service,
)
from tests.fakes import cloudflare

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


def storage_outage(work: Path, clients: int) -> Report:
    from tests.redis_server import RedisServer
    report = Report("storage outage (redis stopped 8 s, 4 clients)")
    try:
        redis = RedisServer()
    except BaseException as exc:      # pytest.skip without the binary
        report.notes = f"skipped: {exc}"
        report.for_nobody = "-"
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


SCENARIOS: dict[str, Callable[[Path, int], Report]] = {
    "regex-freeze": regex_freeze, "slowloris": slowloris, "full-load": full_load,
    "dropped-streams": dropped_streams, "storage-outage": storage_outage,
    "trickling-upstream": trickling_upstream,
    "slow-bodies": slow_bodies, "one-client-connections": one_client_connections,
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
