"""Slow and refused request bodies, and one client's many connections, against the real gunicorn.

Bodies sent chunked, with `Expect: 100-continue`, or with a `Content-Length` over the limit were
read by a request thread (and drained after a 401): a few hundred trickling uploads without a key
took every thread and `/healthz` timed out. They are now gathered off the threads, or refused
from their headers at once and the connection closed. One client address holds at most a share
of a worker's connections, so thousands of slow connections from it leave room for `/healthz`.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from contextlib import ExitStack

import pytest
import requests

from harness.service import API_KEY, cloudflare_env, start_service
from tests.support import address

pytestmark = pytest.mark.e2e
AUTH = {"Authorization": f"Bearer {API_KEY}"}
DEADLINE = 4                 # REQUEST_READ_TIMEOUT of the service under test
MAX_BODY = 1048576           # MAX_BODY_BYTES's default
MAX_UPLOAD = 20971520        # MAX_UPLOAD_BYTES's default
CHAT = (b'{"model": "flux-1-schnell", "messages": [{"role": "user", '
        b'"content": "a cute cat 16:9"}]}')
INITIALIZE = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {},
    "clientInfo": {"name": "test", "version": "1"}}}).encode()


@pytest.fixture(scope="module")
def service(fake_cf, tmp_path_factory):
    """Two workers of 16 threads: far fewer threads than slow uploads."""
    svc = start_service(tmp_path_factory.mktemp("slow-bodies"),
                        cloudflare_env(fake_cf, REQUEST_READ_TIMEOUT=str(DEADLINE)))
    yield svc
    svc.stop()


def connect(service, source: str = "127.0.0.1", timeout: float = 5) -> socket.socket:
    sock = socket.socket()
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect(address(service))
    return sock


def head(path: str, *lines: str, key: bool = False) -> bytes:
    auth = [f"Authorization: Bearer {API_KEY}"] if key else []
    return ("\r\n".join([f"POST {path} HTTP/1.1", "Host: 127.0.0.1",
                         "Content-Type: application/json", *auth, *lines]) + "\r\n\r\n").encode()


def answer_of(sock: socket.socket, timeout: float) -> bytes:
    """What the server sent within `timeout` (b"" if it closed without a word), up to its close."""
    sock.settimeout(timeout)
    data = b""
    try:
        while piece := sock.recv(65536):
            data += piece
    except TimeoutError:
        pass
    except OSError:
        pass                 # reset after the answer
    return data


def still_open(sock: socket.socket) -> bool:
    """Whether `sock` is open with nothing sent by the server (a request still being gathered)."""
    sock.settimeout(0.01)
    try:
        sock.recv(1, socket.MSG_PEEK)      # an answer, or the end: not waiting
        return False
    except TimeoutError:
        return True
    except OSError:
        return False


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes `sock` within `seconds` (reading and dropping what it sends)."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except OSError:
            return True
    return False


def timed(call) -> tuple[float, requests.Response]:
    start = time.monotonic()
    resp = call()
    return time.monotonic() - start, resp


def generate(service) -> requests.Response:
    return requests.post(service.api + "/chat/completions", headers=AUTH, timeout=5, json={
        "model": "flux-1-schnell", "messages": [{"role": "user", "content": "a cute cat"}]})


class Trickle:
    """Connections that each send one more byte of their body every second, forever."""

    def __init__(self) -> None:
        self.sockets: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def add(self, sock: socket.socket, first: bytes) -> None:
        sock.sendall(first)
        self.sockets.append(sock)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            for sock in self.sockets:
                try:
                    sock.send(b"a")    # a chunk-size digit, or a body byte: never the end
                except OSError:
                    pass

    def __enter__(self) -> Trickle:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)
        for sock in self.sockets:
            sock.close()


def test_slow_bodies_without_a_key_hold_no_thread(service, cf):
    """150 keyless uploads trickling a byte a second, chunked, after `100 Continue`, or over the
    limit, to /mcp and to chat: /healthz and a generation answer within a second, the oversized
    ones get their 401 at once, and the others are cut at the deadline without an answer."""
    kinds = {
        "chunked /mcp": head("/mcp", "Transfer-Encoding: chunked"),
        "chunked chat": head("/v1/chat/completions", "Transfer-Encoding: chunked"),
        "continue chat": head("/v1/chat/completions", "Expect: 100-continue",
                              "Content-Length: 500"),
        "oversized chat": head("/v1/chat/completions", f"Content-Length: {MAX_BODY + 1}"),
        "oversized /mcp": head("/mcp", "Expect: 100-continue",
                               f"Content-Length: {MAX_UPLOAD + 1}"),
    }
    started = time.monotonic()
    with Trickle() as trickle:
        names = []
        for i in range(150):
            name = list(kinds)[i % len(kinds)]
            trickle.add(connect(service), kinds[name])
            names.append(name)
        time.sleep(1.5)
        for _ in range(3):
            took, health = timed(lambda: requests.get(service.url + "/healthz", timeout=5))
            assert health.status_code == 200 and took < 1, took
            took, made = timed(lambda: generate(service))
            assert made.status_code == 200 and took < 1.5, (took, made.text[:200])
            time.sleep(0.3)
        time.sleep(max(0.0, started + DEADLINE + 2 - time.monotonic()))
        answers: dict[str, list[bytes]] = {name: [] for name in kinds}
        for name, sock in zip(names, trickle.sockets, strict=True):
            answers[name].append(answer_of(sock, 0.5))
    for name in ("oversized chat", "oversized /mcp"):
        # Refused from the headers alone: 401 (the key comes first), no "100 Continue" asked for
        # a body that is not wanted, and the connection closed.
        assert all(a.startswith(b"HTTP/1.1 401 ") for a in answers[name]), answers[name][:2]
    for name in ("chunked /mcp", "chunked chat"):
        assert answers[name] == [b""] * len(answers[name]), answers[name][:2]
    continued = answers["continue chat"]
    assert all(a == b"HTTP/1.1 100 Continue\r\n\r\n" for a in continued), continued[:2]


def test_a_refused_body_is_not_waited_for(service, cf):
    """With a key, a body over the limit is answered 413 before it is sent, and the server
    closes the connection at once instead of reading on."""
    for path, limit in (("/v1/chat/completions", MAX_BODY), ("/mcp", MAX_UPLOAD)):
        for extra in ((), ("Expect: 100-continue",)):
            with connect(service) as sock:
                sock.sendall(head(path, *extra, f"Content-Length: {limit + 1}", key=True))
                sock.settimeout(2)
                first = sock.recv(65536)
                assert first.startswith(b"HTTP/1.1 413 "), (path, extra, first[:200])
                assert b"Connection: close" in first
                assert closed_within(sock, 1.0), (path, extra)


def test_chunked_and_continued_bodies_are_served(service, cf):
    def chunks(body: bytes):
        for i in range(0, len(body), 7):
            yield body[i:i + 7]

    mcp = requests.post(service.url + "/mcp", data=chunks(INITIALIZE), timeout=10, headers={
        **AUTH, "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream"})
    assert mcp.status_code == 200, mcp.text
    assert mcp.json()["result"]["serverInfo"], mcp.text           # not -32700: the body arrived
    chat = requests.post(service.api + "/chat/completions", data=chunks(CHAT), timeout=10,
                         headers={**AUTH, "Content-Type": "application/json"})
    assert chat.status_code == 200, chat.text
    with connect(service) as sock:
        sock.sendall(head("/v1/chat/completions", "Expect: 100-continue",
                          f"Content-Length: {len(CHAT)}", key=True))
        sock.settimeout(5)
        assert sock.recv(64) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(CHAT)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")


def test_a_chunked_body_that_misses_the_deadline_is_closed_without_a_500(service, cf):
    before = service.log().count("Traceback")
    with connect(service, timeout=DEADLINE + 5) as sock:
        sock.sendall(head("/v1/chat/completions", "Transfer-Encoding: chunked", key=True)
                     + b"40\r\n" + CHAT[:20])
        answer = answer_of(sock, DEADLINE + 3)
    assert answer == b"", answer[:300]          # cut at the deadline, as a slow head is
    assert service.log().count("Traceback") == before


def test_one_address_cannot_take_every_connection(fake_cf, tmp_path):
    """2,100 slow connections from 127.0.0.2 (2 workers of 1,000 connections): beyond its share
    the address is refused 429 at once and /healthz answers; the trusted proxy (127.0.0.1, the
    default TRUSTED_PROXIES) is not bounded."""
    svc = start_service(tmp_path, cloudflare_env(fake_cf, REQUEST_READ_TIMEOUT="30"))
    with ExitStack() as stack:
        stack.callback(svc.stop)
        attackers = []
        for _ in range(2100):
            sock = stack.enter_context(connect(svc, "127.0.0.2"))
            try:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")   # never ended
            except OSError:
                pass                      # refused and closed before the send: counted below
            attackers.append(sock)
        time.sleep(1)
        for _ in range(3):
            took, health = timed(lambda: requests.get(svc.url + "/healthz", timeout=5))
            assert health.status_code == 200 and took < 1, took
            time.sleep(0.3)
        held = sum(still_open(sock) for sock in attackers)
        assert 0 < held <= 2 * 1000 // 8, held             # 125 a worker: 1/8 of 1,000
        # Any refused connection shows the answer (under load one may already have been reset).
        refusal = next((answer for answer in (answer_of(sock, 0.5) for sock in attackers[-40:])
                        if answer), b"")
        assert refusal.startswith(b"HTTP/1.1 429 ") and b"Retry-After: 1" in refusal, refusal
        assert b"Too many connections" in refusal
        # The trusted proxy's connections carry every client's requests: no bound for them.
        proxied = [stack.enter_context(connect(svc)) for _ in range(300)]
        for sock in proxied:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.5)
        assert all(still_open(sock) for sock in proxied)
        assert requests.get(svc.url + "/healthz", timeout=5).status_code == 200
