"""A stream notices a client that closed its connection without writing to it."""

from __future__ import annotations

import socket
import threading

from flux_worker.chat.streaming import HEARTBEAT, Background, ClientWatch, peer_closed


def test_peer_closed_tells_an_open_connection_from_a_closed_one():
    server, client = socket.socketpair()
    with server:
        closed = peer_closed(server)
        assert closed is not None and not closed()
        client.sendall(b"GET / HTTP/1.1\r\n")      # a pipelined request is not a departure
        assert not closed()
        assert server.recv(100)
        client.close()
        assert closed()
    assert peer_closed(None) is None


def test_background_stops_and_cancels_once_the_client_is_gone():
    cancel = threading.Event()
    release = threading.Event()
    gone = threading.Event()

    def source():
        yield "first"
        release.wait(30)                 # a generation still waiting on its upstream
        yield "never read"

    items = iter(Background(source(), 30.0, cancel, gone=gone.is_set))
    assert next(items) == "first"
    gone.set()
    assert list(items) == []             # no heartbeat, no item: the stream ends
    assert cancel.is_set()
    release.set()


def test_background_without_a_check_sends_heartbeats():
    cancel = threading.Event()
    release = threading.Event()

    def source():
        release.wait(30)
        yield "image"

    items = iter(Background(source(), 0.01, cancel))
    assert next(items) is HEARTBEAT
    release.set()
    assert [i for i in items if i is not HEARTBEAT] == ["image"]


def test_client_watch_is_set_once_the_client_has_gone():
    server, client = socket.socketpair()
    with server:
        watch = ClientWatch(peer_closed(server))
        assert not watch.is_set()
        client.close()
        assert watch.is_set()
    assert not ClientWatch(None).is_set()
    cancelled = ClientWatch(None)
    cancelled.set()
    assert cancelled.is_set()
