"""Abuse scenarios: can a request, a client or an upstream freeze, exhaust or bill the service?

Each scenario runs against the real service under gunicorn and the local fake Cloudflare, both
on 127.0.0.1, bounded in count and time, and reports whether `/healthz` answered within a
second during the attack, whether a fresh generation was still answered, and how many upstream
calls (billed generations) were made for nobody:

    regex freeze        chat requests of "generate", 60 KB of spaces and a word
    slowloris           300 connections trickling headers or a body
    full load           300 open streams against a 60 s upstream
    dropped streams     200 streams dropped by their clients, MAX_INFLIGHT=4, 2 s upstream
    storage outage      generations while Redis is stopped (counting the upstream calls)
    storage hang        generations while Redis is frozen with SIGSTOP
    trickling upstream  an upstream answering one byte a second, and a trickling LLM

    python -m bench.abuse                 # all scenarios, a table in markdown
    python -m bench.abuse --only slowloris

tests/e2e/test_abuse_e2e.py runs the same functions, smaller, and asserts on their outcomes.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.e2e.service import API_KEY, LLM_KEY, Service, cloudflare_env, start_service  # noqa: E402
from tests.fakes import cloudflare  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

AUTH = {"Authorization": f"Bearer {API_KEY}"}
PROBE_SECONDS = 1.0


@dataclass
class Outcome:
    """What one scenario showed."""

    scenario: str
    healthz: bool                   # /healthz answered within a second during the attack
    generation: str                 # how a fresh generation was answered ("200 in 0.1 s", ...)
    for_nobody: int | None          # upstream calls made for clients that were gone or refused
    detail: str
    seconds: float

    def row(self) -> str:
        nobody = "-" if self.for_nobody is None else str(self.for_nobody)
        return (f"| {self.scenario} | {'yes' if self.healthz else 'NO'} | {self.generation} | "
                f"{nobody} | {self.detail} | {self.seconds:.1f} |")


# --- small clients ----------------------------------------------------------------------------

def _address(service: Service) -> tuple[str, int]:
    parts = urlsplit(service.url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def chat_request(content: str, *, stream: bool = False, host: str = "127.0.0.1") -> bytes:
    """The bytes of one chat completion request."""
    body = json.dumps({"model": "flux", "stream": stream,
                       "messages": [{"role": "user", "content": content}]}).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head + body


def read_status(sock: socket.socket, timeout: float) -> int | None:
    """The status code of the answer on sock, or None when none came within timeout."""
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n" not in data:
            piece = sock.recv(4096)
            if not piece:
                break
            data += piece
    except OSError:
        return None
    try:
        return int(data.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


def healthz_ok(service: Service, path: str = "/healthz") -> bool:
    """Whether `path` answers 200 within PROBE_SECONDS."""
    try:
        return requests.get(service.url + path, timeout=PROBE_SECONDS).status_code == 200
    except requests.RequestException:
        return False


def generation(service: Service, timeout: float = 10.0) -> str:
    """A fresh chat generation: "200 in 0.4 s", "503 in 0.0 s" or "no answer"."""
    started = time.monotonic()
    try:
        resp = requests.post(service.api + "/chat/completions", headers=AUTH, timeout=timeout,
                             json={"model": "flux", "messages": [
                                 {"role": "user", "content": "a lighthouse at dusk 16:9"}]})
    except requests.RequestException:
        return "no answer"
    return f"{resp.status_code} in {time.monotonic() - started:.1f} s"


def upstream_calls(fake) -> int:
    """Image generations the fake has been asked for so far."""
    return sum(1 for r in fake.requests() if r["kind"] in ("run", "images"))


# --- scenarios --------------------------------------------------------------------------------

def regex_freeze(service: Service, fake, count: int = 4) -> Outcome:
    """Chat requests of "generate", 60 KB of spaces and a word, which froze a worker for minutes."""
    started = time.monotonic()
    text = "generate" + " " * 60_000 + "x"
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(requests.post, service.api + "/chat/completions", headers=AUTH,
                               timeout=30, json={"model": "flux", "messages": [
                                   {"role": "user", "content": text}]}) for _ in range(count)]
        time.sleep(0.3)
        health = healthz_ok(service)
        fresh = generation(service)
        answered: list[int | None] = []
        for future in futures:
            try:
                answered.append(future.result().status_code)
            except requests.RequestException:
                answered.append(None)
    took = time.monotonic() - started
    return Outcome("regex freeze", health, fresh, None,
                   f"{count} requests answered {sorted(set(map(str, answered)))} in {took:.1f} s",
                   took)


def slowloris(service: Service, fake, count: int = 300, hold: float = 3.0) -> Outcome:
    """Connections that send their head or body a byte at a time and never finish."""
    started = time.monotonic()
    host, port = _address(service)
    socks = []
    whole = chat_request("a cat")
    head_end = whole.index(b"\r\n\r\n") + 4
    try:
        for i in range(count):
            sock = socket.create_connection((host, port), timeout=5)
            # Half trickle the head, half send the head and trickle the body.
            sock.sendall(whole[:20] if i % 2 == 0 else whole[:head_end + 5])
            socks.append((sock, 20 if i % 2 == 0 else head_end + 5))
        deadline = time.monotonic() + hold
        health = True
        fresh = ""
        while time.monotonic() < deadline:
            for index, (sock, sent) in enumerate(socks):
                try:
                    sock.send(whole[sent:sent + 1])
                    socks[index] = (sock, sent + 1)
                except OSError:
                    pass
            health = healthz_ok(service) and health
            fresh = fresh or generation(service, timeout=PROBE_SECONDS)
            time.sleep(0.5)
    finally:
        for sock, _ in socks:
            sock.close()
    took = time.monotonic() - started
    return Outcome("slowloris", health, fresh, None,
                   f"{count} connections trickling heads and bodies for {hold:.0f} s", took)


def full_load(service: Service, fake, count: int = 300, latency: float = 60.0) -> Outcome:
    """Open streams against a slow upstream: probes must answer, every client must get a status."""
    started = time.monotonic()
    host, port = _address(service)
    before = upstream_calls(fake)
    old_latency, fake.state.latency = fake.state.latency, latency
    socks: list[socket.socket] = []
    try:
        request = chat_request("a lighthouse at dusk", stream=True)
        for _ in range(count):
            sock = socket.create_connection((host, port), timeout=5)
            sock.sendall(request)
            socks.append(sock)
        time.sleep(0.5)
        health = healthz_ok(service) and healthz_ok(service, "/readyz")
        fresh = generation(service, timeout=5)
        statuses = [read_status(sock, 10.0) for sock in socks]
    finally:
        fake.state.latency = old_latency
        for sock in socks:
            sock.close()
    nothing = statuses.count(None)
    counts = {str(s): statuses.count(s) for s in sorted(set(statuses), key=str)}
    took = time.monotonic() - started
    return Outcome("full load", health and nothing == 0, fresh,
                   None, f"{count} streams: {counts}; {nothing} got nothing; "
                         f"{upstream_calls(fake) - before} upstream calls", took)


def dropped_streams(service: Service, fake, count: int = 200, latency: float = 2.0,
                    stored=None) -> Outcome:
    """Streams whose clients hang up at once: generations for nobody must stop and not be kept.

    `stored()` counts the images kept; none may be kept for the dropped clients.
    """
    started = time.monotonic()
    host, port = _address(service)
    before = upstream_calls(fake)
    kept_before = stored() if stored else 0
    old_latency, fake.state.latency = fake.state.latency, latency
    statuses = []
    try:
        request = chat_request("a red fox in snow", stream=True)

        def drop() -> int | None:
            with socket.create_connection((host, port), timeout=5) as sock:
                sock.sendall(request)
                status = read_status(sock, 10.0)
                # Hang up with the answer unread: the kernel sends a reset.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00"
                                b"\x00\x00\x00\x00")
                return status

        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            statuses = list(pool.map(lambda _: drop(), range(count)))
        # Let every admitted generation run to its end (one upstream latency and a margin).
        time.sleep(latency + 3.0)
        health = healthz_ok(service)
    finally:
        fake.state.latency = old_latency
    calls = upstream_calls(fake) - before
    kept = (stored() - kept_before) if stored else 0
    fresh = generation(service)
    took = time.monotonic() - started
    admitted = statuses.count(200)
    return Outcome("dropped streams", health, fresh, calls,
                   f"{count} dropped: {admitted} admitted, {statuses.count(503)} got 503; "
                   f"{kept} images kept for nobody", took)


def storage_outage(service: Service, fake, redis: RedisServer, count: int = 30) -> Outcome:
    """Generations while Redis (images and rate-limit counters) is stopped."""
    started = time.monotonic()
    before = upstream_calls(fake)
    redis.stop()
    answers: list[tuple[int | None, float]] = []
    try:
        for _ in range(count):
            t0 = time.monotonic()
            try:
                resp = requests.post(service.api + "/chat/completions", headers=AUTH, timeout=15,
                                     json={"model": "flux", "messages": [
                                         {"role": "user", "content": "a cat"}]})
                answers.append((resp.status_code, time.monotonic() - t0))
            except requests.RequestException:
                answers.append((None, time.monotonic() - t0))
        health = healthz_ok(service)
    finally:
        redis.start()
    calls = upstream_calls(fake) - before
    slowest = max(t for _, t in answers)
    codes = {str(c): [a for a, _ in answers].count(c) for c in {a for a, _ in answers}}
    time.sleep(1.5)   # the cached storage probe notices Redis is back
    fresh = generation(service)
    took = time.monotonic() - started
    return Outcome("storage outage", health, fresh, calls,
                   f"{count} generations while Redis was stopped: {codes}, slowest "
                   f"{slowest:.2f} s", took)


def storage_hang(service: Service, fake, redis: RedisServer, count: int = 5) -> Outcome:
    """Generations while Redis is hung (SIGSTOP): answered within a short socket timeout."""
    started = time.monotonic()
    before = upstream_calls(fake)
    process = redis._process
    assert process is not None
    process.send_signal(signal.SIGSTOP)
    answers: list[tuple[int | None, float]] = []
    try:
        for _ in range(count):
            t0 = time.monotonic()
            try:
                resp = requests.post(service.api + "/chat/completions", headers=AUTH, timeout=30,
                                     json={"model": "flux", "messages": [
                                         {"role": "user", "content": "a cat"}]})
                answers.append((resp.status_code, time.monotonic() - t0))
            except requests.RequestException:
                answers.append((None, time.monotonic() - t0))
        health = healthz_ok(service)
    finally:
        process.send_signal(signal.SIGCONT)
    calls = upstream_calls(fake) - before
    slowest = max(t for _, t in answers)
    codes = {str(c): [a for a, _ in answers].count(c) for c in {a for a, _ in answers}}
    time.sleep(1.5)
    fresh = generation(service)
    took = time.monotonic() - started
    return Outcome("storage hang", health, fresh, calls,
                   f"{count} generations while Redis was stopped with SIGSTOP: {codes}, slowest "
                   f"{slowest:.2f} s", took)


def trickling_upstream(service: Service, fake, timeout: float) -> Outcome:
    """An upstream and an LLM sending one byte a second: cut at their deadlines."""
    started = time.monotonic()
    fake.add_faults("trickle")
    first = generation(service, timeout=timeout * 4 + 10)
    fake.add_llm_faults("trickle")
    translated = generation(service, timeout=timeout * 4 + 10)
    health = healthz_ok(service)
    took = time.monotonic() - started
    return Outcome("trickling upstream", health, translated, None,
                   f"trickling image answer: {first} (deadline {timeout:g} s); trickling LLM: "
                   f"generation {translated}, translation fell back", took)


# --- running all of them ----------------------------------------------------------------------

def _stored(directory: Path):
    import diskcache

    def count() -> int:
        with diskcache.Cache(str(directory)) as cache:
            return len(cache)
    return count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", help="run one scenario (e.g. slowloris)")
    args = parser.parse_args(argv)

    def wanted(name: str) -> bool:
        return args.only in (None, name.replace(" ", "_"), name)
    fake = cloudflare.start(account_id="test-account", api_token="test-cf-token",
                            llm_key=LLM_KEY)
    outcomes: list[Outcome] = []
    tmp = Path(tempfile.mkdtemp(prefix="flux-abuse-"))
    threads = "32"
    try:
        env = cloudflare_env(fake, GUNICORN_THREADS=threads, UPSTREAM_TIMEOUT="5",
                             LOG_LEVEL="WARNING")
        if wanted("regex freeze") or wanted("slowloris") or wanted("full load"):
            service = start_service(tmp / "main", env, workers=1)
            try:
                if wanted("regex freeze"):
                    outcomes.append(regex_freeze(service, fake))
                if wanted("slowloris"):
                    outcomes.append(slowloris(service, fake))
                if wanted("full load"):
                    outcomes.append(full_load(service, fake))
            finally:
                service.stop()
        if wanted("dropped streams"):
            service = start_service(tmp / "dropped", {**env, "MAX_INFLIGHT": "4"}, workers=1)
            try:
                outcomes.append(dropped_streams(service, fake,
                                                stored=_stored(tmp / "dropped" / "images")))
            finally:
                service.stop()
        if wanted("storage outage") or wanted("storage hang"):
            with RedisServer() as redis:
                service = start_service(tmp / "redis", {**env, "STORAGE_URL": redis.url,
                                                        "RATE_LIMIT": "1000/minute"}, workers=1)
                try:
                    if wanted("storage outage"):
                        outcomes.append(storage_outage(service, fake, redis))
                    if wanted("storage hang"):
                        outcomes.append(storage_hang(service, fake, redis))
                finally:
                    service.stop()
        if wanted("trickling upstream"):
            llm = {"CF_IS_TRANSLATE": "true", "EXTERNAL_API_BASE": fake.url + "/v1",
                   "EXTERNAL_MODEL": "gpt-4o-mini", "EXTERNAL_API_KEY": LLM_KEY,
                   "TRANSLATE_TIMEOUT": "2", "UPSTREAM_TIMEOUT": "3", "UPSTREAM_RETRIES": "0"}
            service = start_service(tmp / "trickle", {**env, **llm}, workers=1)
            try:
                outcomes.append(trickling_upstream(service, fake, 3.0))
            finally:
                service.stop()
    finally:
        fake.stop()
    print(f"gunicorn: 1 worker, {threads} threads; fake Cloudflare on 127.0.0.1\n")
    print("| scenario | /healthz < 1 s | fresh generation | upstream calls for nobody | "
          "detail | seconds |")
    print("|---|---|---|---|---|---|")
    for outcome in outcomes:
        print(outcome.row())


if __name__ == "__main__":
    main()
