"""flux_worker.net.upstream on its own: what `call` sends and gives back, the ways it refuses an
answer, its deadline on real sockets, the watchdog, and Retry-After.

tests/test_bounded_http.py covers the caps as the backends meet them (a body over the cap, a
302, a trickling answer, the watchdog's one thread and fork, common Retry-After values) and
tests/test_cloudflare_backend.py the session's pool and environment; this file covers the rest.
`responses` stands at the HTTP edge, except where the deadline needs a real socket: then a
small server on 127.0.0.1 plays the upstream.
"""

from __future__ import annotations

import socket
import threading
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Callable

import pytest
import requests
import responses

from flux_worker.net.upstream import (
    Answer,
    BodyTooLarge,
    Deadline,
    Redirected,
    Watchdog,
    call,
    make_session,
    retry_after_seconds,
    user_agent,
)
from flux_worker.version import __version__
from tests.support import free_port

URL = "https://up.example/run"


@pytest.fixture
def rsps():
    with responses.RequestsMock() as mock:
        yield mock


class LocalUpstream:
    """A server on 127.0.0.1 that reads each request's head, then lets `answer` write to the
    connection as slowly or as wrongly as a test needs."""

    def __init__(self, answer: Callable[[socket.socket], None]):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/"
        self.answer = answer
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return                    # closed: the test is over
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    piece = conn.recv(65536)
                    if not piece:
                        break
                    head += piece
                try:
                    self.answer(conn)
                except OSError:
                    pass                  # the client hung up

    def close(self) -> None:
        self.listener.close()

    def __enter__(self) -> LocalUpstream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- what a call sends and returns -----------------------------------------------------------

def test_a_call_asks_for_an_uncompressed_body_and_names_the_service(rsps):
    rsps.post(URL, json={"ok": True})
    call(make_session(1), "POST", URL, timeout=5, json={"prompt": "a cat"})
    sent = rsps.calls[0].request
    # A compressed body would make the byte cap a cap on compressed bytes only.
    assert sent.headers["Accept-Encoding"] == "identity"
    assert sent.headers["User-Agent"] == user_agent() == f"flux-worker/{__version__}"
    assert sent.body == b'{"prompt": "a cat"}'


def test_a_callers_own_headers_are_sent_and_win(rsps):
    rsps.get(URL, body=b"x")
    call(make_session(1), "GET", URL, timeout=5,
         headers={"Accept-Encoding": "gzip", "Authorization": "Bearer t"})
    sent = rsps.calls[0].request
    assert sent.headers["Accept-Encoding"] == "gzip" and sent.headers["Authorization"] == "Bearer t"


@pytest.mark.parametrize("status", [200, 400, 429, 500, 503])
def test_any_non_redirect_status_is_an_answer_not_an_exception(rsps, status):
    rsps.get(URL, status=status, body=b'{"error": "x"}', headers={"Retry-After": "3"})
    answer = call(make_session(1), "GET", URL, timeout=5)
    assert isinstance(answer, Answer)
    assert answer.status_code == status and answer.headers["Retry-After"] == "3"
    assert answer.content == b'{"error": "x"}' and answer.json() == {"error": "x"}


def test_an_answers_text_replaces_bad_utf8_and_json_refuses_non_json(rsps):
    rsps.get(URL, body="café ".encode() + b"\xff")
    answer = call(make_session(1), "GET", URL, timeout=5)
    assert answer.text == "café \ufffd"
    with pytest.raises(ValueError):
        answer.json()


# --- answers refused whole -------------------------------------------------------------------

@pytest.mark.parametrize("status", [301, 303, 304, 307, 308])
def test_every_3xx_is_refused_and_named(rsps, status):
    rsps.get(URL, status=status, headers={"Location": "https://elsewhere.example/"})
    with pytest.raises(Redirected) as caught:
        call(make_session(1), "GET", URL, timeout=5)
    assert f"HTTP {status}" in str(caught.value) and "elsewhere" not in str(caught.value)
    assert [c.request.url for c in rsps.calls] == [URL]


def test_a_declared_length_over_the_cap_is_refused_before_reading(rsps):
    rsps.get(URL, body=b"tiny", headers={"Content-Length": str(64 * 1024 * 1024)},
             auto_calculate_content_length=False)
    with pytest.raises(BodyTooLarge, match="larger than 32 MB"):
        call(make_session(1), "GET", URL, timeout=5)


def test_a_body_without_a_length_is_cut_once_it_passes_the_cap():
    def unbounded(conn: socket.socket) -> None:
        # No Content-Length: the body ends when the connection does, which is never soon.
        conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
        for _ in range(64):
            conn.sendall(b"x" * 65536)

    with LocalUpstream(unbounded) as upstream:
        with pytest.raises(BodyTooLarge, match="larger than 1 MB"):
            call(make_session(1), "GET", upstream.url, timeout=10, max_bytes=1024 * 1024)


def test_a_body_that_breaks_off_is_a_connection_error():
    def broken(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)

    with LocalUpstream(broken) as upstream:
        with pytest.raises(requests.ConnectionError, match="broke while reading"):
            call(make_session(1), "GET", upstream.url, timeout=5)


# --- the deadline on real sockets ------------------------------------------------------------

def test_an_upstream_that_never_answers_is_a_timeout_at_the_deadline():
    release = threading.Event()

    def silent(conn: socket.socket) -> None:
        release.wait(10)              # reads the request, answers nothing

    with LocalUpstream(silent) as upstream:
        started = time.monotonic()
        try:
            with pytest.raises(requests.Timeout):
                call(make_session(1), "GET", upstream.url, timeout=0.5)
        finally:
            release.set()
        assert time.monotonic() - started < 3


def test_a_refused_connection_is_a_connection_error_not_a_timeout():
    with pytest.raises(requests.ConnectionError) as caught:
        call(make_session(1), "GET", f"http://127.0.0.1:{free_port()}/", timeout=5)
    assert not isinstance(caught.value, requests.Timeout)


def test_the_deadline_of_a_call_does_not_outlive_it():
    def late_then_whole(conn: socket.socket) -> None:
        time.sleep(0.6)               # the point: headers come after the first call's deadline
        # The server closes each connection after one answer, and says so.
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    with LocalUpstream(late_then_whole) as upstream:
        session = make_session(1)
        with pytest.raises(requests.Timeout):
            call(session, "GET", upstream.url, timeout=0.3)
        # The same thread, a plain request: no deadline left behind to cut it.
        resp = session.get(upstream.url, timeout=5)
        assert resp.status_code == 200 and resp.content == b"ok"
        # And a call with time enough gets the whole answer.
        assert call(session, "GET", upstream.url, timeout=5).content == b"ok"


def test_a_deadline_is_a_requests_timeout():
    assert issubclass(Deadline, requests.Timeout)


# --- the watchdog ----------------------------------------------------------------------------

def test_a_sooner_deadline_wakes_a_watchdog_that_waits_for_a_later_one():
    dog = Watchdog()
    far, first, near = socket.socketpair(), socket.socketpair(), socket.socketpair()
    try:
        dog.arm(time.monotonic() + 60, far[0])
        dog.arm(time.monotonic() + 0.05, first[0])
        first[0].settimeout(5)
        assert first[0].recv(1) == b""              # once it is cut, the thread waits a minute
        dog.arm(time.monotonic() + 0.2, near[0])    # ...unless told of a sooner deadline
        near[0].settimeout(5)
        started = time.monotonic()
        assert near[0].recv(1) == b""               # shut, at its own deadline
        assert time.monotonic() - started < 2
        far[1].sendall(b"x")
        assert far[0].recv(1) == b"x"               # not yet due: still open
    finally:
        for pair in (far, first, near):
            for end in pair:
                end.close()


# --- Retry-After -----------------------------------------------------------------------------

@pytest.mark.parametrize("header, expected", [
    ("0", 0.0), ("1.5", 1.5), ("", None), ("  ", None), ("Mon, 99 Foo 2015", None),
])
def test_retry_after_reads_decimal_seconds_and_refuses_what_it_cannot_read(header, expected):
    assert retry_after_seconds(header) == expected


def test_retry_after_takes_the_callers_cap():
    assert retry_after_seconds("600", cap=60) == 60.0
    assert retry_after_seconds("30", cap=60) == 30.0


@pytest.mark.parametrize("zone", ["GMT", "-0000"])
def test_retry_after_as_a_future_date_is_the_seconds_until_then(zone):
    when = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=120)
    header = format_datetime(when, usegmt=True).replace("GMT", zone)
    assert 110 <= retry_after_seconds(header) <= 120
