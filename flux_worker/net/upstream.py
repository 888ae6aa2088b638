"""The one pooled HTTP session every upstream client shares.

gunicorn runs many threads per process and every generation waits seconds on the upstream, so
the pool must hold as many connections as there are threads, or requests would open and drop
connections all the time. Retries are decided by each client, never by urllib3: only the client
knows whether repeating a call is safe (a timed-out generation may already be billed).
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Mapping

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ProtocolError, ReadTimeoutError
from urllib3.util.retry import Retry

from ..version import __version__

# Variables through which requests takes proxy settings from the environment, and the CA bundle
# variables it honours (in this order).
PROXY_SETTINGS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
CA_BUNDLE_SETTINGS = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def user_agent() -> str:
    """Return the User-Agent this service sends upstream: `flux-worker/<version>`."""
    return f"flux-worker/{__version__}"


def make_session(pool_size: int) -> requests.Session:
    """Build a session with `pool_size` pooled connections per host and no automatic retries."""
    if pool_size < 1:
        raise ValueError(f"pool_size must be at least 1, got {pool_size}")
    session = requests.Session()
    # total=0 and read=False is requests' own default made explicit: urllib3 must not repeat a
    # POST behind the client's back (that could bill one image twice).
    adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size,
                          max_retries=Retry(total=0, read=False))
    # Pools whose connections end a status line and headers that trickle in at the deadline of
    # the `call` that waits for them (see _DeadlineConnection).
    adapter.poolmanager.pool_classes_by_scheme = {"http": DeadlinePool,
                                                   "https": DeadlineTLSPool}
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = user_agent()
    # With trust_env, requests re-reads proxy variables, no_proxy rules and ~/.netrc on every
    # call, scanning the whole environment: 0.37 ms of CPU per request, up to 1 ms with a large
    # environment. Only pay that when proxies are asked for; a CA bundle is read once here.
    session.trust_env = any(os.environ.get(name) or os.environ.get(name.lower())
                            for name in PROXY_SETTINGS)
    bundle = next((os.environ[name] for name in CA_BUNDLE_SETTINGS if os.environ.get(name)), None)
    if bundle:
        session.verify = bundle
    return session


# --- deadlines while the status line and headers arrive ---------------------------------------
#
# http.client reads them with a timeout per read, so a peer sending one byte per read timeout
# would hold the call far beyond it. The call's deadline is kept per thread, and the connection
# asks the process's watchdog to shut its socket at that deadline while it waits for them.

_current = threading.local()


def _cut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed: the wait has ended anyway


class Watchdog:
    """One thread per process that shuts the sockets whose wait passed its deadline.

    A `threading.Timer` per call did the same at the price of a thread per call in flight:
    ~0.19 ms of CPU per call and twice the threads under load (docs/benchmarks.md).
    """

    def __init__(self) -> None:
        self._tickets = itertools.count()
        self._restart()

    def _restart(self) -> None:
        """Start afresh: in a forked child the thread is gone and its lock may be held."""
        self._wake = threading.Condition()
        self._armed: dict[int, socket.socket] = {}
        self._due: list[tuple[float, int]] = []     # a heap of (deadline, ticket)
        self._running = False

    def arm(self, deadline: float, sock: socket.socket) -> int:
        """Shut `sock` at `deadline` (time.monotonic()) unless disarmed first; return a ticket."""
        with self._wake:
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="socket-deadlines",
                                 daemon=True).start()
            ticket = next(self._tickets)
            self._armed[ticket] = sock
            heapq.heappush(self._due, (deadline, ticket))
            if self._due[0][1] == ticket:
                self._wake.notify()           # sooner than what the thread waits for
            return ticket

    def disarm(self, ticket: int) -> None:
        """Forget a ticket: its wait ended in time."""
        with self._wake:
            self._armed.pop(ticket, None)
            if len(self._due) > 2 * len(self._armed) + 1024:
                # Calls end long before their deadlines: drop the entries of disarmed tickets.
                self._due = [entry for entry in self._due if entry[1] in self._armed]
                heapq.heapify(self._due)

    def _run(self) -> None:
        with self._wake:
            while True:
                now = time.monotonic()
                while self._due and self._due[0][0] <= now:
                    _, ticket = heapq.heappop(self._due)
                    sock = self._armed.pop(ticket, None)
                    if sock is not None:
                        _cut(sock)
                self._wake.wait(self._due[0][0] - now if self._due else None)


_watchdog = Watchdog()
os.register_at_fork(after_in_child=_watchdog._restart)


def shut_at(deadline: float, sock: socket.socket) -> int:
    """Have the process's one watchdog shut `sock` at `deadline` (time.monotonic()).

    Returns a ticket for `spare`. Remote image fetches (fetch.py) use it as well, so every
    outgoing wait of the process, upstream or not, ends through the same thread.
    """
    return _watchdog.arm(deadline, sock)


def spare(ticket: int) -> None:
    """Call off a `shut_at`: the wait it guarded ended in time."""
    _watchdog.disarm(ticket)


class _DeadlineMixin:
    """Shut the socket when the current call's deadline passes during getresponse()."""

    sock: socket.socket | None

    def getresponse(self):
        deadline = getattr(_current, "deadline", None)
        if deadline is None or self.sock is None:
            return super().getresponse()
        ticket = _watchdog.arm(deadline, self.sock)
        try:
            return super().getresponse()
        finally:
            _watchdog.disarm(ticket)


class _DeadlineConnection(_DeadlineMixin, HTTPConnection):
    """An HTTP connection whose wait for headers ends at the call's deadline."""


class _DeadlineTLSConnection(_DeadlineMixin, HTTPSConnection):
    """An HTTPS connection whose wait for headers ends at the call's deadline."""


class DeadlinePool(HTTPConnectionPool):
    ConnectionCls = _DeadlineConnection


class DeadlineTLSPool(HTTPSConnectionPool):
    ConnectionCls = _DeadlineTLSConnection


# --- one bounded call -------------------------------------------------------------------------
#
# Every upstream call (image generation, its download, the translation LLM) goes through `call`:
# the whole call has one deadline (a peer that trickles a byte every few seconds is cut when
# it is reached, not when it pauses longer than a socket timeout), the body is read in pieces up
# to a byte cap, and redirects are never followed (a 3xx comes back as an answer: the headers
# carry tokens, and the AI Gateway's must never reach another host).

MAX_UPSTREAM_BYTES = 32 * 1024 * 1024   # largest upstream answer read (a 2500 px PNG is ~15 MB)
RETRY_AFTER_MAX = 3600                  # seconds; an upstream asking for more gets this much
_PIECE = 256 * 1024


class UpstreamProblem(Exception):
    """An upstream answer that is refused whole; the message says why and names no URL."""


class BodyTooLarge(UpstreamProblem):
    """The answer is larger than the caller's byte cap."""


class Redirected(UpstreamProblem):
    """The upstream answered with a redirect, which is not followed."""


class Deadline(requests.Timeout):
    """The call's total deadline passed (a requests.Timeout, so callers treat it as one)."""


@dataclass(frozen=True)
class Answer:
    """A whole upstream answer: status, headers and body (read within the deadline and cap)."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes

    @property
    def text(self) -> str:
        """The body as text (UTF-8, undecodable bytes replaced)."""
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body parsed as JSON; raise ValueError when it is not."""
        return json.loads(self.content)


def call(session: requests.Session, method: str, url: str, *, timeout: float,
         max_bytes: int = MAX_UPSTREAM_BYTES, connect_timeout: float = 10.0,
         **kwargs: Any) -> Answer:
    """Make one HTTP call that ends within `timeout` seconds in total, body at most `max_bytes`.

    :raises Deadline: the answer was not complete in time (also while headers trickle in).
    :raises BodyTooLarge: the body (declared or read) exceeds `max_bytes`.
    :raises Redirected: a 3xx answer (redirects are not followed).
    :raises requests.RequestException: connection failures, as requests raises them.
    """
    deadline = time.monotonic() + timeout
    headers = dict(kwargs.pop("headers", None) or {})
    # Compressed bodies would make the byte cap a cap on compressed bytes only.
    headers.setdefault("Accept-Encoding", "identity")
    _current.deadline = deadline
    try:
        resp = session.request(method, url, headers=headers, stream=True, allow_redirects=False,
                               timeout=(min(connect_timeout, timeout), timeout), **kwargs)
    except requests.ConnectionError as exc:
        if not isinstance(exc, requests.ConnectTimeout) and time.monotonic() >= deadline:
            raise Deadline("the answer's headers did not arrive within the deadline") from exc
        raise
    finally:
        _current.deadline = None
    try:
        if 300 <= resp.status_code < 400:
            raise Redirected(f"the upstream answered HTTP {resp.status_code} (a redirect), "
                             "which is not followed")
        declared = resp.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise BodyTooLarge(_too_large(max_bytes))
        body = _read_body(resp, deadline, max_bytes)
        return Answer(resp.status_code, resp.headers, body)
    finally:
        resp.close()


def _read_body(resp: requests.Response, deadline: float, max_bytes: int) -> bytes:
    """Read the body piece by piece, each wait bounded by the time left before `deadline`."""
    raw = resp.raw
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    pieces: list[bytes] = []
    total = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Deadline(f"the answer was not complete within the deadline ({total} bytes read)")
        if sock is not None:
            # read1 makes at most one recv, so this bounds each wait by the time left.
            sock.settimeout(left)
        try:
            piece = raw.read1(_PIECE) if hasattr(raw, "read1") else raw.read(_PIECE)
        except (socket.timeout, TimeoutError, ReadTimeoutError) as exc:
            raise Deadline(f"the answer was not complete within the deadline ({total} bytes "
                           "read)") from exc
        except ProtocolError as exc:
            raise requests.ConnectionError(f"the connection broke while reading ({exc})") from exc
        if not piece:
            return b"".join(pieces)
        total += len(piece)
        if total > max_bytes:
            raise BodyTooLarge(_too_large(max_bytes))
        pieces.append(piece)


def _too_large(limit: int) -> str:
    return f"the answer is larger than {limit // (1024 * 1024)} MB, more than any image needs"


def retry_after_seconds(value: str | None, cap: int = RETRY_AFTER_MAX) -> float | None:
    """Read a Retry-After header (seconds or an HTTP date), at most `cap`; None when absent or bad.

    The one reader of upstream Retry-After headers: a 309-digit value must not reach a client.
    """
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    if math.isnan(seconds):
        return None
    return min(float(cap), max(0.0, seconds))
