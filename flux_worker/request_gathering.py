"""Gathering a request before a thread serves it: the parsing half of `gunicorn_worker.py`.

Plain functions and small classes over bytes already received: the head (`parse_head`), a chunked
body (`ChunkedBody`), the state of one connection's request (`Gathering`), and the key that
bounds one client address's connections (`client_key`). Nothing here waits on a socket.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Callable

from gunicorn.http.errors import (
    ChunkMissingTerminator,
    InvalidChunkExtension,
    InvalidChunkSize,
    LimitRequestHeaders,
)
from gunicorn.http.unreader import SocketUnreader

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
RECV_SIZE = 64 * 1024
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
# Returned by handle(): answered, connection to be closed; the event loop lingers on it.
LINGER = object()


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
