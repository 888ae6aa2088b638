"""Upstream answers are bounded: size, pixels, redirects, Retry-After, quoted text (issue 10).

The trickling upstream (a total deadline, not a per-read one) needs real sockets: see
tests/e2e/test_abuse_e2e.py. Here `responses` stands at the HTTP edge.
"""

from __future__ import annotations

import base64
import io
import socket
import threading
import time
import zlib

import pytest
import requests
import responses
from PIL import Image

from flux_worker.backends.cloudflare import CloudflareBackend
from flux_worker.backends.openai_images import OpenAIImagesBackend, generic_model
from flux_worker.catalog.workers_ai import CATALOG
from flux_worker.errors import RateLimited, UpstreamError
from flux_worker.generation.backend import GenerationRequest
from flux_worker.generation.translate import ChatTranslator, TranslationFailed
from flux_worker.net.upstream import (
    RETRY_AFTER_MAX,
    BodyTooLarge,
    Deadline,
    Redirected,
    Watchdog,
    call,
    make_session,
    retry_after_seconds,
)

ACCOUNT = "0123456789abcdef0123456789abcdef"
TOKEN = "cfut_SECRET-api-token-4f9a"
GW_TOKEN = "cfgw_SECRET-gateway-token-77b1"
GATEWAY = f"https://gateway.ai.cloudflare.com/v1/{ACCOUNT}/my-gateway"
SCHNELL = next(m for m in CATALOG if m.id.endswith("flux-1-schnell"))
IMAGE_KEY = "sk-image-SECRET-key-0042"
RUN_URL = f"https://api.cloudflare.com/client/v4/accounts/{ACCOUNT}/ai/run/{SCHNELL.id}"


def _png(width: int, height: int) -> bytes:
    """A real PNG: 1x1 pixels, its header rewritten to declare width x height."""
    out = io.BytesIO()
    Image.new("L", (1, 1)).save(out, "PNG")
    data = bytearray(out.getvalue())
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


@pytest.fixture
def rsps():
    with responses.RequestsMock() as mock:
        yield mock


def _cloudflare(**kw) -> CloudflareBackend:
    return CloudflareBackend(account_id=ACCOUNT, api_token=TOKEN, session=make_session(2),
                             sleep=lambda s: None, rng=lambda: 0.0, retries=0, **kw)


def _req(model=SCHNELL) -> GenerationRequest:
    return GenerationRequest(prompt="a cat", model=model, width=1024, height=1024)


def test_call_refuses_a_declared_or_read_body_over_the_cap(rsps):
    rsps.get("https://up.example/big", body=b"x" * 5000)
    with pytest.raises(BodyTooLarge):
        call(make_session(1), "GET", "https://up.example/big", timeout=5, max_bytes=4096)
    rsps.get("https://up.example/ok", body=b"x" * 4096)
    assert len(call(make_session(1), "GET", "https://up.example/ok", timeout=5,
                    max_bytes=4096).content) == 4096


def test_call_follows_no_redirect(rsps):
    rsps.get("https://up.example/a", status=302, headers={"Location": "https://other.example/"})
    with pytest.raises(Redirected):
        call(make_session(1), "GET", "https://up.example/a", timeout=5)
    assert len(rsps.calls) == 1


def test_gateway_token_never_follows_a_redirect(rsps):
    url = f"{GATEWAY}/workers-ai/{SCHNELL.id}"
    rsps.post(url, status=307, headers={"Location": "https://elsewhere.example/steal"})
    backend = _cloudflare(gateway_url=GATEWAY, gateway_token=GW_TOKEN)
    with pytest.raises(UpstreamError) as caught:
        backend.generate(_req())
    assert "redirect" in caught.value.message
    assert all("elsewhere" not in c.request.url for c in rsps.calls)
    assert GW_TOKEN not in caught.value.message


def test_cloudflare_answer_over_32_mb_is_a_502_that_says_why(rsps):
    rsps.post(RUN_URL,
              body=b"x" * 100, headers={"Content-Length": str(100 * 1024 * 1024)},
              content_type="application/json", auto_calculate_content_length=False)
    with pytest.raises(UpstreamError) as caught:
        _cloudflare().generate(_req())
    assert caught.value.status == 502 and "larger than 32 MB" in caught.value.message


def test_cloudflare_image_declaring_9400_pixels_is_refused_undecoded(rsps):
    image = base64.b64encode(_png(9400, 9400)).decode()
    rsps.post(RUN_URL,
              json={"result": {"image": image}, "success": True, "errors": [], "messages": []})
    with pytest.raises(UpstreamError) as caught:
        _cloudflare().generate(_req())
    assert "9400x9400" in caught.value.message and "2500" in caught.value.message


@pytest.mark.parametrize("header,expected", [
    ("7", 7.0), ("1" * 309, float(RETRY_AFTER_MAX)), ("1" * 400, float(RETRY_AFTER_MAX)),
    ("nan", None),
    ("-5", 0.0), ("inf", float(RETRY_AFTER_MAX)), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
    ("soon", None), (None, None),
])
def test_retry_after_is_read_and_capped_in_one_place(header, expected):
    assert retry_after_seconds(header) == expected


def test_a_309_digit_retry_after_does_not_reach_the_client(rsps):
    rsps.post(RUN_URL,
              status=429, headers={"Retry-After": "9" * 309},
              json={"success": False, "errors": [{"code": 971, "message": "slow down"}]})
    with pytest.raises(RateLimited) as caught:
        _cloudflare().generate(_req())
    assert caught.value.retry_after <= RETRY_AFTER_MAX


def _images(**kw) -> OpenAIImagesBackend:
    return OpenAIImagesBackend(api_base="https://img.example/v1", api_key=IMAGE_KEY,
                               session=make_session(2), **kw)


def test_images_backend_quotes_a_bounded_redacted_message(rsps):
    echoed = (f"bad request; you sent Authorization: Bearer {IMAGE_KEY}\r\nX-Evil: 1 "
              + "y" * 5000)
    rsps.post("https://img.example/v1/images/generations", status=400,
              json={"error": {"message": echoed}})
    with pytest.raises(UpstreamError) as caught:
        _images().generate(_req(generic_model("dall-e-3")))
    message = caught.value.message
    assert IMAGE_KEY not in message and "\r" not in message and "\n" not in message
    assert len(message) < 300


def test_images_backend_download_is_bounded_and_not_redirected(rsps):
    rsps.post("https://img.example/v1/images/generations",
              json={"data": [{"url": "https://cdn.example/a.png"}]})
    rsps.get("https://cdn.example/a.png", status=302, headers={"Location": "http://10.0.0.1/"})
    with pytest.raises(UpstreamError) as caught:
        _images().generate(_req(generic_model("dall-e-3")))
    assert "redirect" in caught.value.message
    rsps.post("https://img.example/v1/images/generations",
              json={"data": [{"url": "file:///etc/passwd"}]})
    with pytest.raises(UpstreamError, match="scheme"):
        _images().generate(_req(generic_model("dall-e-3")))


def test_images_backend_refuses_an_oversized_image(rsps):
    rsps.post("https://img.example/v1/images/generations",
              json={"data": [{"b64_json": base64.b64encode(_png(2600, 100)).decode()}]})
    with pytest.raises(UpstreamError, match="2600x100"):
        _images().generate(_req(generic_model("dall-e-3")))


def test_translator_answer_over_its_cap_falls_back(rsps):
    rsps.post("https://llm.example/v1/chat/completions", body=b"x" * (5 * 1024 * 1024))
    translator = ChatTranslator(api_base="https://llm.example/v1", model="m", api_key="k",
                                session=make_session(1))
    with pytest.raises(TranslationFailed, match="larger than"):
        translator.translate("a cat", "1:1")


def test_translation_is_length_limited(rsps):
    reply = "word " * 3000
    rsps.post("https://llm.example/v1/chat/completions",
              json={"choices": [{"message": {"content": reply}}]})
    translator = ChatTranslator(api_base="https://llm.example/v1", model="m", api_key="k",
                                session=make_session(1))
    assert len(translator.translate("a cat", "1:1").prompt) <= 2000


def test_connection_errors_stay_requests_errors(rsps):
    rsps.get("https://up.example/x", body=requests.ConnectionError("refused"))
    with pytest.raises(requests.ConnectionError):
        call(make_session(1), "GET", "https://up.example/x", timeout=5)


class _Trickler:
    """A local server that answers `head` one byte per `pause` seconds, then closes."""

    def __init__(self, head: bytes, pause: float = 0.2):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/"
        self.head, self.pause = head, pause
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.recv(65536)
            try:
                for byte in self.head:
                    conn.sendall(bytes([byte]))
                    time.sleep(self.pause)
            except OSError:
                pass  # the client hung up: what the test wants

    def close(self) -> None:
        self.listener.close()


@pytest.mark.parametrize("head", [
    # Headers that trickle in: each byte well within the read timeout, the whole far beyond.
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Pad: " + b"a" * 100,
    # Headers at once, then a body that trickles.
    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b" " * 100,
])
def test_call_ends_at_its_deadline_whatever_trickles(head):
    server = _Trickler(head)
    try:
        started = time.monotonic()
        with pytest.raises(Deadline):
            call(make_session(1), "GET", server.url, timeout=1.0)
        assert time.monotonic() - started < 5   # 100 bytes at 0.2 s would take 20 s
    finally:
        server.close()


def test_one_watchdog_thread_cuts_late_waits_and_spares_the_others():
    dog = Watchdog()
    late, kept = socket.socketpair(), socket.socketpair()
    try:
        before = threading.active_count()
        cut = dog.arm(time.monotonic() + 0.2, late[0])
        spared = dog.arm(time.monotonic() + 0.2, kept[0])
        for _ in range(2000):                  # many calls that end in time: no thread each
            dog.disarm(dog.arm(time.monotonic() + 60, kept[0]))
        assert threading.active_count() == before + 1
        dog.disarm(spared)
        late[0].settimeout(5)
        assert late[0].recv(1) == b""          # shut at its deadline: the wait ends
        kept[1].sendall(b"x")
        assert kept[0].recv(1) == b"x"         # disarmed in time: still open
        assert len(dog._due) < 1100            # disarmed entries do not pile up
        assert cut not in dog._armed
    finally:
        for pair in (late, kept):
            for end in pair:
                end.close()


def _cut_in_child(out) -> None:
    from flux_worker.net.upstream import _watchdog

    ends = socket.socketpair()
    _watchdog.arm(time.monotonic() + 0.1, ends[0])
    ends[0].settimeout(5)
    out.put(ends[0].recv(1))


def test_a_forked_child_gets_a_watchdog_of_its_own():
    import multiprocessing

    from flux_worker.net.upstream import _watchdog

    ends = socket.socketpair()
    try:
        _watchdog.disarm(_watchdog.arm(time.monotonic() + 60, ends[0]))  # the parent's thread runs
        context = multiprocessing.get_context("fork")
        out = context.Queue()
        child = context.Process(target=_cut_in_child, args=(out,))
        child.start()
        child.join(20)
        assert child.exitcode == 0 and out.get(timeout=5) == b""
    finally:
        for end in ends:
            end.close()
