"""A functional smoke test of bench/loadgen.py against a tiny raw HTTP/1.1 server (no timings)."""

from __future__ import annotations

import asyncio
import math
import socket
import socketserver
import threading

import pytest

from bench import loadgen
from bench.loadgen import Request, fetch, percentile, percentiles, run_load

IMAGE = bytes(range(256)) * 600                      # 153,600 bytes, like the benchmark image
SSE_EVENTS = [b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n',
              b'data: {"choices":[{"delta":{"content":"hello"}}]}\n\n',
              b"data: [DONE]\n\n"]


def _chunked(pieces: list[bytes]) -> bytes:
    return b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def _answer(path: str) -> tuple[bytes, bool]:
    """(raw response, close afterwards) for each test path."""
    if path == "/cl":
        return (b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\n"
                b"Content-Length: %d\r\n\r\n" % len(IMAGE) + IMAGE, False)
    if path == "/chunked":
        return (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                + _chunked([b"hello ", b"chunked ", b"world"]), False)
    if path == "/sse":
        return (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n" + _chunked(SSE_EVENTS), False)
    if path == "/sse-cut":                            # a stream that never says [DONE]
        return (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n" + _chunked(SSE_EVENTS[:2]), False)
    if path == "/not-modified":
        return b'HTTP/1.1 304 Not Modified\r\nETag: "k"\r\n\r\n', False
    if path == "/to-close":                           # no framing: the body ends at the close
        return b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end", True
    if path == "/missing":
        return b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found", False
    return b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", False


class _Handler(socketserver.StreamRequestHandler):
    def handle(self):
        while True:
            line = self.rfile.readline(65536)
            if not line:
                return
            _method, path, _version = line.decode().split(" ")
            length = 0
            while (header := self.rfile.readline(65536)) not in (b"\r\n", b""):
                name, _, value = header.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            self.rfile.read(length)
            raw, close = _answer(path)
            self.wfile.write(raw)
            self.wfile.flush()
            if close:
                return


@pytest.fixture(scope="module")
def server():
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_content_length_body(server):
    resp = asyncio.run(fetch(server + "/cl"))
    assert resp.status == 200
    assert resp.body == IMAGE
    assert resp.headers["content-type"] == "image/jpeg"
    assert 0 <= resp.ttfb <= resp.latency


def test_chunked_body(server):
    resp = asyncio.run(fetch(server + "/chunked"))
    assert (resp.status, resp.body) == (200, b"hello chunked world")


def test_sse_stream_ends_with_done(server):
    resp = asyncio.run(fetch(server + "/sse", Request("POST", "/sse", body=b"{}")))
    assert resp.done_seen
    assert resp.body == b"".join(SSE_EVENTS)


def test_body_until_close_and_304(server):
    resp = asyncio.run(fetch(server + "/to-close"))
    assert (resp.body, resp.closes) == (b"until the end", True)
    resp = asyncio.run(fetch(server + "/not-modified"))
    assert (resp.status, resp.body) == (304, b"")


def test_load_run_counts_statuses_and_keeps_connections(server):
    paths = ["/cl", "/chunked", "/sse", "/to-close", "/not-modified", "/missing", "/sse-cut"]
    result = asyncio.run(run_load(
        server, lambda i: Request("GET", paths[i % len(paths)]), clients=3, total=70,
        ok_status=(200, 304), keep_bodies=70))
    assert len(result.records) == 70
    by_status = {}
    for rec in result.records:
        by_status[rec.status] = by_status.get(rec.status, 0) + 1
    assert by_status == {200: 50, 304: 10, 404: 10}
    summary = result.summary()
    assert summary["requests"] == 70
    assert summary["errors"] == 20
    assert summary["error_kinds"] == {"HTTP 404": 10, "stream without [DONE]": 10}
    assert summary["measured"] == 70
    assert sum(r.nbytes for r in result.records if r.error is None) == summary["bytes"]
    assert IMAGE in result.bodies
    assert b"".join(SSE_EVENTS) in result.bodies


def test_load_run_without_keeping_bodies_still_checks_sse(server):
    result = asyncio.run(run_load(
        server, lambda i: Request("GET", "/sse" if i % 2 else "/sse-cut"), clients=2, total=10))
    assert sorted(r.error or "" for r in result.records) == [""] * 5 + ["stream without [DONE]"] * 5
    assert result.bodies == []


def test_expected_bytes_in_a_2xx_body(server):
    """A failure reported inside a 200 answer (a stream's last chunk) must not count as success."""
    result = asyncio.run(run_load(
        server, lambda i: Request("GET", ["/chunked", "/cl", "/sse", "/missing"][i % 4]),
        clients=1, total=8, expect=b"world"))
    errors = [r.error for r in result.records]
    assert errors == [None, "unexpected body", "unexpected body", "HTTP 404"] * 2


def test_duration_mode_measures_a_window(server):
    result = asyncio.run(run_load(server, Request("GET", "/chunked"), clients=2, duration=0.3,
                                  warmup=0.1, ramp=0.05))
    assert result.window == pytest.approx((0.15, 0.45))
    summary = result.summary()
    assert summary["errors"] == 0
    assert 0 < summary["measured"] <= summary["requests"]
    assert summary["throughput"] == pytest.approx(summary["measured"] / 0.3)


def test_connection_refused_is_an_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = asyncio.run(run_load(f"http://127.0.0.1:{port}", Request("GET", "/"), clients=1,
                                  total=2, timeout=2))
    assert [r.status for r in result.records] == [0, 0]
    assert all(r.error == "ConnectionRefusedError" for r in result.records)


def test_request_encoding():
    raw = loadgen.json_post("/v1/chat/completions", {"a": 1}, token="sk-x").encode("h:1")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"POST /v1/chat/completions HTTP/1.1"
    assert b"Authorization: Bearer sk-x" in head
    assert b"Content-Length: 8" in head and body == b'{"a": 1}'


def test_percentiles():
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 100.0
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile(values, 90) == pytest.approx(90.1)
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile(values, 101)
    p = percentiles(values)
    assert (p["p50"], p["max"]) == (50.5, 100.0)


# --- bench/upstream.py, bench/imaging_bench.py and bench/compare.py on tiny settings ----------

@pytest.fixture(scope="module")
def upstream():
    from bench import upstream as fake

    fake.Handler.state = fake.State(latency=0.0, image="large", token="tok")
    srv = fake.Server(("127.0.0.1", 0), fake.Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def _image_of(body: bytes):
    import base64
    import io
    import json

    from PIL import Image

    return Image.open(io.BytesIO(base64.b64decode(json.loads(body)["result"]["image"])))


def test_lenient_upstream_answers_what_the_worker_and_the_service_send(upstream):
    run = "/client/v4/accounts/acct123/ai/run/@cf/black-forest-labs/flux-1-schnell"
    worker_body = {"prompt": "a cat", "num_steps": 4, "width": 768, "height": 512}
    resp = asyncio.run(fetch(upstream, loadgen.json_post(run, worker_body, token="tok")))
    assert resp.status == 200
    assert _image_of(resp.body).size == (1024, 1024)
    resp = asyncio.run(fetch(upstream, loadgen.json_post(run, {"prompt": "x"}, token="bad")))
    assert resp.status == 401
    resp = asyncio.run(fetch(upstream, loadgen.json_post(run, {"steps": 4}, token="tok")))
    assert resp.status == 400
    config = loadgen.json_post("/_bench/config", {"image": "small"})
    assert asyncio.run(fetch(upstream, config)).status == 200
    resp = asyncio.run(fetch(upstream, loadgen.json_post(run, {"prompt": "x"}, token="tok")))
    assert _image_of(resp.body).size == (512, 512)
    asyncio.run(fetch(upstream, loadgen.json_post("/_bench/config", {"image": "large"})))


def test_imaging_bench_measures_every_case(tmp_path):
    from bench import imaging_bench

    table = imaging_bench.cases_table(imaging_bench.make_sources(tmp_path), images=2, threads=2,
                                      module=None)
    rows = [line for line in table.splitlines()[2:] if line.startswith("| ")]
    assert len(rows) == len(imaging_bench.CASES)
    assert "(same bytes)" in rows[0]                     # 1:1 is passed on untouched
    assert all("(same bytes)" not in row for row in rows[1:])


def _row(key, *, cpu_ms=None, rps=1.0, p99=2.0, ttfb=0.01, errors=0, rss=100.0):
    from bench.run import Row

    summary = {"throughput": rps, "latency": {"p50": p99, "p90": p99, "p99": p99},
               "ttfb": {"p99": ttfb}, "errors": errors, "requests": 100}
    return Row(key, key, summary, cpu_ms=cpu_ms, rss_mib=rss, pss_mib=rss)


def _figures(good: bool) -> dict:
    f = 1.0 if good else 3.0
    rows = [_row("cpu11", cpu_ms=2.0), _row("w_cpu11", cpu_ms=4.0 * (1 if good else 0.5)),
            _row("cpu169", cpu_ms=2.5 * f), _row("cpu32", cpu_ms=2.9 * f),
            _row("cpuup", cpu_ms=3.9 * f), _row("upmem", rss=100.0 * f * f),
            _row("nonstream", rps=127.0, p99=2.05 * f, rss=100.0 * f),
            _row("w_nonstream", rps=100.0, rss=150.0),
            _row("stream", rps=127.0, errors=0 if good else 3),
            _row("w_stream", rps=80.0), _row("mixed", ttfb=0.04 * f),
            _row("get", rps=3000.0 / f), _row("w_get", rps=1900.0)]
    return {row.key: row for row in rows}


def test_compare_judges_every_target_of_the_issue():
    from bench import compare

    verdicts = compare.judge(_figures(good=True))
    assert len(verdicts) == 14
    assert all(met for _, _, met in verdicts), verdicts
    missed = {target for target, _, met in compare.judge(_figures(good=False)) if not met}
    assert any("0.5x" in t for t in missed) and any("16:9" in t for t in missed)
    assert any("3:2" in t for t in missed) and any("enlarged" in t for t in missed)
    assert any("peak memory" in t for t in missed) and any("first byte" in t for t in missed)
    assert any("GET" in t for t in missed) and any("peak RSS" in t for t in missed)
    assert any("stream: zero errors" in t for t in missed)


def test_compare_without_the_worker_says_not_measured():
    from bench import compare

    rows = {k: v for k, v in _figures(good=True).items() if not k.startswith("w_")}
    verdicts = compare.judge(rows)
    unmeasured = [t for t, figures, met in verdicts if met is None]
    assert len(unmeasured) == 5 and all(f == "not measured" for t, f, met in verdicts
                                        if met is None)
    report = compare.markdown(rows, {"command": "c", "date": "d", "duration": 1.0,
                                     "machine": "m", "loadavg": "l", "loadavg_after": "l",
                                     "service": "s", "code": "x", "worker": "not run",
                                     "quick": True}, [])
    assert "| CPU per generation, 0 s, 1:1 (ms) | 2.00 | – | – |" in report
    assert "not measured" in report
