"""Cloudflare's partner models: the body per model, the error mapping (`responses` at the HTTP
edge), and the download of result files under net/provider_files.py's rules (a real file host
on 127.0.0.1: the strict fake's partner file host)."""

from __future__ import annotations

import base64
import io
import json
import threading
from urllib.parse import urlsplit

import pytest
import responses
from PIL import Image

from flux_worker.backends.cloudflare_partner import CloudflarePartnerBackend
from flux_worker.backends.cloudflare_partner.payloads import build_body
from flux_worker.catalog.partners import PARTNER_CATALOG
from flux_worker.cost.accounts import Account
from flux_worker.errors import (
    Cancelled,
    ContentPolicy,
    InvalidRequest,
    QuotaExceeded,
    RateLimited,
    UpstreamAuthFailed,
    UpstreamError,
)
from flux_worker.generation import fitting
from flux_worker.generation.backend import GenerationRequest
from flux_worker.inputs.image import InputImage
from flux_worker.net.provider_files import FileHosts, ProviderFiles
from flux_worker.net.upstream import make_session
from harness.fakes import cloudflare
from harness.fakes.image_host import HostileImageHost

API = "https://api.cloudflare.com/client/v4"
TOKEN = "cfut_SECRET-partner-token-9x"
ACCOUNTS = (Account("acct-one", TOKEN), Account("acct-two", "cfut_SECOND-token"))
RUN = f"{API}/accounts/acct-one/ai/run"
RUN_TWO = f"{API}/accounts/acct-two/ai/run"
MODELS = {spec.id: spec for spec in PARTNER_CATALOG}


def png(width=64, height=48) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


def req(model_id, width=1024, height=1024, **kw) -> GenerationRequest:
    return GenerationRequest(prompt="a red fox", model=MODELS[model_id], width=width,
                             height=height, **kw)


@pytest.fixture(scope="module")
def host():
    """The strict fake: its partner file host serves the files tests put there."""
    server = cloudflare.start()
    yield server
    server.stop()


def put(host, data: bytes, mimetype="image/png") -> str:
    return f"{host.url}/_fake/partner-files/{host.state.partners.store(data, mimetype)}"


def backend(host=None, accounts=ACCOUNTS, **kw) -> CloudflarePartnerBackend:
    files = ProviderFiles(FileHosts(("r2.dev",), (f"127.0.0.1:{host.port}",) if host else ()),
                          sniff=fitting.sniff, timeout=5)
    return CloudflarePartnerBackend(accounts=accounts, session=make_session(2), api_base=API,
                                    timeout=10, retries=1, files=files,
                                    sleep=lambda s: None, rng=lambda: 0.0, **kw)


@pytest.fixture
def rsps():
    with responses.RequestsMock() as mock:
        yield mock


def completed(link: str) -> dict:
    return {"state": "Completed", "result": {"image": link},
            "gatewayMetadata": {"keySource": "Unified"}}


# -- the body per model ----------------------------------------------------------------------

def test_gpt_image_gets_a_size_it_draws_and_png():
    body = build_body(MODELS["openai/gpt-image-2"], req("openai/gpt-image-2", 1600, 900))
    assert body == {"model": "openai/gpt-image-2",
                    "input": {"prompt": "a red fox", "size": "1536x1024",
                              "output_format": "png"}}


def test_gpt_image_edits_send_images_as_data_urls():
    image = InputImage(png(), 64, 48, False, "image[0]")
    body = build_body(MODELS["openai/gpt-image-2"], req("openai/gpt-image-2", images=(image,)))
    assert body["input"]["images"][0].startswith("data:image/png;base64,iVBOR")


def test_transparency_only_where_the_model_draws_it():
    for model_id, sent in (("openai/gpt-image-1.5", True), ("openai/gpt-image-2", False)):
        body = build_body(MODELS[model_id], req(model_id, background="transparent"))
        assert ("background" in body["input"]) is sent


def test_google_models_get_the_nearest_aspect_ratio():
    body = build_body(MODELS["google/imagen-4"], req("google/imagen-4", 1920, 1080))
    assert body["input"] == {"prompt": "a red fox", "aspect_ratio": "16:9"}
    banana = build_body(MODELS["google/nano-banana-2"], req("google/nano-banana-2", 2100, 900))
    assert banana["input"] == {"prompt": "a red fox", "aspect_ratio": "21:9",
                               "output_format": "png"}


def test_flux_pro_gets_width_height_seed_and_input_images():
    image = InputImage(png(), 64, 48, False, "image[0]")
    body = build_body(MODELS["black-forest-labs/flux-2-pro-preview"],
                      req("black-forest-labs/flux-2-pro-preview", 1000, 600, seed=7,
                          images=(image,)))
    assert {k: v for k, v in body["input"].items() if k != "input_images"} == {
        "prompt": "a red fox", "width": 1000, "height": 600, "seed": 7, "output_format": "png"}
    assert len(body["input"]["input_images"]) == 1


def test_flux_flex_gets_steps_and_guidance_only():
    body = build_body(MODELS["black-forest-labs/flux-2-flex"],
                      req("black-forest-labs/flux-2-flex", steps=30, guidance=7.5, seed=3))
    assert body["input"] == {"prompt": "a red fox", "steps": 30, "guidance": 7.5}


def test_every_body_passes_the_strict_fake():
    """What the backend builds for each catalog model, the fake's per-model schema takes."""
    client = cloudflare.make_app().test_client()
    for spec in PARTNER_CATALOG:
        body = build_body(spec, req(spec.id, 1280, 720, steps=20, guidance=5.0, seed=1))
        answer = client.post("/client/v4/accounts/test-account/ai/run", json=body,
                             headers={"Authorization": "Bearer test-cf-token"})
        assert answer.status_code == 200, (spec.id, answer.json)


# -- a whole generation ----------------------------------------------------------------------

def test_the_file_is_downloaded_without_the_token(rsps, host):
    link = put(host, png(1536, 1024))
    rsps.post(RUN, json=completed(link))
    host.state.recorded.clear()
    image = backend(host).generate(req("openai/gpt-image-2", 1536, 1024))
    assert image.content_type == "image/png" and image.account == "acct-one"
    assert image.data == png(1536, 1024)
    sent = json.loads(rsps.calls[0].request.body)
    assert sent["model"] == "openai/gpt-image-2"
    assert rsps.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"
    fetched = [r for r in host.requests() if r["kind"] == "partner_file"]
    assert len(fetched) == 1 and fetched[0]["authorization_present"] is False


def test_an_inline_image_is_taken_too(rsps):
    rsps.post(RUN, json=completed("data:image/png;base64," + base64.b64encode(png()).decode()))
    assert backend().generate(req("google/imagen-4")).data == png()


@pytest.mark.parametrize("status, body, error, words", [
    (401, {"success": False, "errors": [{"code": 2009, "message": "Unauthorized"}]},
     UpstreamAuthFailed, "provider key"),
    (403, {"success": False, "errors": [{"code": 2049, "message": "Gateway auth"}]},
     UpstreamAuthFailed, "`AI Gateway - Run`"),
    (402, {"success": False, "errors": [{"code": 2021, "message": "Insufficient balance"}]},
     QuotaExceeded, "turn CF_PARTNER_MODELS off"),
    (400, {"success": False, "errors": [{"code": 5006, "message": "Bad input: /size"}]},
     InvalidRequest, "/size"),
    (400, {"state": "Failed", "error": {"code": "moderation_blocked", "message": "no"}},
     ContentPolicy, "Rephrase"),
])
def test_errors_map_to_the_error_tree(rsps, status, body, error, words):
    rsps.post(RUN, json=body, status=status)
    # A refused token or an empty purse passes to the next account; a refused request does not.
    moves_on = error in (UpstreamAuthFailed, QuotaExceeded)
    if moves_on:
        rsps.post(RUN_TWO, json=body, status=status)
    with pytest.raises(error) as info:
        backend().generate(req("openai/gpt-image-2"))
    assert words in info.value.message
    assert TOKEN not in info.value.message
    assert len(rsps.calls) == (2 if moves_on else 1)


def test_a_rate_limit_passes_the_retry_after_on(rsps):
    rsps.post(RUN, json={"errors": [{"code": 2003, "message": "spend limit"}]}, status=429,
              headers={"Retry-After": "120"})
    with pytest.raises(RateLimited) as info:
        backend().generate(req("google/imagen-4"))
    assert info.value.retry_after == 120


def test_a_failed_state_names_the_providers_code(rsps):
    rsps.post(RUN, json={"state": "Failed", "error": {"code": "provider_unavailable",
                                                      "message": "down"}})
    with pytest.raises(UpstreamError) as info:
        backend().generate(req("google/imagen-4"))
    assert "provider_unavailable" in info.value.message and info.value.status == 502


def test_a_503_is_retried_then_an_upstream_error(rsps):
    rsps.post(RUN, body="Service Unavailable", status=503)
    with pytest.raises(UpstreamError) as info:
        backend().generate(req("google/imagen-4"))
    assert len(rsps.calls) == 2 and "after 2 attempts" in info.value.message


def test_an_account_without_credit_passes_to_the_next(rsps):
    rsps.post(RUN, json={"errors": [{"code": 2021, "message": "no money"}]}, status=402)
    rsps.post(RUN_TWO, json=completed("data:image/png;base64,"
                                      + base64.b64encode(png()).decode()))
    assert backend().generate(req("google/imagen-4")).account == "acct-two"


def test_a_client_gone_stops_before_the_call(rsps):
    gone = threading.Event()
    gone.set()
    with pytest.raises(Cancelled):
        backend().generate(req("google/imagen-4", cancel=gone))
    assert not rsps.calls


# -- the download rules ----------------------------------------------------------------------

def files(host=None, *, resolver=None, **kw) -> ProviderFiles:
    extra = (f"127.0.0.1:{host.port}",) if host else ()
    options = {"resolver": resolver} if resolver else {}
    return ProviderFiles(FileHosts(("r2.dev",), extra), sniff=fitting.sniff, timeout=5,
                         **options, **kw)


def test_documented_domains_are_https_only():
    rules = FileHosts(("r2.dev",))
    assert rules.documented(urlsplit("https://pub-1.r2.dev/x.png"))
    assert not rules.documented(urlsplit("http://pub-1.r2.dev/x.png"))
    assert not rules.documented(urlsplit("https://r2.dev.evil.example/x.png"))
    assert not rules.documented(urlsplit("https://evilr2.dev/x.png"))


def test_a_listed_loopback_host_is_fetched(host):
    data, kind = files(host).download(put(host, png()), "the file")
    assert (data, kind) == (png(), "image/png")


def test_a_documented_domain_at_a_private_address_is_refused():
    inside = files(resolver=lambda name, port: ["10.0.0.7"])
    with pytest.raises(UpstreamError, match="internal address"):
        inside.download("https://pub-1.r2.dev/x.png", "the file")


def test_an_unlisted_host_is_refused_unfetched(host):
    link = put(host, png()).replace("127.0.0.1", "localhost")
    with pytest.raises(UpstreamError, match="PROVIDER_FILE_HOSTS"):
        files(host).download(link, "the file")


def test_a_redirect_to_another_host_is_refused(host):
    with pytest.raises(UpstreamError, match="redirects to localhost"):
        files(host).download(put(host, png()) + "?redirect=1", "the file")


def test_a_file_too_big_is_refused(host):
    with pytest.raises(UpstreamError, match="larger than 1 MB"):
        # An empty file is the fake's "huge" one: 60 MB streamed without a length.
        files(host, max_bytes=1024 * 1024).download(put(host, b""), "the file")


def test_a_file_that_is_no_image_is_refused(host):
    with pytest.raises(UpstreamError, match="not an image"):
        files(host).download(put(host, b"<html>hello</html>", "text/html"), "the file")


def test_an_expired_file_is_an_upstream_error(host):
    link = put(host, png())
    host.advance_partner_clock(24 * 3600)
    try:
        with pytest.raises(UpstreamError, match="HTTP 404"):
            files(host).download(link, "the file")
    finally:
        host.state.partners.clock = 0.0


def test_a_trickling_file_host_is_cut_at_the_deadline():
    with HostileImageHost(pause=0.2, give_up=20) as slow:
        fetcher = ProviderFiles(FileHosts((), (f"127.0.0.1:{slow.port}",)),
                                sniff=fitting.sniff, timeout=1)
        with pytest.raises(UpstreamError, match="took longer than 1 seconds to download.$"):
            fetcher.download(slow.url("/body"), "the file")
