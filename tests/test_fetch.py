"""Remote image fetches end at one total deadline, whatever the image host does.

Real sockets on 127.0.0.1 (harness/fakes/image_host.py): a host that trickles a byte every 0.2 s
is never quiet long enough for a per-read timeout, so only a deadline that shuts the socket
ends the download. The guard is opened for loopback by a constructor argument, as in
tests/test_intake.py.
"""

from __future__ import annotations

import os
import time

import pytest

from flux_worker.errors import ImageRefused
from flux_worker.net.fetch import RemoteFetcher
from flux_worker.net.upstream import _watchdog
from harness.fakes.image_host import HostileImageHost

DEADLINE = 1.0
# Generous against a loaded machine, far below what the host would hold a downloader without a
# deadline (it gives up after 20 s; the trickled headers and body never end before that).
CUT_WITHIN = 4.0


@pytest.fixture(scope="module")
def host():
    with HostileImageHost(pause=0.2, give_up=20) as server:
        yield server


def _fetcher(**kw) -> RemoteFetcher:
    return RemoteFetcher(max_bytes=kw.pop("max_bytes", 1 << 20), timeout=DEADLINE,
                         resolver=lambda name, port: ["127.0.0.1"],
                         allowed=lambda address: True, **kw)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("link", [
    pytest.param(lambda h: h.url("/headers"), id="headers-trickle"),
    pytest.param(lambda h: h.url("/body"), id="body-trickle"),
    pytest.param(lambda h: h.url("/unframed"), id="unframed-body-trickle"),
    pytest.param(lambda h: h.url("/silent"), id="accepted-silent"),
    pytest.param(lambda h: h.never_accepted, id="connected-never-accepted"),
    pytest.param(lambda h: h.url("/tls", scheme="https", host="pics.example.test"),
                 id="tls-handshake-trickle"),
])
def test_a_trickling_host_is_cut_at_the_total_deadline(host, link):
    started = time.monotonic()
    with pytest.raises(ImageRefused) as info:
        _fetcher().fetch(link(host), "image[0]")
    took = time.monotonic() - started
    assert info.value.status == 400
    assert "image[0] took longer than 1 seconds to download" in info.value.message
    assert DEADLINE - 0.05 <= took < CUT_WITHIN


def test_the_deadline_covers_redirects_too(host):
    # Each hop fast, together slow: one deadline for the whole fetch, not one per hop.
    import http.server
    import threading

    class Loop(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            time.sleep(0.4)
            self.send_response(302)
            self.send_header("Location", "/again")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Loop)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        started = time.monotonic()
        with pytest.raises(ImageRefused, match="took longer than 1 seconds"):
            _fetcher(max_redirects=10).fetch(
                f"http://pics.example.test:{server.server_address[1]}/a", "ref")
        assert time.monotonic() - started < CUT_WITHIN
    finally:
        server.shutdown()
        server.server_close()


def test_a_fetch_leaves_no_descriptor_and_no_armed_cut_behind(host):
    before, armed = _open_fds(), len(_watchdog._armed)
    for _ in range(3):
        with pytest.raises(ImageRefused):
            _fetcher().fetch(host.url("/body"), "ref")
    assert len(_watchdog._armed) == armed
    # The host's side closes when it notices the hang-up: allow it a moment.
    for _ in range(50):
        if _open_fds() <= before:
            break
        time.sleep(0.1)
    assert _open_fds() <= before
