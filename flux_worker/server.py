"""gunicorn's threaded worker, made safe against slow clients (slowloris).

gunicorn's `gthread` worker hands a connection to a thread as soon as its first bytes arrive;
the thread then blocks reading the request head and body. 300 clients trickling a byte now and
then held every thread, and `/healthz` went unanswered. `BufferedThreadWorker` reads each
request in the worker's main loop instead, with non-blocking sockets, and gives it to a thread
only when its head and body are complete, so a slow client costs a buffer, not a thread:

* the head and body must arrive within READ_TIMEOUT seconds in total, or the client gets a
  408 and the connection closes (one deadline for the whole request, not one per read);
* a body is buffered up to MAX_BODY_BYTES; a larger declared one goes to a thread at once, and
  the app answers 413 without reading it;
* what a thread still reads itself (a body after `Expect: 100-continue`, bytes past a cap) is
  bounded by the same deadline.

Checked against gunicorn 27's gthread.py: connections reach threads only through `enqueue_req`
(new, kept-alive and deferred ones alike), and a thread's reads go through the parser's
`SocketUnreader.sock`, which is wrapped here. gunicorn.conf.py selects this worker.
"""

from __future__ import annotations

import os
import selectors
import socket
import time
from collections import deque
from functools import partial

from gunicorn.http.unreader import SocketUnreader
from gunicorn.workers.gthread import ThreadWorker

READ_TIMEOUT = 30.0          # seconds for a whole request (head and body) to arrive
HEAD_LIMIT = 64 * 1024       # a head longer than this goes to the parser, which refuses it
_RECV = 64 * 1024
_TIMEOUT_TEXT = b"The request did not arrive in time; send it again.\n"
_TIMEOUT_ANSWER = (b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
                   b"Content-Type: text/plain\r\nContent-Length: "
                   + str(len(_TIMEOUT_TEXT)).encode() + b"\r\n\r\n" + _TIMEOUT_TEXT)


def _body_limit() -> int:
    """MAX_BODY_BYTES as the app reads it (the app stops the start when it is malformed)."""
    raw = os.environ.get("MAX_BODY_BYTES", "").strip()
    return int(raw) if raw.isdigit() else 1 << 20


class RequestState:
    """One request being read in the main loop: its bytes and how far they have been looked at."""

    __slots__ = ("conn", "buf", "deadline", "scanned", "body_start", "needed", "chunk_at",
                 "done")

    def __init__(self, conn, buf: bytes, deadline: float):
        self.conn = conn
        self.buf = bytearray(buf)
        self.deadline = deadline
        self.scanned = 0             # bytes searched for the end of the head
        self.body_start = -1         # where the body starts, once the head is complete
        self.needed = -1             # total bytes for a Content-Length body
        self.chunk_at = -1           # next chunk-size line of a chunked body
        self.done = False


def request_complete(state: RequestState, body_limit: int) -> bool:
    """Tell whether a thread can take the request now: complete, or beyond what is buffered.

    Incremental: each call looks only at bytes it has not seen, so a client sending one byte
    per packet costs linear time in total.
    """
    buf = state.buf
    if state.body_start < 0:
        end = buf.find(b"\r\n\r\n", max(0, state.scanned - 3))
        state.scanned = len(buf)
        if end < 0:
            return len(buf) > HEAD_LIMIT
        state.body_start = end + 4
        kind, length = _framing(bytes(buf[:end]))
        if kind == "now":
            return True
        if kind == "length":
            if length > body_limit:
                return True          # the app answers 413 without reading it
            state.needed = state.body_start + length
        else:
            state.chunk_at = state.body_start
    if state.needed >= 0:
        return len(buf) >= state.needed
    return _chunks_complete(state, body_limit)


def _framing(head: bytes) -> tuple[str, int]:
    """("length", n), ("chunked", 0) or ("now", 0) for a request head (no body, or odd)."""
    length: int | None = None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"expect" and value == b"100-continue":
            return "now", 0          # the client waits for gunicorn's 100 Continue
        if name == b"transfer-encoding":
            return ("chunked", 0) if value.endswith(b"chunked") else ("now", 0)
        if name == b"content-length":
            if not value.isdigit() or (length is not None and int(value) != length):
                return "now", 0      # malformed: the parser refuses it with a 400
            length = int(value)
    return ("length", length) if length else ("now", 0)


def _chunks_complete(state: RequestState, body_limit: int) -> bool:
    buf = state.buf
    while True:
        line_end = buf.find(b"\r\n", state.chunk_at)
        if line_end < 0:
            return len(buf) - state.chunk_at > 1024     # no size line: let the parser refuse it
        size_text = bytes(buf[state.chunk_at:line_end]).split(b";")[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            return True
        if size == 0:
            # The last chunk, then trailers up to an empty line.
            return buf.find(b"\r\n\r\n", line_end) >= 0
        following = line_end + 2 + size + 2
        if following - state.body_start > body_limit:
            return True              # the app refuses it with 413
        if following > len(buf):
            return False
        state.chunk_at = following


class DeadlineSocket:
    """The socket as a parser reads it: every recv ends by the request's deadline."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.deadline = time.monotonic() + READ_TIMEOUT

    def recv(self, size: int) -> bytes:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("the request did not arrive within READ_TIMEOUT")
        before = self.sock.gettimeout()
        self.sock.settimeout(left if before is None else min(before, left))
        try:
            return self.sock.recv(size)
        finally:
            self.sock.settimeout(before)

    def gettimeout(self):
        return self.sock.gettimeout()

    def settimeout(self, value) -> None:
        self.sock.settimeout(value)


def client_gone(sock: socket.socket | None) -> bool:
    """Tell whether the client of a streamed answer has closed its connection.

    Peeks without consuming: end of file or a reset means gone; bytes (a pipelined request)
    or nothing yet mean still there. A client that half-closes its sending side after the
    request counts as gone (no HTTP client of this API does that).
    """
    if sock is None:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True


class BufferedThreadWorker(ThreadWorker):
    """gthread, with each request read whole in the main loop before a thread takes it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.body_limit = _body_limit()
        self.reading: deque[RequestState] = deque()   # in deadline order (fixed timeout)

    def enqueue_req(self, conn):
        """Read the request in the main loop first; a thread only gets complete requests."""
        if getattr(conn, "flux_ready", False):
            conn.flux_ready = False
            super().enqueue_req(conn)
            return
        held = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        state = RequestState(conn, held, time.monotonic() + READ_TIMEOUT)
        if held and request_complete(state, self.body_limit):
            self._hand_off(state)
            return
        conn.sock.setblocking(False)
        self.reading.append(state)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, state))

    def _on_readable(self, state: RequestState, sock) -> None:
        try:
            data = sock.recv(_RECV)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(state, answer=False)
            return
        state.buf += data
        if request_complete(state, self.body_limit):
            self.poller.unregister(sock)
            state.done = True
            self._hand_off(state)

    def _hand_off(self, state: RequestState) -> None:
        conn = state.conn
        conn.flux_prefetched = bytes(state.buf)
        conn.flux_deadline = state.deadline
        conn.flux_ready = True
        self.enqueue_req(conn)

    def _drop(self, state: RequestState, *, answer: bool) -> None:
        """Close a connection whose request did not come (in time, or at all)."""
        state.done = True
        sock = state.conn.sock
        try:
            self.poller.unregister(sock)
        except (KeyError, ValueError, OSError):
            pass
        if answer:
            try:
                sock.send(_TIMEOUT_ANSWER)   # best effort: the socket is non-blocking
            except OSError:
                pass
        self.nr_conns -= 1
        state.conn.close()

    def murder_pending(self):
        """Also close connections whose request did not arrive within READ_TIMEOUT."""
        super().murder_pending()
        now = time.monotonic()
        while self.reading and (self.reading[0].done or self.reading[0].deadline <= now):
            state = self.reading.popleft()
            if not state.done:
                self._drop(state, answer=True)

    def handle(self, conn):
        """Feed the prefetched bytes to gunicorn's parser, its further reads bounded too."""
        data = conn.__dict__.pop("flux_prefetched", b"")
        deadline = conn.__dict__.pop("flux_deadline", time.monotonic() + READ_TIMEOUT)
        conn.sock.setblocking(True)
        conn.init()
        unreader = conn.parser.unreader
        if isinstance(unreader, SocketUnreader):
            if not isinstance(unreader.sock, DeadlineSocket):
                unreader.sock = DeadlineSocket(conn.sock)
            unreader.sock.deadline = deadline
        if data:
            unreader.unread(data)
        return super().handle(conn)
