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
import ipaddress
import logging
import os
import re
import selectors
import socket
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

from gunicorn.http.errors import (
    ChunkMissingTerminator,
    InvalidChunkExtension,
    InvalidChunkSize,
    LimitRequestHeaders,
)
from gunicorn.http.unreader import SocketUnreader
from gunicorn.workers.gthread import _DEFER, TConn, ThreadWorker

from .bodies import gather_limit
from .config import Config

log = logging.getLogger(__name__)

# Requests whose header block is larger are handed to gunicorn's parser, which answers them
# with its own limits; gathering stops there so one connection cannot hold much memory.
HEADER_GATHER_LIMIT = 64 * 1024
# A chunk-size line and a trailer section are bounded like a header line and a header block.
CHUNK_LINE_LIMIT = 8190
TRAILER_LIMIT = HEADER_GATHER_LIMIT
# How long the event loop keeps reading (and dropping) what a client still sends after an answer
# that closed its connection: nginx's lingering_timeout. A client that refused a 20 MB upload
# still has most of it in flight; closing with unread data would reset the connection, and
# most clients (requests, curl) would then report a reset instead of the 413.
CLOSE_LINGER = 5.0
# One client address may hold at most this share of a worker's connections (worker_connections,
# 1000 by default: 125 each). On 2 workers, 2,100 slow connections from one address took every
# slot and 7 of 8 /healthz probes failed; bounded, 250 are held and /healthz answers.
CLIENT_SHARE = 8
_RECV_SIZE = 64 * 1024
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
# Returned by handle(): answered, connection to be closed; the event loop lingers on it.
_LINGER = object()


class GatheredUnreader(SocketUnreader):
    """gunicorn's socket reader, except that it never reads the socket: the parser gets the
    bytes this worker gathered, then the end of the input."""

    def chunk(self, size_hint: int | None = None) -> bytes:
        return b""


@dataclass
class Head:
    """What the gatherer needs from a request's header block."""

    lines: list[bytes]              # the request line, then each header line
    http11: bool
    path: str                       # the target's path, undecoded (latin-1)
    length: int | None              # Content-Length
    chunked: bool
    expects_continue: bool
    multipart: bool

    def rebuilt(self, length: int | None) -> bytes:
        """The header block without the framing this worker took over (Transfer-Encoding,
        Expect), with `length` as the Content-Length when given."""
        dropped = {b"transfer-encoding", b"expect"} if self.http11 else {b"transfer-encoding"}
        if length is not None:
            dropped.add(b"content-length")
        kept = [line for line in self.lines[1:]
                if line.partition(b":")[0].lower() not in dropped]
        if length is not None:
            kept.append(b"Content-Length: %d" % length)
        return b"\r\n".join([self.lines[0], *kept]) + b"\r\n\r\n"


def parse_head(block: bytes) -> Head | None:
    """The head of a request this worker can gather; None when gunicorn's parser is to judge it
    (it refuses all of these: a malformed line, conflicting or unknown framing, an Expect other
    than 100-continue)."""
    lines = block.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[2] not in (b"HTTP/1.1", b"HTTP/1.0"):
        return None
    http11 = parts[2] == b"HTTP/1.1"
    lengths: list[bytes] = []
    codings: list[bytes] = []
    expect: list[bytes] = []
    content_type = b""
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            return None                 # obs-fold, a space before the colon, no colon
        name, value = name.lower(), value.strip(b" \t")
        if name == b"content-length":
            lengths.append(value)
        elif name == b"transfer-encoding":
            codings.append(value)
        elif name == b"expect":
            expect.append(value)
        elif name == b"content-type":
            content_type = value
    if len(lengths) > 1 or (lengths and not lengths[0].isdigit()):
        return None
    chunked = bool(codings)
    if chunked and (not http11 or lengths or len(codings) > 1
                    or codings[0].lower() != b"chunked"):
        return None                     # HTTP/1.0, Content-Length too, or stacked codings
    expects_continue = False
    if expect and http11:               # HTTP/1.0 expectations are ignored (RFC 9110 10.1.1)
        if len(expect) > 1 or expect[0].lower() != b"100-continue":
            return None                 # 417 from the parser
        expects_continue = True
    target = parts[1]
    if target[:1] != b"/" and b"://" in target:
        target = b"/" + target.split(b"://", 1)[1].partition(b"/")[2]   # absolute form
    path = target.split(b"?", 1)[0].split(b"#", 1)[0].decode("latin-1")
    multipart = content_type.split(b";", 1)[0].strip().lower() == b"multipart/form-data"
    return Head(lines, http11, path, int(lengths[0]) if lengths else None, chunked,
                expects_continue, multipart)


class ChunkedBody:
    """A chunked body decoded as it arrives, up to `limit` bytes; framing errors raise gunicorn's
    own exceptions, which gunicorn answers with 400."""

    def __init__(self, limit: int):
        self.limit = limit
        self.body = bytearray()
        self.done = False
        self.over = False              # more than `limit` bytes: decoding stopped
        self.rest = b""                # bytes after the body (a pipelined request)
        self._state = "size"
        self._left = 0
        self._trailers = 0

    def feed(self, data: bytes) -> None:
        """Decode what `data` adds; keep an incomplete line for the next call."""
        buf, i = self.rest + data, 0
        while i < len(buf) and not (self.done or self.over):
            if self._state == "data":
                take = min(self._left, len(buf) - i)
                self.body += buf[i:i + take]
                i += take
                self._left -= take
                self.over = len(self.body) > self.limit
                if not self._left:
                    self._state = "end"
            elif self._state == "end":
                if len(buf) - i < 2:
                    break
                if buf[i:i + 2] != b"\r\n":
                    raise ChunkMissingTerminator(buf[i:i + 2])
                i += 2
                self._state = "size"
            else:
                end = buf.find(b"\r\n", i)
                bound = CHUNK_LINE_LIMIT if self._state == "size" else TRAILER_LIMIT
                if end < 0:
                    if len(buf) - i > bound:
                        raise (InvalidChunkSize(b"chunk size line too long")
                               if self._state == "size" else
                               LimitRequestHeaders("limit request trailer section size"))
                    break
                line, i = buf[i:end], end + 2
                if self._state == "size":
                    self._size(line)
                else:
                    self._trailer(line)
        self.rest = buf[i:]

    def _size(self, line: bytes) -> None:
        size, semicolon, extension = line.partition(b";")
        if semicolon:
            if b"\r" in extension:
                raise InvalidChunkExtension("bare CR not allowed")
            size = size.rstrip(b" \t")
        if not _HEX.fullmatch(size):
            raise InvalidChunkSize(size[:32])
        self._left = int(size, 16)
        self._state = "data" if self._left else "trailers"

    def _trailer(self, line: bytes) -> None:
        # Trailer fields are dropped: the app reads none, and forwarding them as headers would
        # let a client add headers after the ones a proxy checked.
        self._trailers += len(line) + 2
        if self._trailers > TRAILER_LIMIT:
            raise LimitRequestHeaders("limit request trailer section size")
        self.done = not line


class Gathering:
    """One request being gathered: the bytes so far, and how its body is framed. Holds no socket:
    the worker feeds it what arrives and acts on `step()`."""

    MORE, CONTINUE, READY = "more", "continue", "ready"

    def __init__(self, limit_of: Callable[[str, bool], int]):
        self.limit_of = limit_of
        self.data = bytearray()         # the head, then the body as sent (Content-Length)
        self.head: Head | None = None
        self.chunks: ChunkedBody | None = None
        self.cut = False                # the body was not gathered: close after the answer
        self.error: Exception | None = None   # framing gunicorn answers with 400
        self._request: bytes | None = None
        self._continue = False
        self._searched = 0              # how far the head's end was looked for
        self._body_at = 0               # where the body starts in `data`

    @property
    def started(self) -> bool:
        return bool(self.data) or self.head is not None

    def feed(self, data: bytes) -> None:
        if self.chunks is not None:
            try:
                self.chunks.feed(data)
            except (InvalidChunkSize, ChunkMissingTerminator, InvalidChunkExtension,
                    LimitRequestHeaders) as exc:
                self.error = exc
        else:
            self.data += data

    def step(self) -> str:
        """MORE: wait for bytes; CONTINUE: send "100 Continue", then step again; READY: hand
        `request()` (or `error`) to gunicorn."""
        if self._request is not None or self.error is not None:
            return self.READY
        if self.head is None:
            # Only the last bytes searched can start an end that new bytes complete.
            end = self.data.find(b"\r\n\r\n", max(0, self._searched - 3), HEADER_GATHER_LIMIT)
            if end < 0:
                # Too large, or bare LF line ends: gunicorn's parser refuses them now.
                if (len(self.data) >= HEADER_GATHER_LIMIT or self.data.find(
                        b"\n\n", max(0, self._searched - 1), HEADER_GATHER_LIMIT) >= 0):
                    return self._hand_over(bytes(self.data), cut=True)
                self._searched = len(self.data)
                return self.MORE
            head = parse_head(bytes(self.data[:end]))
            if head is None:
                return self._hand_over(bytes(self.data), cut=True)
            self.head, self._body_at = head, end + 4
            body = bytes(self.data[end + 4:])
            del self.data[end + 4:]
            limit = self.limit_of(head.path, head.multipart)
            if head.length is not None and head.length > limit:
                return self._refuse()
            if head.chunked:
                self.chunks = ChunkedBody(limit)
            # A client that sent body bytes already does not wait (RFC 9110 section 10.1.1),
            # and one without a body has nothing to continue with.
            self._continue = (head.expects_continue and not body
                              and (head.chunked or bool(head.length)))
            self.feed(body)
            return self.step()
        head = self.head
        if self._continue:
            self._continue = False
            return self.CONTINUE
        if self.chunks is not None:
            if self.chunks.over:
                return self._refuse()
            if not self.chunks.done:
                return self.MORE
            body = bytes(self.chunks.body)
            return self._hand_over(head.rebuilt(len(body)) + body + self.chunks.rest)
        if len(self.data) < self._body_at + (head.length or 0):
            return self.MORE
        return self._hand_over(head.rebuilt(None) + bytes(self.data[self._body_at:]))

    def request(self) -> bytes:
        assert self._request is not None
        return self._request

    def _refuse(self) -> str:
        """Hand over the head alone, declaring a length over the limit: the app refuses it
        without reading (413, or 401 first), and the connection closes."""
        assert self.head is not None
        if self.head.length is not None:
            declared = self.head.length
        else:
            declared = self.chunks.limit + 1 if self.chunks else 0
        return self._hand_over(self.head.rebuilt(declared), cut=True)

    def _hand_over(self, request: bytes, *, cut: bool = False) -> str:
        self._request, self.cut = request, cut
        self.data = bytearray()
        self.chunks = None
        return self.READY


def client_key(addr: Any) -> str | None:
    """Whom a connection counts against: its IPv4 address, or its IPv6 /64 (what one host
    usually has); None for a Unix socket."""
    if not isinstance(addr, tuple) or not addr:
        return None
    try:
        ip = ipaddress.ip_address(addr[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


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
        return _LINGER

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
                    if conn.sock.send(_CONTINUE) != len(_CONTINUE):
                        return False    # 25 bytes on an idle connection: only if it is broken
                    continue
                if now >= conn.request_deadline:
                    return False
                try:
                    piece = conn.sock.recv(_RECV_SIZE)
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
        if result is _LINGER:
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
                data = conn.sock.recv(_RECV_SIZE)
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
            try:
                self.poller.unregister(conn.sock)
            except (OSError, KeyError, ValueError):
                pass
            self.nr_conns -= 1
            conn.close()
        for conn in [c for c in self.lingering if c.timeout <= now or not self.alive]:
            self._end_linger(conn)
