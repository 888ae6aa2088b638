"""gunicorn's threaded worker, made safe against clients that send their request slowly.

gunicorn's `gthread` worker hands a connection to a pool thread as soon as it has a byte to read;
the thread then blocks until the request line, the headers and (as the app reads it) the body
have arrived. A few hundred clients trickling a byte a second (slowloris) thus take every thread,
and `/healthz` goes unanswered. This worker gathers each request first, the way a buffering proxy
does: a thread only takes the bytes that are already there (never waiting), and hands the
connection back to the worker's event loop until more arrive. The app sees a request only once
its headers and its body (when its `Content-Length` is at most `MAX_BODY_BYTES`) are complete.
Each request has a total deadline (`REQUEST_READ_TIMEOUT`) from its first moment; a connection
that misses it is closed without an answer. The few requests that cannot be gathered (chunked
bodies, `Expect: 100-continue`, oversized headers or bodies) are read by the thread as usual, but
every socket read is bounded by the same deadline, so no thread waits longer than it.

Only plain HTTP/1.x is gathered; TLS connections (gunicorn's `certfile`) get the stock behaviour.
Configured in gunicorn.conf.py as `worker_class = "flux_worker.gunicorn_worker.GatheringWorker"`.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from gunicorn import util
from gunicorn.http.unreader import SocketUnreader
from gunicorn.workers.gthread import _DEFER, ThreadWorker

from .config import Config

# Requests whose header block is larger are handed to gunicorn's parser, which answers them
# with its own limits; gathering stops there so one connection cannot hold much memory.
HEADER_GATHER_LIMIT = 64 * 1024
# How long a thread lingers to read what a client still sends after a "Connection: close"
# answer (RFC 9112 section 9.6), so the answer is not cut by a reset.
CLOSE_LINGER = 1.0
_RECV_SIZE = 64 * 1024


class DeadlineUnreader(SocketUnreader):
    """gunicorn's socket reader with a total deadline: past it, the client is treated as gone."""

    def __init__(self, sock: socket.socket):
        super().__init__(sock)
        self.deadline: float | None = None
        self.expired = False

    def chunk(self, size_hint: int | None = None) -> bytes:
        """Read what the socket has, waiting no later than the deadline; b"" once it passed."""
        if self.deadline is None:
            return super().chunk(size_hint)
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            self.expired = True
            return b""
        prior = self.sock.gettimeout()
        # gunicorn bounds its own reads (the drain of an unread body) by setting a timeout:
        # keep the shorter of the two.
        self.sock.settimeout(remaining if prior is None else min(prior, remaining))
        try:
            return super().chunk(size_hint)
        except TimeoutError:
            self.expired = True
            return b""
        finally:
            self.sock.settimeout(prior)


def request_complete(data: bytes | bytearray, body_limit: int) -> bool:
    """Whether `data` holds a whole request the parser can read without waiting on the socket.

    True also when gathering should stop and the parser take over: a header block over
    HEADER_GATHER_LIMIT, a chunked or 100-continue body, a malformed or oversized length (the
    parser or the app rejects those without reading the body).
    """
    end = data.find(b"\r\n\r\n", 0, HEADER_GATHER_LIMIT)
    if end < 0:
        # Bare LF line ends are refused by gunicorn's parser: let it answer 400 now.
        return len(data) >= HEADER_GATHER_LIMIT or b"\n\n" in data[:HEADER_GATHER_LIMIT]
    lengths = []
    for line in bytes(data[:end]).split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"transfer-encoding":
            return True
        if name == b"expect" and value.strip().lower() == b"100-continue":
            return True   # the client waits for "100 Continue", which gunicorn sends
        if name == b"content-length":
            lengths.append(value.strip())
    if not lengths:
        return True
    if len(lengths) > 1 or not lengths[0].isdigit() or int(lengths[0]) > body_limit:
        return True
    return len(data) >= end + 4 + int(lengths[0])


class GatheringWorker(ThreadWorker):
    """A `gthread` worker whose threads never wait on a slow client's request."""

    read_timeout = 30.0
    body_limit = 1 << 20

    def init_process(self) -> None:
        """Read the deadline and the body limit from the typed configuration, then start."""
        config = Config.from_env(os.environ)
        self.read_timeout = config.request_read_timeout
        self.body_limit = config.max_body_bytes
        super().init_process()

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
        keep = super().handle(conn) if gathered else False
        unreader = conn.parser.unreader if conn.parser is not None else None
        expired = isinstance(unreader, DeadlineUnreader) and unreader.expired
        conn.request_deadline = None      # a kept-alive connection's next request starts afresh
        if isinstance(unreader, DeadlineUnreader):
            unreader.deadline = None
        if keep and not expired:
            return keep
        if gathered and not expired:
            # The answer said "Connection: close"; linger here, not in the event loop, where
            # gunicorn would wait up to 2 s per client that keeps sending.
            util.close_graceful(conn.sock, timeout=CLOSE_LINGER)
        return False

    def _gather(self, conn: Any) -> Any:
        """Take the bytes the socket has now; True when the request is complete, _DEFER to wait
        for more in the event loop, False when the client left or missed its deadline."""
        if not isinstance(conn.parser.unreader, DeadlineUnreader):
            conn.parser.unreader = DeadlineUnreader(conn.sock)
        unreader = conn.parser.unreader
        now = time.monotonic()
        if getattr(conn, "request_deadline", None) is None:
            conn.request_deadline = now + self.read_timeout
        unreader.deadline = conn.request_deadline
        # What earlier visits gathered, and anything a client pipelined behind its last request.
        data = bytearray(unreader.take_buffered())
        conn.sock.setblocking(False)
        try:
            while not request_complete(data, self.body_limit):
                if now >= conn.request_deadline:
                    unreader.expired = True
                    return False
                try:
                    piece = conn.sock.recv(_RECV_SIZE)
                except BlockingIOError:
                    unreader.unread(bytes(data))
                    return _DEFER
                if not piece:
                    return False
                data += piece
                now = time.monotonic()
        finally:
            conn.sock.setblocking(True)
        unreader.unread(bytes(data))
        return True

    def finish_request(self, conn: Any, fs: Any) -> None:
        """Park a connection that waits for bytes until its deadline; close the others at once."""
        result = None if fs.cancelled() or fs.exception() is not None else fs.result()
        if result is _DEFER and not self.alive:
            result = None     # stopping: a request not yet sent will not be served
        if result is _DEFER or result:
            super().finish_request(conn, fs)
            if result is _DEFER and getattr(conn, "request_deadline", None) is not None:
                conn.timeout = conn.request_deadline
                if not conn.parser.unreader.buf.getvalue():
                    # Not a byte yet: an idle connection gets what an idle kept-alive one gets.
                    conn.timeout = min(conn.timeout, time.monotonic() + self.cfg.keepalive)
            return
        # gunicorn would close gracefully here, reading on for up to 2 s in the event loop;
        # handle() already lingered where that is owed (in its own thread).
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self) -> None:
        """Close every parked connection whose deadline has passed."""
        # Deadlines run from each request's start, not from when it was parked, so the queue
        # is not in deadline order and has to be scanned whole (it is short and this is cheap).
        now = time.monotonic()
        for conn in [c for c in self.pending_conns if c.timeout <= now]:
            self.pending_conns.remove(conn)
            try:
                self.poller.unregister(conn.sock)
            except (OSError, KeyError, ValueError):
                pass
            self.nr_conns -= 1
            conn.close()
