"""Replicate end to end: gunicorn against the strict fake Replicate (and the fake Cloudflare for
fallback) on 127.0.0.1, through the official `openai` SDK and `requests`."""

from __future__ import annotations

import base64
import socket

import openai
import pytest
import requests

from harness.fakes import replicate
from harness.service import API_KEY, cloudflare_env, start_service
from tests.support import bearer, image_url, png, sdk, size_of, wait_until

pytestmark = pytest.mark.e2e

ADMIN = "sk-admin-replicate-e2e-000009"
SCHNELL = "replicate:black-forest-labs/flux-schnell"
DEV = "replicate:black-forest-labs/flux-dev"
KONTEXT = "replicate:black-forest-labs/flux-kontext-pro"
CF_SCHNELL = "@cf/black-forest-labs/flux-1-schnell"


@pytest.fixture(scope="module")
def fake_replicate():
    server = replicate.start(duration=0.2)
    yield server
    server.stop()


@pytest.fixture
def rep(fake_replicate):
    fake_replicate.reset()
    yield fake_replicate
    fake_replicate.reset()


@pytest.fixture(scope="module")
def service(fake_cf, fake_replicate, tmp_path_factory):
    """Workers AI and Replicate side by side; Replicate's schnell falls back to Workers AI's."""
    svc = start_service(tmp_path_factory.mktemp("replicate"), cloudflare_env(
        fake_cf, REPLICATE_API_TOKEN=replicate.TOKEN, REPLICATE_API_BASE=fake_replicate.api,
        PROVIDER_FILE_HOSTS=fake_replicate.host_port, ADMIN_API_KEY=ADMIN,
        MODEL_FALLBACKS=f"{SCHNELL}=flux-1-schnell", PROVIDER_FAILURE_LIMIT="0",
        UPSTREAM_RETRIES="0"), workers=1)
    yield svc
    svc.stop()





def spent_usd(service) -> float:
    usage = requests.get(service.api + "/usage", headers=bearer(ADMIN), timeout=10).json()
    return usage["service"]["spent_usd"]


def test_a_size_is_drawn_at_the_nearest_ratio_and_delivered_exactly(service, rep):
    result = sdk(service).images.generate(model=SCHNELL, prompt="a wide valley",
                                          size="1024x576", response_format="url")
    (create,) = rep.requests("create")
    assert create["json"]["input"]["aspect_ratio"] == "16:9"
    assert create["json"]["input"]["num_outputs"] == 1
    # Held no longer than UPSTREAM_TIMEOUT (10 s) allows, with time left for the answer.
    assert create["prefer"].startswith("wait=") and 1 <= int(create["prefer"][5:]) <= 8
    rep.advance_clock(replicate.FILE_LIFETIME)       # Replicate's file is gone; ours is not
    assert size_of(requests.get(result.data[0].url, timeout=10).content) == (1024, 576)
    files = rep.requests("file")
    assert files and all(f["authorization"] is None for f in files)


def test_n_2_makes_two_predictions_and_counts_their_dollars(service, rep):
    before = spent_usd(service)
    result = sdk(service).images.generate(model="replicate-flux-schnell", prompt="two cats",
                                          n=2, size="512x512", response_format="b64_json")
    assert [size_of(base64.b64decode(d.b64_json)) for d in result.data] == [(512, 512)] * 2
    assert len(rep.requests("create")) == 2
    assert spent_usd(service) == pytest.approx(before + 2 * 0.003)


def test_an_edit_with_kontext_sends_the_picture_inline(service, rep):
    result = sdk(service).images.edit(model=KONTEXT, image=("cat.png", png(300, 200), "image/png"),
                                      prompt="make it night", size="768x512",
                                      response_format="b64_json")
    (create,) = rep.requests("create")
    assert create["json"]["input"]["input_image"].startswith("data:image/png;base64,")
    assert create["json"]["input"]["aspect_ratio"] == "3:2"
    assert size_of(base64.b64decode(result.data[0].b64_json)) == (768, 512)


def test_a_chat_stream_draws_with_a_prediction_that_is_polled(service, rep):
    rep.hold_at_most(0.1)                            # the hold ends before the prediction
    rep.add_faults({"kind": "slow", "seconds": 1.5})
    stream = sdk(service).chat.completions.create(
        model="replicate-flux-dev", stream=True,
        messages=[{"role": "user", "content": "a koi pond"}])
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert size_of(requests.get(image_url(text), timeout=10).content) == (1024, 1024)
    assert rep.requests("create")[0]["model"] == "black-forest-labs/flux-dev"
    assert rep.requests("get")                       # it was polled to its end


def test_a_client_who_goes_cancels_the_prediction(service, rep):
    rep.hold_at_most(0.1)
    rep.add_faults({"kind": "slow", "seconds": 60})
    body = (b'{"model": "replicate-flux-schnell", "stream": true, "messages": '
            b'[{"role": "user", "content": "a slow cat"}]}')
    host, port = service.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                     b"Authorization: Bearer " + API_KEY.encode() + b"\r\n"
                     b"Content-Type: application/json\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\n\r\n" + body)
        assert sock.recv(64).startswith(b"HTTP/1.1 200")
        wait_until(lambda: rep.requests("get"), timeout=20)
    cancels = wait_until(lambda: rep.requests("cancel"), timeout=30)
    assert cancels[0]["prediction"] == rep.requests("create")[0]["prediction"]
    assert cancels[0]["authorization"] == f"Bearer {replicate.TOKEN}"


def test_no_credit_is_a_clear_quota_error(service, rep):
    rep.add_faults("402")
    with pytest.raises(openai.RateLimitError) as info:
        sdk(service).images.generate(model=DEV, prompt="a boat")
    assert info.value.code == "insufficient_quota"
    assert "Replicate" in info.value.message and replicate.TOKEN not in info.value.message


def test_an_input_replicate_refuses_is_a_400_that_quotes_it(service, rep):
    rep.add_faults("422")
    with pytest.raises(openai.BadRequestError) as info:
        sdk(service).images.generate(model=DEV, prompt="a boat")
    assert "prompt is longer than this version takes" in info.value.message


@pytest.mark.parametrize("fault,reason", [("429", "rate_limit"), ("402", "quota"),
                                          ("500", "upstream_error")])
def test_a_passing_failure_falls_back_to_workers_ai(service, rep, cf, fault, reason):
    rep.add_faults(fault)
    raw = sdk(service).images.with_raw_response.generate(model=SCHNELL, prompt="a cat",
                                                         size="1024x1024")
    assert raw.parse().data[0].b64_json
    assert raw.headers["X-Image-Model"] == CF_SCHNELL
    assert raw.headers["X-Fallback-Reason"] == reason
    assert [r["model"] for r in cf.requests() if r["kind"] == "run"] == [CF_SCHNELL]


def test_a_refused_prompt_does_not_fall_back(service, rep, cf):
    rep.add_faults("nsfw")
    with pytest.raises(openai.BadRequestError) as info:
        sdk(service).images.generate(model=SCHNELL, prompt="a cat")
    assert info.value.code == "content_policy_violation"
    assert not [r for r in cf.requests() if r["kind"] == "run"]


def test_models_lists_replicate_with_dollar_prices(service):
    detail = requests.get(service.api + "/models/" + SCHNELL, headers=bearer(API_KEY),
                          timeout=10).json()
    assert detail["provider"] == "replicate"
    assert detail["cost"]["price_usd"]["per_image"] == 0.003
