"""gunicorn's threaded worker, made safe against clients that send their request slowly.

gunicorn's `gthread` worker hands a connection to a pool thread as soon as it has a byte to read;
the thread then blocks until the request line, the headers and (as the app reads it) the body
have arrived. A few hundred clients trickling a byte a second (slowloris) thus take every thread,
and `/healthz` goes unanswered. This worker gathers each request first, the way a buffering proxy
does: a thread only takes the bytes that are already there (never waiting), and hands the
connection back to the worker's event loop until more arrive. The app sees a request only once
its headers and its whole body have arrived, and the parser then reads nothing but those bytes:
no request thread ever waits on a client's socket.

- Each request has a total deadline (`REQUEST_READ_TIMEOUT`) from its first byte; a connection
  that misses it is closed without an answer.
- A body larger than its route takes (`bodies.gather_limit`) is not gathered: the app answers
  (413, or 401 first) from the headers alone, and the connection closes. So does a body whose
  framing the parser would refuse (400).
- A chunked body is gathered and handed to the app with its length (`Content-Length`), as nginx
  passes one on; `Expect: 100-continue` is answered here, when the body is wanted.
- After an answer that closes the connection, the event loop (not a thread) lingers a while,
  reading and dropping what the client still sends, so its answer is not cut by a reset
  (RFC 9112 section 9.6).
- One client address holds at most 1/CLIENT_SHARE of a worker's connections; trusted proxies
  (TRUSTED_PROXIES), which carry everyone's requests, are not bounded.

Only plain HTTP/1.x is gathered; TLS connections (gunicorn's `certfile`) get the stock behaviour.
Configured in gunicorn.conf.py as `worker_class = "flux_worker.gunicorn_worker.GatheringWorker"`.
"""

from __future__ import annotations

import errno
import logging
import os
import selectors
import socket
import time
from functools import partial
from typing import Any, Callable

from gunicorn.workers.gthread import _DEFER, TConn, ThreadWorker

from .bodies import gather_limit
from .config import Config
from .request_gathering import (
    CLIENT_SHARE,
    CLOSE_LINGER,
    CONTINUE,
    LINGER,
    RECV_SIZE,
    GatheredUnreader,
    Gathering,
    client_key,
)

log = logging.getLogger(__name__)


class GatheredConn(TConn):
    """A connection with its request being gathered, counted against its client address."""

    def __init__(self, cfg: Any, sock: socket.socket, client: Any, server: Any,
                 on_close: Callable[[], None] | None):
        super().__init__(cfg, sock, client, server)
        self.gathering: Gathering | None = None
        self.request_deadline: float | None = None
        self.body_cut = False
        self._on_close = on_close

    def close(self, graceful: bool = False) -> None:
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()
        super().close(graceful)


class GatheringWorker(ThreadWorker):
    """A `gthread` worker whose threads never wait on a slow client's request."""

    read_timeout = 30.0

    def init_process(self) -> None:
        """Read the deadline, the body limits and the trusted proxies, then start."""
        from .web.proxies import TrustedPeers

        config = Config.from_env(os.environ)
        self.read_timeout = config.request_read_timeout
        self.limit_of = partial(gather_limit, config)
        self.trusted = TrustedPeers(config.trusted_proxies)
        self.client_cap = max(1, self.cfg.worker_connections // CLIENT_SHARE)
        self.per_client: dict[str, int] = {}
        self.lingering: list[GatheredConn] = []
        self.refused = 0
        self._refusal = self._refusal_answer()
        self._next_report = 0.0
        super().init_process()

    # ---- connections ------------------------------------------------------------------------

    def accept(self, listener: socket.socket) -> None:
        """Accept a connection, unless its client address already holds its share."""
        try:
            sock, addr = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        key = client_key(addr)
        if key is not None and addr[0] in self.trusted:
            key = None
        if key is not None and self.per_client.get(key, 0) >= self.client_cap:
            self._refuse_connection(sock, key)
            return
        on_close = None
        if key is not None:
            self.per_client[key] = self.per_client.get(key, 0) + 1
            on_close = partial(self._release, key)
        self.nr_conns += 1
        sock.setblocking(True)
        self.enqueue_req(GatheredConn(self.cfg, sock, addr, listener.getsockname(), on_close))

    def _release(self, key: str) -> None:
        left = self.per_client.get(key, 1) - 1
        if left > 0:
            self.per_client[key] = left
        else:
            self.per_client.pop(key, None)

    def _refusal_answer(self) -> bytes:
        """The 429 a connection over its address's share gets, in the API's error JSON."""
        from .errors import RateLimited
        from .web import edge

        answer = edge.error_answer(RateLimited(
            "Too many connections at once from your address. Close some, or send more requests "
            "over each kept-alive connection, then retry.", retry_after=1), behind_key=False)
        head = [f"HTTP/1.1 {answer.status_line}", *(f"{n}: {v}" for n, v in answer.headers),
                "Connection: close"]
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + answer.body

    def _refuse_connection(self, sock: socket.socket, key: str) -> None:
        """Answer 429 without reading the request, and close: the event loop never waits here."""
        try:
            sock.setblocking(False)
            sock.send(self._refusal)
        except OSError:
            pass
        finally:
            sock.close()
        self.refused += 1
        now = time.monotonic()
        if now >= self._next_report:
            # One line per 10 s, however many are refused: an attack must not flood the log.
            log.warning("refused %d connections over the per-address share (%d per worker); "
                        "latest from %s", self.refused, self.client_cap, key)
            self.refused, self._next_report = 0, now + 10

    # ---- one request --------------------------------------------------------------------------

    def handle(self, conn: Any) -> Any:
        """Serve one request once it has been gathered; until then, give the thread back."""
        if self.cfg.is_ssl:
            return super().handle(conn)
        try:
            conn.init()
            gathered = self._gather(conn)
        except OSError:       # reset by the peer: nothing to answer
            gathered = False
        if gathered is _DEFER:
            return _DEFER
        conn.request_deadline = None      # a kept-alive connection's next request starts afresh
        if not gathered:
            return False      # gone, or late: closed without an answer
        error = gathered.error
        if error is not None:
            self.handle_error(None, conn.sock, conn.client, error)
            keep = False
        else:
            keep = super().handle(conn)
        if keep:
            return keep
        try:
            # The answer is whole; the event loop lingers on what the client still sends.
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            return False
        return LINGER

    def handle_request(self, req: Any, conn: Any) -> Any:
        """Serve `req`; a request whose body was not gathered closes its connection."""
        if getattr(conn, "body_cut", False):
            req.force_close()          # "Connection: close": the rest of its body is unread
        return super().handle_request(req, conn)

    def _gather(self, conn: Any) -> Any:
        """Take the bytes the socket has now: the Gathering when the request is complete, _DEFER
        to wait for more in the event loop, False when the client left or missed its deadline."""
        unreader = conn.parser.unreader
        if not isinstance(unreader, GatheredUnreader):
            unreader = conn.parser.unreader = GatheredUnreader(conn.sock)
        now = time.monotonic()
        if conn.request_deadline is None:
            conn.request_deadline = now + self.read_timeout
        gathering = conn.gathering or Gathering(self.limit_of)
        conn.gathering = None
        # Anything a client pipelined behind its last request.
        leftover = unreader.take_buffered()
        if leftover:
            gathering.feed(leftover)
        conn.sock.setblocking(False)
        try:
            while (step := gathering.step()) != Gathering.READY:
                if step == Gathering.CONTINUE:
                    if conn.sock.send(CONTINUE) != len(CONTINUE):
                        return False    # 25 bytes on an idle connection: only if it is broken
                    continue
                if now >= conn.request_deadline:
                    return False
                try:
                    piece = conn.sock.recv(RECV_SIZE)
                except BlockingIOError:
                    conn.gathering = gathering
                    return _DEFER
                if not piece:
                    return False
                gathering.feed(piece)
                now = time.monotonic()
        finally:
            conn.sock.setblocking(True)
        conn.body_cut = gathering.cut
        if gathering.error is None:
            unreader.unread(gathering.request())
        return gathering

    # ---- the event loop ---------------------------------------------------------------------

    def finish_request(self, conn: Any, fs: Any) -> None:
        """Park a connection that waits for bytes until its deadline; linger on one that was
        answered and is to close; close the others at once."""
        result = None if fs.cancelled() or fs.exception() is not None else fs.result()
        if result is _DEFER and not self.alive:
            result = None     # stopping: a request not yet sent will not be served
        if result is LINGER:
            self._linger(conn)
            return
        if result is _DEFER or result:
            super().finish_request(conn, fs)
            if result is _DEFER and getattr(conn, "request_deadline", None) is not None:
                conn.timeout = conn.request_deadline
                gathering = getattr(conn, "gathering", None)
                if gathering is None or not gathering.started:
                    # Not a byte yet: an idle connection gets what an idle kept-alive one gets.
                    conn.timeout = min(conn.timeout, time.monotonic() + self.cfg.keepalive)
            return
        # gunicorn would close gracefully here, reading on for up to 2 s in the event loop.
        self.nr_conns -= 1
        conn.close()

    def _linger(self, conn: Any) -> None:
        """Read and drop what the client still sends, until it closes or CLOSE_LINGER passes."""
        try:
            conn.sock.setblocking(False)
            self.poller.register(conn.sock, selectors.EVENT_READ,
                                 partial(self._on_lingering_readable, conn))
        except (OSError, ValueError):
            self.nr_conns -= 1
            conn.close()
            return
        conn.timeout = time.monotonic() + CLOSE_LINGER
        self.lingering.append(conn)

    def _on_lingering_readable(self, conn: Any, sock: Any) -> None:
        for _ in range(16):        # at most 1 MiB per turn: the loop serves everyone
            try:
                data = conn.sock.recv(RECV_SIZE)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._end_linger(conn)
                return

    def _end_linger(self, conn: Any) -> None:
        if conn in self.lingering:
            self.lingering.remove(conn)
        self._drop(conn)

    def _drop(self, conn: Any) -> None:
        """Forget a connection the event loop watched, and close it."""
        try:
            self.poller.unregister(conn.sock)
        except (OSError, KeyError, ValueError):
            pass
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self) -> None:
        """Close every parked connection whose deadline has passed, and every lingering one
        whose time is up."""
        # Deadlines run from each request's start, not from when it was parked, so the queue
        # is not in deadline order and has to be scanned whole (it is short and this is cheap).
        now = time.monotonic()
        for conn in [c for c in self.pending_conns if c.timeout <= now]:
            self.pending_conns.remove(conn)
            self._drop(conn)
        for conn in [c for c in self.lingering if c.timeout <= now or not self.alive]:
            self._end_linger(conn)
