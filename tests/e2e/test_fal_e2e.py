"""fal end to end: gunicorn against the strict fake fal (and the fake Cloudflare, for fallback)
on 127.0.0.1, through the official `openai` SDK: sizes, `n`, a Kontext edit, a chat stream,
the cancel of a queued job when the client goes, the errors a client sees, fallback from fal to
Workers AI, and the dollars counted."""

from __future__ import annotations

import json
import socket

import openai
import pytest
import requests

from harness.fakes import fal
from harness.service import API_KEY, cloudflare_env, start_service
from tests.support import bearer, image_url, png, sdk, size_of, wait_until

pytestmark = pytest.mark.e2e

ADMIN = "sk-e2e-admin-key-fal-01"
SCHNELL = "fal:fal-ai/flux/schnell"
DEV = "fal:fal-ai/flux/dev"
KONTEXT = "fal:fal-ai/flux-pro/kontext"
CF_SCHNELL = "@cf/black-forest-labs/flux-1-schnell"





@pytest.fixture(scope="module")
def fake_fal():
    server = fal.start()
    yield server
    server.stop()


@pytest.fixture
def fl(fake_fal):
    """The fake fal, with faults and recorded requests cleared."""
    fake_fal.reset()
    yield fake_fal
    fake_fal.reset()


@pytest.fixture(scope="module")
def service(fake_fal, fake_cf, tmp_path_factory):
    """fal beside Workers AI; fal's schnell falls back to Workers AI's."""
    tmp = tmp_path_factory.mktemp("fal-service")
    env = cloudflare_env(fake_cf, **fake_fal.env(), ADMIN_API_KEY=ADMIN,
                         MODEL_FALLBACKS=f"{SCHNELL}={CF_SCHNELL}",
                         PROVIDER_FAILURE_LIMIT="0", UPSTREAM_TIMEOUT="30")
    svc = start_service(tmp, env, workers=1)
    svc.images = tmp / "images"          # type: ignore[attr-defined]
    yield svc
    svc.stop()


def stored(service) -> list[str]:
    return sorted(str(p) for p in service.images.rglob("*") if p.is_file())


def test_a_generation_draws_the_size_asked_and_keeps_the_key_from_the_file_host(service, fl):
    result = sdk(service).images.generate(model=SCHNELL, prompt="a lighthouse at dusk",
                                          size="1536x1024", response_format="url")
    (call,) = fl.requests("sync")
    assert call["status"] == 200 and call["json"]["image_size"] == {"width": 1536,
                                                                    "height": 1024}
    assert call["json"]["enable_safety_checker"] is True
    assert size_of(requests.get(result.data[0].url, timeout=10).content) == (1536, 1024)
    (fetched,) = fl.requests("file")
    assert fetched["authorization_present"] is False


def test_n_2_makes_two_calls_of_one_image_each(service, fl):
    result = sdk(service).images.generate(model=DEV, prompt="two boats", n=2,
                                          size="1024x1024", response_format="b64_json")
    assert len(result.data) == 2
    calls = fl.requests("sync")
    assert len(calls) == 2 and all("num_images" not in c["json"] for c in calls)


def test_an_edit_with_kontext_sends_the_image_inline(service, fl):
    result = sdk(service).images.edit(model=KONTEXT, image=("cat.png", png(), "image/png"),
                                      prompt="add a hat", size="1024x1024",
                                      response_format="url")
    (call,) = fl.requests("sync")
    assert call["json"]["image_url"].startswith("data:image/png;base64,")
    assert call["json"]["aspect_ratio"] == "1:1"
    assert size_of(requests.get(result.data[0].url, timeout=10).content) == (1024, 1024)


def test_a_chat_stream_brings_the_picture(service, fl):
    stream = sdk(service).chat.completions.create(
        model=SCHNELL, stream=True, messages=[{"role": "user", "content": "a koi pond 16:9"}])
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert requests.get(image_url(text), timeout=10).status_code == 200
    assert fl.requests("sync")[0]["json"]["image_size"]["width"] > \
        fl.requests("sync")[0]["json"]["image_size"]["height"]


def test_a_client_that_goes_cancels_the_queued_job(service, fl):
    fl.add_faults("504", "held")       # the sync call times out; the queued job stays queued
    body = json.dumps({"model": SCHNELL, "stream": True,
                       "messages": [{"role": "user", "content": "a slow cat"}]}).encode()
    host, port = service.url.removeprefix("http://").split(":")
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer "
            f"{API_KEY}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode() + body)
        wait_until(lambda: fl.requests("status"), timeout=20)     # queued and polled
    cancelled = wait_until(lambda: fl.requests("cancel"), timeout=20)
    assert cancelled[0]["status"] == 202
    assert not fl.requests("result")


@pytest.mark.parametrize("fault, error, code", [
    ("detail_string", openai.BadRequestError, None),
    ("nsfw", openai.BadRequestError, "content_policy_violation"),
    ("429", openai.RateLimitError, "rate_limit_exceeded"),
])
def test_fals_errors_reach_the_client_and_nothing_is_stored(service, fl, fault, error, code):
    before = stored(service)
    fl.add_faults(fault)
    with pytest.raises(error) as info:
        sdk(service).images.generate(model=DEV, prompt="a boat")   # no fallback for dev
    if code:
        assert info.value.code == code
    assert fl.key.split(":")[1] not in info.value.message
    assert stored(service) == before


@pytest.mark.parametrize("faults, reason", [(("429",), "rate_limit"),
                                            (("504", "504"), "timeout")])
def test_workers_ai_draws_when_fal_fails(service, fl, cf, faults, reason):
    fl.add_faults(*faults)
    raw = sdk(service).images.with_raw_response.generate(model=SCHNELL, prompt="a cute cat",
                                                         size="1024x1024")
    assert raw.parse().data[0].b64_json
    assert raw.headers["X-Image-Model"] == CF_SCHNELL
    assert raw.headers["X-Fallback-Reason"] == reason
    assert [r["model"] for r in cf.requests() if r["kind"] == "run"] == [CF_SCHNELL]


def test_dollars_are_counted(service, fl):
    def spent() -> float:
        usage = requests.get(service.api + "/usage", headers=bearer(ADMIN), timeout=10).json()
        return usage["service"]["spent_usd"]

    before = spent()
    sdk(service).images.generate(model=DEV, prompt="a red fox", size="1024x768")
    assert spent() == pytest.approx(before + 0.025)      # 0.8 MP, billed as 1 MP at $0.025


def test_models_lists_fal_with_dollar_prices(service):
    auth = bearer(API_KEY)
    listed = {m["id"]: m for m in requests.get(service.api + "/models", headers=auth,
                                               timeout=10).json()["data"]}
    assert listed[KONTEXT]["provider"] == "fal"
    detail = requests.get(f"{service.api}/models/{SCHNELL}", headers=auth, timeout=10).json()
    assert detail["cost"]["price_usd"]["per_megapixel"] == 0.003


def test_the_key_is_never_logged(service, fl):
    sdk(service).images.generate(model=SCHNELL, prompt="a quiet harbour")
    assert fl.key.split(":")[1] not in service.log()
