"""The gathering worker's judgement of a complete request, and the default in-flight cap."""

from __future__ import annotations

import pytest

from flux_worker.config import Config, default_max_inflight
from flux_worker.gunicorn_worker import HEADER_GATHER_LIMIT, request_complete

HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"


@pytest.mark.parametrize("data,complete", [
    (b"", False),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\n", False),             # headers not ended
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", True),           # no body
    (HEAD + b"Content-Length: 5\r\n\r\n{\"a\"", False),             # body short
    (HEAD + b"Content-Length: 5\r\n\r\n{\"a\"}", True),
    (HEAD + b"content-length:5\r\n\r\n{\"a\"}GET / HTTP/1.1", True),  # pipelined rest is fine
    (HEAD + b"Transfer-Encoding: chunked\r\n\r\n", True),          # the parser reads chunks
    (HEAD + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n", True),
    (HEAD + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n", True),  # parser rejects
    (HEAD + b"Content-Length: x\r\n\r\n", True),
    (HEAD + b"Content-Length: 2000\r\n\r\n", True),                # over the body limit: 413
    (HEAD + b"X: " + b"a" * HEADER_GATHER_LIMIT, True),            # parser rejects the size
    (b"GET / HTTP/1.1\nHost: x\n\n", True),                       # parser rejects bare LF
])
def test_request_complete(data, complete):
    assert request_complete(data, body_limit=1000) is complete


def test_default_cap_leaves_threads_free():
    assert default_max_inflight(256) == 224
    assert default_max_inflight(16) == 12
    assert default_max_inflight(1) == 1
    assert all(default_max_inflight(t) < t for t in range(2, 2000))


def test_cap_follows_the_threads_unless_set():
    assert Config.from_env({}).max_inflight == 224
    assert Config.from_env({"GUNICORN_THREADS": "64"}).max_inflight == 56
    assert Config.from_env({"GUNICORN_THREADS": "64", "MAX_INFLIGHT": "0"}).max_inflight == 0
    assert Config.from_env({"MAX_INFLIGHT": "10"}).max_inflight == 10
    assert Config.from_env({}).request_read_timeout == 30.0
