"""The gathering worker's judgement of a request (its head, body and framing), whom a connection
counts against, and the default in-flight cap."""

from __future__ import annotations

import pytest

from flux_worker.config import Config, default_max_inflight
from flux_worker.request_gathering import HEADER_GATHER_LIMIT, Gathering, client_key
from flux_worker.web.proxies import TrustedPeers

HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
LIMIT = 1000          # JSON bodies
UPLOAD = 5000         # forms and /mcp


def limit_of(path: str, multipart: bool) -> int:
    return UPLOAD if multipart or path.rstrip("/").endswith("/mcp") else LIMIT


def gather(*pieces: bytes) -> tuple[Gathering, list[str]]:
    """Feed `pieces` one after the other; the steps taken, "continue" answered at once."""
    gathering, steps = Gathering(limit_of), []
    for piece in pieces:
        gathering.feed(piece)
        while (step := gathering.step()) == Gathering.CONTINUE:
            steps.append(step)
        steps.append(step)
    return gathering, steps


@pytest.mark.parametrize("data,ready", [
    (b"", False),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\n", False),             # headers not ended
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", True),           # no body
    (HEAD + b"Content-Length: 5\r\n\r\n{\"a\"", False),             # body short
    (HEAD + b"Content-Length: 5\r\n\r\n{\"a\"}", True),
    (HEAD + b"content-length:5\r\n\r\n{\"a\"}GET / HTTP/1.1", True),  # pipelined rest is fine
    (HEAD + b"Transfer-Encoding: chunked\r\n\r\n", False),         # gathered here now
    (HEAD + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", True),
    (HEAD + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n", True),  # parser rejects
    (HEAD + b"Content-Length: x\r\n\r\n", True),
    (HEAD + b"Content-Length: 2000\r\n\r\n", True),                # over the limit: refused
    (HEAD + b"X: " + b"a" * HEADER_GATHER_LIMIT, True),            # parser rejects the size
    (b"GET / HTTP/1.1\nHost: x\n\n", True),                       # parser rejects bare LF
    (HEAD + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", True),  # smuggling
    (HEAD.replace(b"1.1", b"1.0") + b"Transfer-Encoding: chunked\r\n\r\n", True),
    (HEAD + b"Transfer-Encoding: gzip, chunked\r\n\r\n", True),
    (HEAD + b"Transfer-Encoding : chunked\r\n\r\n", True),          # malformed name
    (HEAD + b"Expect: something\r\n\r\n", True),                  # 417 from the parser
])
def test_when_a_request_is_ready_for_the_parser(data, ready):
    assert (gather(data)[1][-1] == Gathering.READY) is ready


@pytest.mark.parametrize("data", [
    HEAD + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n",
    HEAD + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nabcde\r\n0\r\n\r\n",
    HEAD + b"X: " + b"a" * HEADER_GATHER_LIMIT,
])
def test_what_the_parser_is_to_refuse_goes_as_sent_and_closes(data):
    gathering, _ = gather(data)
    assert gathering.request() == data and gathering.cut


def test_a_chunked_body_is_handed_on_with_its_length():
    gathering, steps = gather(HEAD + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
                              b"2;name=value\r\nde\r\n0\r\nX-Trailer: 1\r\n", b"\r\nNEXT")
    assert steps == ["more", "more", "ready"]
    assert gathering.request() == HEAD + b"Content-Length: 5\r\n\r\nabcdeNEXT"
    assert not gathering.cut


def test_a_chunked_request_a_byte_at_a_time():
    raw = (HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
           b"4\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n")
    gathering, steps = gather(*(raw[i:i + 1] for i in range(len(raw))))
    assert steps[-1] == "ready" and steps.count("ready") == 1
    assert gathering.request() == HEAD + b"Content-Length: 23\r\n\r\nWikipedia in\r\n\r\nchunks."


@pytest.mark.parametrize("raw", [b"zz\r\n", b"3\r\nabcX\r\n", b"3;a\rb\r\n", b"1" * 9000])
def test_bad_chunk_framing_is_the_parsers_400(raw):
    gathering, steps = gather(HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + raw)
    assert steps == ["ready"] and gathering.error is not None


def test_a_chunked_body_over_the_limit_is_refused_by_its_length():
    gathering, _ = gather(HEAD + b"Transfer-Encoding: chunked\r\n\r\n",
                          b"400\r\n" + b"a" * 0x400 + b"\r\n")
    assert gathering.cut
    assert gathering.request() == HEAD + b"Content-Length: %d\r\n\r\n" % (LIMIT + 1)


def test_uploads_and_mcp_may_be_larger():
    for head in (b"POST /mcp HTTP/1.1\r\n", b"POST /prefix/mcp/?x=1 HTTP/1.1\r\n",
                 b"POST http://h:1/mcp HTTP/1.1\r\n",
                 b"POST /v1/images/edits HTTP/1.1\r\nContent-Type: multipart/form-data; b=x\r\n"):
        gathering, steps = gather(head + b"Content-Length: 3000\r\n\r\n" + b"a" * 3000)
        assert steps == ["ready"] and not gathering.cut, head
    gathering, _ = gather(b"POST /v1/images/edits HTTP/1.1\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 3000\r\n\r\n")
    assert gathering.cut                                  # JSON keeps the JSON limit


def test_100_continue_is_sent_only_for_a_body_that_is_wanted():
    gathering, steps = gather(HEAD + b"Expect: 100-continue\r\nContent-Length: 3\r\n\r\n",
                              b"abc")
    assert steps == ["continue", "more", "ready"]
    assert gathering.request() == HEAD + b"Content-Length: 3\r\n\r\nabc"   # Expect answered
    # The body already came: no "100 Continue" (RFC 9110 section 10.1.1).
    _, steps = gather(HEAD + b"Expect: 100-continue\r\nContent-Length: 3\r\n\r\nabc")
    assert steps == ["ready"]
    _, steps = gather(HEAD + b"Expect: 100-continue\r\nContent-Length: 0\r\n\r\n")
    assert steps == ["ready"]                             # nothing to continue with
    # Refused from the head: the client is not asked for its body.
    gathering, steps = gather(HEAD + b"Expect: 100-continue\r\nContent-Length: 3000\r\n\r\n")
    assert steps == ["ready"] and gathering.cut
    assert gathering.request() == HEAD + b"Content-Length: 3000\r\n\r\n"


def test_connections_count_against_an_address_or_an_ipv6_64():
    assert client_key(("203.0.113.9", 4000)) == "203.0.113.9"
    assert client_key(("::ffff:203.0.113.9", 4000, 0, 0)) == "203.0.113.9"
    assert client_key(("2001:db8:1:2:3:4:5:6", 4000, 0, 0)) == "2001:db8:1:2::/64"
    assert client_key(("2001:db8:1:2:ffff::1", 1, 0, 0)) == "2001:db8:1:2::/64"
    assert client_key("") is None                          # a Unix socket


def test_trusted_peers():
    peers = TrustedPeers(("127.0.0.1", "::1", "10.0.0.0/8"))
    assert "127.0.0.1" in peers and "10.9.8.7" in peers and "::1" in peers
    assert "127.0.0.2" not in peers and "" not in peers and None not in peers
    assert "198.51.100.1" in TrustedPeers(("*",))
    assert "127.0.0.1" not in TrustedPeers(())


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
