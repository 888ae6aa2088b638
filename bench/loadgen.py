"""A small, cheap HTTP/1.1 load generator on asyncio streams (standard library only).

It shares the machine's cores with the server it measures, so it does as little as it can per
request: every request is pre-encoded bytes, each client keeps one keep-alive connection, and a
response is read with `readuntil`/`readexactly` on a StreamReader with a large buffer. Bodies are
Content-Length, chunked, or read to the close; an SSE stream (`text/event-stream`) must end with
`data: [DONE]` or the request counts as an error.

Per request it records the start, the time to the first body byte (for a chat stream: the role
chunk), the total latency, the status, the bytes received and the error if any. Clients run for a
fixed measurement window (after a ramp and a warm-up, so the steady state is measured) or for a
fixed number of requests.

    python -m bench.loadgen http://127.0.0.1:8000/healthz -c 16 -d 5
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable
from urllib.parse import urlsplit

READ_LIMIT = 1 << 20          # StreamReader buffer: one 150 KB image needs no pause/resume
MAX_HEADER_BYTES = 64 << 10
DONE_MARK = b"data: [DONE]"


# -------------------------------------------------------------------------------------------
# Requests and responses.
# -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Request:
    """One HTTP request, encoded once and sent many times."""

    method: str
    path: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    def encode(self, host: str) -> bytes:
        lines = [f"{self.method} {self.path} HTTP/1.1", f"Host: {host}"]
        names = {name.lower() for name, _ in self.headers}
        lines += [f"{name}: {value}" for name, value in self.headers]
        if self.body or self.method in ("POST", "PUT", "PATCH"):
            if "content-length" not in names:
                lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


def json_post(path: str, payload: dict, *, token: str | None = None,
              extra: Iterable[tuple[str, str]] = ()) -> Request:
    """A JSON POST, with `Authorization: Bearer <token>` when a token is given."""
    headers = [("Content-Type", "application/json")]
    if token:
        headers.append(("Authorization", f"Bearer {token}"))
    headers += list(extra)
    return Request("POST", path, tuple(headers), json.dumps(payload).encode())


@dataclass
class Response:
    """What one exchange produced."""

    status: int
    headers: dict[str, str]          # lower-case names; repeated headers joined with ", "
    body: bytes
    ttfb: float                      # seconds from send to the first body byte (or headers)
    latency: float                   # seconds from send to the end of the body
    done_seen: bool = False          # an SSE stream ended with data: [DONE]
    closes: bool = False             # the server will close the connection after it
    matched: bool = True             # the body contained the `expect` bytes (if any were given)


class ProtocolError(Exception):
    """The server's answer is not well-formed HTTP/1.1 (or an SSE stream lacks [DONE])."""


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bool]:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise ConnectionResetError("connection closed before a response") from None
        raise ProtocolError("connection closed inside the response head") from None
    except asyncio.LimitOverrunError:
        raise ProtocolError("response head too long") from None
    if len(head) > MAX_HEADER_BYTES:
        raise ProtocolError("response head too long")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"bad status line {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise ProtocolError(f"bad header line {line!r}")
        name = name.strip().lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    http10 = parts[0] == "HTTP/1.0"
    conn = headers.get("connection", "").lower()
    closes = "close" in conn or (http10 and "keep-alive" not in conn)
    return int(parts[1]), headers, closes


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes,
                   method: str = "GET", *, keep_body: bool = True,
                   expect: bytes | None = None) -> Response:
    """Send one encoded request and read its whole response from a connection.

    `keep_body=False` still reads every byte but keeps only what an SSE check needs. `expect`:
    bytes the body must contain (looked for in each chunk as it arrives); `Response.matched`.
    """
    started = time.perf_counter()
    writer.write(data)
    status, headers, closes = await _read_head(reader)
    first: float | None = None
    sse = headers.get("content-type", "").startswith("text/event-stream")
    chunks: list[bytes] = []
    tail = b""                                        # last bytes of an SSE body, for [DONE]
    matched = expect is None
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        pass
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            line = await reader.readuntil(b"\r\n")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size line {line[:40]!r}") from None
            if size == 0:
                # Trailers (if any) end with an empty line.
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                break
            chunk = await reader.readexactly(size + 2)
            if first is None:
                first = time.perf_counter()
            if chunk[-2:] != b"\r\n":
                raise ProtocolError("chunk not followed by CRLF")
            if not matched and expect in chunk:
                matched = True
            if keep_body:
                chunks.append(chunk[:-2])
            elif sse:
                tail = (tail + chunk[:-2])[-64:]
    elif "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError:
            raise ProtocolError("bad Content-Length") from None
        if length:
            # The first byte is awaited on its own so that TTFB means the first body byte.
            chunk = await reader.readexactly(1)
            first = time.perf_counter()
            rest = await reader.readexactly(length - 1) if length > 1 else b""
            if not matched and expect in rest:
                matched = True
            if keep_body:
                chunks += [chunk, rest]
            elif sse:
                tail = (chunk + rest)[-64:]
    else:                                             # no framing: the body runs to the close
        closes = True
        while True:
            chunk = await reader.read(READ_LIMIT)
            if not chunk:
                break
            if first is None:
                first = time.perf_counter()
            if not matched and expect in chunk:
                matched = True
            if keep_body:
                chunks.append(chunk)
            elif sse:
                tail = (tail + chunk)[-64:]
    ended = time.perf_counter()
    body = b"".join(chunks)
    done = sse and DONE_MARK in (body[-64:] if keep_body else tail)
    return Response(status, headers, body, (first or ended) - started, ended - started,
                    done_seen=done, closes=closes, matched=matched)


async def fetch(url: str, request: Request | None = None, *, timeout: float = 30.0) -> Response:
    """One request on a fresh connection (for set-up and checks, not for load)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = request or Request("GET", parts.path or "/")
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port, limit=READ_LIMIT)
        try:
            return await exchange(reader, writer, request.encode(f"{host}:{port}"),
                                  request.method)
        finally:
            writer.close()


# -------------------------------------------------------------------------------------------
# Load.
# -------------------------------------------------------------------------------------------

@dataclass
class Record:
    """One request of a load run (times in seconds; start relative to the run's start)."""

    start: float
    latency: float
    ttfb: float
    status: int                 # 0 when no response arrived
    error: str | None = None
    nbytes: int = 0
    client: int = 0


@dataclass
class LoadResult:
    """All records of a run, and the measurement window they are judged in."""

    records: list[Record]
    window: tuple[float, float]          # [from, to) in run time; completions inside count
    clients: int
    wall: float                          # seconds the whole run took
    loadgen_cpu: float                   # CPU seconds this process spent during the run
    bodies: list[bytes] = field(default_factory=list)
    body_statuses: list[int] = field(default_factory=list)   # the status of each kept body

    @property
    def measured(self) -> list[Record]:
        lo, hi = self.window
        return [r for r in self.records if lo <= r.start + r.latency < hi]

    @property
    def errors(self) -> list[Record]:
        return [r for r in self.records if r.error]

    def summary(self) -> dict:
        """Throughput over the window and percentiles of the requests that completed in it."""
        measured = self.measured
        ok = [r for r in measured if not r.error]
        span = self.window[1] - self.window[0]
        lat = sorted(r.latency for r in ok)
        ttfb = sorted(r.ttfb for r in ok)
        errors: dict[str, int] = {}
        for r in self.errors:
            errors[r.error] = errors.get(r.error, 0) + 1
        return {
            "clients": self.clients,
            "requests": len(self.records),
            "measured": len(measured),
            "window_s": span,
            "throughput": len(ok) / span if span > 0 else 0.0,
            "errors": sum(errors.values()),
            "error_kinds": errors,
            "latency": percentiles(lat),
            "ttfb": percentiles(ttfb),
            "bytes": sum(r.nbytes for r in ok),
            "loadgen_cpu_s": self.loadgen_cpu,
            "wall_s": self.wall,
        }


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of sorted values, linearly interpolated (numpy's default)."""
    if not sorted_values:
        return math.nan
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    pos = (len(sorted_values) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def percentiles(sorted_values: list[float], qs: Iterable[float] = (50, 90, 99)) -> dict:
    """{"p50": ..., "p90": ..., "p99": ..., "max": ...} of sorted values (NaN when empty)."""
    out = {f"p{q:g}": percentile(sorted_values, q) for q in qs}
    out["max"] = sorted_values[-1] if sorted_values else math.nan
    return out


async def run_load(url: str, requests: Callable[[int], Request] | Request, *, clients: int,
                   duration: float | None = None, total: int | None = None,
                   warmup: float = 0.0, ramp: float = 0.0, timeout: float = 30.0,
                   ok_status: Iterable[int] = (200,), keep_bodies: int = 0,
                   drain: float = 0.0, expect: bytes | None = None,
                   max_seconds: float = 600.0) -> LoadResult:
    """Run `clients` keep-alive clients against `url` (only scheme/host/port are used).

    Either `duration`: clients start spread over `ramp` seconds, run `warmup` seconds, then the
    measurement window of `duration` seconds; requests in flight at its end get `drain` more
    seconds and are then abandoned (they never count: only completions inside the window do).
    Or `total`: exactly that many requests, the window being the whole run.
    `requests(i)` gives the i-th request (or one Request is sent every time). A response counts
    as an error when its status is not in `ok_status`, when an SSE stream lacks `data: [DONE]`,
    or when a 2xx body lacks `expect` (a failure reported inside a 200 stream). Every request
    ends within `timeout`, and the whole run within `max_seconds`.
    """
    if (duration is None) == (total is None):
        raise ValueError("give exactly one of duration or total")
    if clients < 1:
        raise ValueError("clients must be at least 1")
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    hostport = f"{host}:{port}"
    if isinstance(requests, Request):
        one = requests
        requests = lambda i: one  # noqa: E731
    cache: dict[Request, bytes] = {}
    ok = frozenset(ok_status)
    records: list[Record] = []
    bodies: list[bytes] = []
    body_statuses: list[int] = []
    counter = itertools.count()
    loop = asyncio.get_running_loop()
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    if duration is not None:
        window = (ramp + warmup, ramp + warmup + duration)
        stop_at = window[1]
    else:
        window = (0.0, math.inf)
        stop_at = max_seconds
    hard_stop = t0 + max_seconds

    async def client(cid: int) -> None:
        if ramp:
            await asyncio.sleep(ramp * cid / clients)
        reader = writer = None
        try:
            while True:
                now = time.perf_counter()
                if now - t0 >= stop_at or now >= hard_stop:
                    return
                i = next(counter)
                if total is not None and i >= total:
                    return
                req = requests(i)
                data = cache.get(req)
                if data is None:
                    data = cache[req] = req.encode(hostport)
                start = time.perf_counter()
                rec = Record(start - t0, 0.0, 0.0, 0, client=cid)
                try:
                    async with asyncio.timeout(min(timeout, max(0.001, hard_stop - start))):
                        if writer is None:
                            reader, writer = await asyncio.open_connection(host, port,
                                                                           limit=READ_LIMIT)
                        keep = len(bodies) < keep_bodies
                        resp = await exchange(reader, writer, data, req.method, keep_body=keep,
                                              expect=expect)
                    rec.status, rec.ttfb = resp.status, resp.ttfb
                    rec.latency = time.perf_counter() - start     # includes a reconnect
                    rec.nbytes = len(resp.body)
                    if keep and len(bodies) < keep_bodies:
                        bodies.append(resp.body)
                        body_statuses.append(resp.status)
                    if resp.status not in ok:
                        rec.error = f"HTTP {resp.status}"
                    elif resp.headers.get("content-type", "").startswith("text/event-stream") \
                            and not resp.done_seen:
                        rec.error = "stream without [DONE]"
                    elif not resp.matched and 200 <= resp.status < 300:
                        rec.error = "unexpected body"
                    if resp.closes:
                        writer.close()
                        reader = writer = None
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                        ProtocolError, TimeoutError) as exc:
                    rec.latency = time.perf_counter() - start
                    rec.ttfb = rec.ttfb or rec.latency
                    rec.error = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
                    if writer is not None:
                        writer.close()
                    reader = writer = None
                records.append(rec)
        finally:
            if writer is not None:
                writer.close()

    tasks = [loop.create_task(client(c)) for c in range(clients)]
    limit = min(stop_at + drain, max_seconds) if duration is not None else max_seconds
    done, pending = await asyncio.wait(tasks,
                                       timeout=max(0.0, limit - (time.perf_counter() - t0)))
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=5.0)
    for task in done:
        if task.exception() is not None:       # a bug in a client, not a server failure
            raise task.exception()
    wall = time.perf_counter() - t0
    if total is not None:
        window = (0.0, wall + 1e-9)
    records.sort(key=lambda r: r.start)
    return LoadResult(records, window, clients, wall, time.process_time() - cpu0, bodies,
                      body_statuses)


# -------------------------------------------------------------------------------------------
# Command line.
# -------------------------------------------------------------------------------------------

def format_summary(s: dict) -> str:
    lat, ttfb = s["latency"], s["ttfb"]
    ms = lambda v: "n/a" if math.isnan(v) else f"{v * 1000:.1f}"  # noqa: E731
    return (f"{s['clients']} clients: {s['throughput']:.1f} req/s over {s['window_s']:.1f} s "
            f"({s['measured']} measured, {s['requests']} total), errors {s['errors']} "
            f"{s['error_kinds'] or ''}\n"
            f"latency ms p50 {ms(lat['p50'])} p90 {ms(lat['p90'])} p99 {ms(lat['p99'])} "
            f"max {ms(lat['max'])}; TTFB p99 {ms(ttfb['p99'])}; "
            f"loadgen CPU {s['loadgen_cpu_s']:.2f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("-c", "--clients", type=int, default=16)
    parser.add_argument("-d", "--duration", type=float, default=None, help="window seconds")
    parser.add_argument("-n", "--requests", type=int, default=None, help="total requests")
    parser.add_argument("--warmup", type=float, default=0.0)
    parser.add_argument("--ramp", type=float, default=0.0)
    parser.add_argument("-m", "--method", default=None)
    parser.add_argument("-H", "--header", action="append", default=[], help="'Name: value'")
    parser.add_argument("--data", default=None, help="request body (implies POST)")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    if args.duration is None and args.requests is None:
        args.duration = 10.0
    parts = urlsplit(args.url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = tuple((n.strip(), v.strip()) for n, _, v in (h.partition(":") for h in args.header))
    body = args.data.encode() if args.data is not None else b""
    method = args.method or ("POST" if args.data is not None else "GET")
    result = asyncio.run(run_load(args.url, Request(method, path, headers, body),
                                  clients=args.clients, duration=args.duration,
                                  total=args.requests, warmup=args.warmup, ramp=args.ramp,
                                  timeout=args.timeout))
    print(format_summary(result.summary()))


if __name__ == "__main__":
    main()
