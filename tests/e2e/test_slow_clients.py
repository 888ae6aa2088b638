"""Slow clients (slowloris) against the real gunicorn: they hold no thread and are cut in time.

300 connections trickle their headers or their body a byte at a time; meanwhile `/healthz` and a
generation against the fake Cloudflare answer within a second, and every trickling connection
is closed, unanswered, once REQUEST_READ_TIMEOUT has passed. (On stock `gthread` the first
trickling connections take every thread and `/healthz` times out.)
"""

from __future__ import annotations

import functools
import socket
import threading
import time
from contextlib import ExitStack

import pytest
import requests

from harness.service import API_KEY, cloudflare_env, start_service
from tests import support
from tests.support import address, wait_until

pytestmark = pytest.mark.e2e
AUTH = {"Authorization": f"Bearer {API_KEY}"}
DEADLINE = 4          # REQUEST_READ_TIMEOUT of the service under test
CONNECTIONS = 300
KEEPALIVE = 5          # gunicorn.conf.py's keepalive
CHAT = (b'{"model": "flux-1-schnell", "messages": [{"role": "user", '
        b'"content": "a cute cat 16:9"}]}')


def raw_request(body: bytes = CHAT) -> bytes:
    """A whole, valid chat request as a client would send it."""
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head + body


@pytest.fixture(scope="module")
def service(fake_cf, tmp_path_factory):
    """Two workers of 16 threads: far fewer threads than trickling connections."""
    svc = start_service(tmp_path_factory.mktemp("slow-clients"),
                        cloudflare_env(fake_cf, REQUEST_READ_TIMEOUT=str(DEADLINE)))
    yield svc
    svc.stop()


generate = functools.partial(support.chat, model="flux-1-schnell", timeout=5)


def timed(call) -> tuple[float, requests.Response]:
    start = time.monotonic()
    resp = call()
    return time.monotonic() - start, resp


def closed_by_server(sock: socket.socket) -> bool | None:
    """True once the server has closed `sock` (or reset it), None while it is open and silent,
    False when it sent something. Never waits, and leaves what was sent to be read."""
    try:
        data = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return None                   # still open
    except OSError:
        return True                   # reset by the server
    return not data


class Trickler:
    """Many connections that each send one more byte of a request every second."""

    def __init__(self, service, count: int, stack: ExitStack):
        request = raw_request()
        header_end = request.index(b"\r\n\r\n") + 4
        self.sockets: list[socket.socket] = []
        self.offsets: list[int] = []
        self.payload = request
        for i in range(count):
            sock = stack.enter_context(socket.create_connection(address(service), timeout=5))
            self.sockets.append(sock)
            # Half trickle their headers from the start; half send the headers at once and
            # trickle the body.
            self.offsets.append(0 if i % 2 == 0 else header_end)
            if i % 2:
                sock.sendall(request[:header_end])
        self.cut: set[int] = set()
        self.answered: set[int] = set()
        self.sent_once = [False] * count
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            for i, sock in enumerate(self.sockets):
                if i in self.cut:
                    continue
                # Never the last byte: the request must stay incomplete.
                end = min(self.offsets[i] + 1, len(self.payload) - 1)
                try:
                    sock.sendall(self.payload[self.offsets[i]:end])
                except OSError:
                    self.cut.add(i)
                self.offsets[i] = end
                self.sent_once[i] = True

    def all_trickling(self) -> bool:
        """Whether every connection has sent at least one byte since the start (or was cut)."""
        return all(sent or i in self.cut for i, sent in enumerate(self.sent_once))

    def all_ended(self) -> bool:
        """Whether the server has closed (or answered) every connection; looks without waiting
        and records nothing: check_closed() does."""
        return all(i in self.cut or closed_by_server(sock) is not None
                   for i, sock in enumerate(self.sockets))

    def check_closed(self) -> None:
        """Record which connections the server closed, and whether any got an answer."""
        for i, sock in enumerate(self.sockets):
            sock.settimeout(0.2)
            try:
                data = sock.recv(4096)
            except TimeoutError:
                continue                  # still open
            except OSError:
                self.cut.add(i)           # reset by the server
                continue
            if data:
                self.answered.add(i)
            self.cut.add(i)


def test_trickling_clients_hold_no_thread_and_are_cut_at_the_deadline(service, cf):
    with ExitStack() as stack:
        trickler = Trickler(service, CONNECTIONS, stack)
        opened = time.monotonic()
        trickler.start()
        try:
            wait_until(trickler.all_trickling, timeout=10, message="every connection trickles")
            for _ in range(3):
                took, health = timed(lambda: requests.get(service.url + "/healthz", timeout=5))
                assert health.status_code == 200 and took < 1, took
                took, made = timed(lambda: generate(service))
                assert made.status_code == 200, made.text
                assert took < 1, took
                # The probes are spread over the trickling, not sent in one burst.
                time.sleep(0.5)
            # The deadline runs from each connection's start; give the event loop its second.
            # (Done as soon as all are closed; the assertions below say what was not.)
            left = opened + DEADLINE + 2 - time.monotonic()
            wait_until(trickler.all_ended, timeout=max(0.0, left), interval=0.2, fail=False)
        finally:
            trickler.stop()
        trickler.check_closed()
        assert not trickler.answered, "a request that never arrived whole got an answer"
        assert len(trickler.cut) == CONNECTIONS, \
            f"{CONNECTIONS - len(trickler.cut)} trickling connections outlived the deadline"
    took, health = timed(lambda: requests.get(service.url + "/healthz", timeout=5))
    assert health.status_code == 200 and took < 1


def test_a_slow_request_within_the_deadline_is_served(service, cf):
    request = raw_request()
    with socket.create_connection(address(service), timeout=10) as sock:
        # Headers in three pieces, the body in two, over about two seconds.
        for piece in (request[:20], request[20:60], request[60:-30], request[-30:]):
            sock.sendall(piece)
            time.sleep(0.5)           # the point: a client that is slow, within the deadline
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


def read_answers(sock: socket.socket, count: int) -> list[bytes]:
    """Read `count` whole HTTP answers (status line and headers) off `sock`, bodies skipped."""
    data, heads = b"", list[bytes]()
    while len(heads) < count:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            piece = sock.recv(65536)
            assert piece, f"connection closed after {len(heads)} answers"
            data += piece
            continue
        head = data[:end]
        length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")))
        while len(data) < end + 4 + length:
            data += sock.recv(65536)
        heads.append(head)
        data = data[end + 4 + length:]
    return heads


def test_pipelined_and_kept_alive_requests_are_served(service, cf):
    request = raw_request()
    with socket.create_connection(address(service), timeout=10) as sock:
        sock.sendall(request + request)        # two requests in one send
        first = read_answers(sock, 2)
        time.sleep(1)            # the point: idle on keep-alive for a while, then one more
        sock.sendall(request)
        second = read_answers(sock, 1)
    assert all(head.startswith(b"HTTP/1.1 200") for head in first + second), first + second


def test_idle_kept_alive_connections_hold_no_thread(service, cf):
    with ExitStack() as stack:
        for _ in range(CONNECTIONS):
            session = stack.enter_context(requests.Session())
            assert session.get(service.url + "/healthz", timeout=5).status_code == 200
        # 300 connections now idle on keep-alive, far more than the 32 threads.
        took, health = timed(lambda: requests.get(service.url + "/healthz", timeout=5))
        assert health.status_code == 200 and took < 1, took
        took, made = timed(lambda: generate(service))
        assert made.status_code == 200 and took < 1, (took, made.text)


def test_silent_connections_are_closed_like_idle_kept_alive_ones(fake_cf, tmp_path):
    service = start_service(tmp_path, cloudflare_env(fake_cf), workers=1)  # 30 s to send
    with ExitStack() as stack:
        stack.callback(service.stop)
        socks = [stack.enter_context(socket.create_connection(address(service), timeout=5))
                 for _ in range(50)]
        # Not a byte sent: closed at gunicorn's keep-alive (within KEEPALIVE + 2 s, as before).
        wait_until(lambda: all(closed_by_server(sock) for sock in socks),
                   timeout=KEEPALIVE + 2, interval=0.2, fail=False)
        closed = 0
        for sock in socks:
            sock.settimeout(0.2)
            try:
                closed += sock.recv(1) == b""
            except TimeoutError:
                pass
            except OSError:
                closed += 1
        assert closed == len(socks)
