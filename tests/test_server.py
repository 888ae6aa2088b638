"""The slow-client worker tells a complete request from one still arriving (flux_worker/server.py).

The worker itself runs in tests/e2e/test_abuse_e2e.py (300 trickling connections); here the
framing rules it hands requests to threads by.
"""

from __future__ import annotations

import socket

import pytest

from flux_worker.server import HEAD_LIMIT, RequestState, client_gone, request_complete

LIMIT = 1 << 20


def _feed(data: bytes, step: int = 1) -> int | None:
    """Feed data `step` bytes at a time; return how many bytes made the request complete."""
    state = RequestState(None, b"", 0.0)
    for end in range(step, len(data) + step, step):
        state.buf = bytearray(data[:end])
        if request_complete(state, LIMIT):
            return min(end, len(data))
    return None


def test_a_get_is_complete_with_its_head():
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    assert _feed(request) == len(request)


def test_a_body_of_known_length_is_awaited_whole():
    request = b"POST /v1/x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
    assert _feed(request) == len(request)
    assert _feed(request[:-1]) is None


def test_a_chunked_body_is_awaited_to_its_last_chunk_and_trailers():
    body = b"5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n"
    request = b"POST /v1/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + body
    assert _feed(request) == len(request)
    assert _feed(request[:-2]) is None


@pytest.mark.parametrize("head", [
    b"POST / HTTP/1.1\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n",  # waits for 100
    b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n",                    # app answers 413
    b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n",                           # parser: 400
    b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",      # parser: 400
])
def test_requests_a_thread_must_answer_go_at_once(head):
    assert _feed(head) == len(head)


def test_an_endless_head_goes_to_the_parser_which_refuses_it():
    endless = b"GET / HTTP/1.1\r\n" + b"X: " + b"a" * (HEAD_LIMIT + 10)
    assert _feed(endless, step=4096) is not None


def test_a_chunked_body_over_the_limit_goes_at_once():
    request = (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
               + f"{LIMIT + 1:x}\r\n".encode() + b"a" * 10)
    assert _feed(request, step=len(request)) == len(request)


def test_client_gone_sees_a_closed_peer():
    left, right = socket.socketpair()
    try:
        assert not client_gone(left)
        right.sendall(b"GET / HTTP/1.1\r\n")   # a pipelined request: still there
        assert not client_gone(left)
        right.close()
        left.recv(100)
        assert client_gone(left)
    finally:
        left.close()
    assert not client_gone(None)
