"""Cloudflare's partner models end to end: gunicorn and the strict fake on 127.0.0.1, through the
official `openai` SDK (CF_PARTNER_MODELS=true, the fake's file host in PROVIDER_FILE_HOSTS)."""

from __future__ import annotations

import base64

import openai
import pytest
import requests

from harness.service import API_KEY, cloudflare_env, start_service
from tests.support import image_url, png, sdk, size_of

pytestmark = pytest.mark.e2e





@pytest.fixture(scope="module")
def partner_service(fake_cf, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("partner-service")
    service = start_service(tmp, cloudflare_env(
        fake_cf, CF_PARTNER_MODELS="true", PROVIDER_FILE_HOSTS=f"127.0.0.1:{fake_cf.port}"))
    service.images = tmp / "images"          # type: ignore[attr-defined]
    yield service
    service.stop()


def partner_calls(cf) -> list[dict]:
    return [r for r in cf.requests() if r["kind"] == "partner"]


def test_gpt_image_2_draws_the_size_stated_and_keeps_it_past_the_files_expiry(
        partner_service, cf):
    result = sdk(partner_service).images.generate(
        model="openai/gpt-image-2", prompt="a lighthouse at dusk", size="1536x1024",
        response_format="url")
    (call,) = partner_calls(cf)
    assert call["status"] == 200
    assert call["json"]["input"]["size"] == "1536x1024"
    cf.advance_partner_clock(2 * 24 * 3600)          # the provider's link is gone now
    served = requests.get(result.data[0].url, timeout=10)
    assert served.status_code == 200
    assert size_of(served.content) == (1536, 1024)
    files = [r for r in cf.requests() if r["kind"] == "partner_file"]
    assert files and not any(r["authorization_present"] for r in files)


def test_an_edit_with_gpt_image_2_sends_the_image(partner_service, cf):
    result = sdk(partner_service).images.edit(
        model="gpt-image-2", image=("cat.png", png(), "image/png"), prompt="add a hat",
        size="1024x1024", response_format="b64_json")
    (call,) = partner_calls(cf)
    assert len(call["json"]["input"]["images"]) == 1
    assert call["json"]["input"]["images"][0].startswith("data:image/png;base64,")
    assert size_of(base64.b64decode(result.data[0].b64_json)) == (1024, 1024)


def test_imagen_4_fits_its_own_16_9_picture_to_the_size_asked(partner_service, cf):
    result = sdk(partner_service).images.generate(
        model="google/imagen-4", prompt="a wide valley", size="1024x576", response_format="url")
    (call,) = partner_calls(cf)
    assert call["json"]["input"] == {"prompt": call["json"]["input"]["prompt"],
                                     "aspect_ratio": "16:9"}
    # The fake draws 1344x768 for 16:9, as Google's models do; the answer is the size stated.
    assert size_of(requests.get(result.data[0].url, timeout=10).content) == (1024, 576)


def test_chat_with_nano_banana_2(partner_service, cf):
    reply = sdk(partner_service).chat.completions.create(
        model="nano-banana-2", messages=[{"role": "user", "content": "a koi pond 1:1"}])
    content = reply.choices[0].message.content
    assert reply.model == "google/nano-banana-2"
    assert size_of(requests.get(image_url(content), timeout=10).content) == (1024, 1024)
    assert partner_calls(cf)[0]["json"]["model"] == "google/nano-banana-2"


def test_models_lists_both_providers_with_dollar_prices(partner_service):
    auth = {"Authorization": f"Bearer {API_KEY}"}
    listed = {m["id"]: m for m in requests.get(partner_service.api + "/models", headers=auth,
                                               timeout=10).json()["data"]}
    assert listed["openai/gpt-image-2"]["provider"] == "cloudflare-partner"
    assert listed["@cf/black-forest-labs/flux-1-schnell"]["provider"] == "workers-ai"
    detail = requests.get(partner_service.api + "/models/openai/gpt-image-2", headers=auth,
                          timeout=10).json()
    assert detail["cost"]["price_usd"]["per_image"] > 0
    assert detail["cost"]["estimate_neurons"] is None


def test_no_credit_is_a_clear_error_and_nothing_is_stored(partner_service, cf):
    before = sorted(p.name for p in partner_service.images.rglob("*") if p.is_file())
    cf.add_partner_faults("2021")
    with pytest.raises(openai.RateLimitError) as info:
        sdk(partner_service).images.generate(model="openai/gpt-image-2", prompt="a boat")
    assert "Unified Billing credit" in info.value.message
    assert "CF_PARTNER_MODELS" in info.value.message
    after = sorted(p.name for p in partner_service.images.rglob("*") if p.is_file())
    assert after == before


def test_a_file_on_a_host_not_allowed_is_refused(partner_service, cf):
    cf.add_partner_faults("foreign_host")
    with pytest.raises(openai.APIStatusError) as info:
        sdk(partner_service).images.generate(model="openai/gpt-image-2", prompt="a boat")
    assert info.value.status_code == 502
    assert "PROVIDER_FILE_HOSTS" in info.value.message


def test_without_cf_partner_models_partner_ids_are_not_found(cf_service):
    with pytest.raises(openai.NotFoundError) as info:
        sdk(cf_service).images.generate(model="openai/gpt-image-2", prompt="a boat")
    assert info.value.code == "model_not_found"


def test_a_transparent_background_reaches_gpt_image_1_5_only(partner_service, cf):
    client = sdk(partner_service)
    client.images.generate(model="openai/gpt-image-1.5", prompt="a sticker of a fox",
                           background="transparent", output_format="png",
                           response_format="b64_json")
    (call,) = partner_calls(cf)
    assert call["json"]["input"]["background"] == "transparent"
    with pytest.raises(openai.BadRequestError) as info:
        client.images.generate(model="openai/gpt-image-2", prompt="a sticker of a fox",
                               background="transparent")
    assert info.value.code == "transparency_not_supported"


def test_partner_dollars_are_counted_and_a_dollar_budget_refuses(fake_cf, cf, tmp_path):
    # gpt-image-2 costs $0.053 an image (catalog/partners.py): a $0.10 day takes one, not two,
    # while a neuron budget never stops a model billed in dollars only.
    service = start_service(tmp_path, cloudflare_env(
        fake_cf, CF_PARTNER_MODELS="openai/gpt-image-2", DAILY_USD="$0.10", DAILY_NEURONS="1",
        PROVIDER_FILE_HOSTS=f"127.0.0.1:{fake_cf.port}", ADMIN_API_KEY="sk-admin-partner-9"))
    try:
        client = sdk(service)
        client.images.generate(model="gpt-image-2", prompt="a red kite", response_format="url")
        with pytest.raises(openai.RateLimitError) as info:
            client.images.generate(model="gpt-image-2", prompt="a red kite")
        assert info.value.code == "insufficient_quota"
        assert "DAILY_USD" in info.value.message and "$0.053" in info.value.message
        assert len(partner_calls(cf)) == 1               # the refused one was never sent
        usage = requests.get(service.api + "/usage", timeout=10,
                             headers={"Authorization": "Bearer sk-admin-partner-9"}).json()
        assert usage["service"]["spent_usd"] == pytest.approx(0.053)
        assert usage["service"]["spent_neurons"] == 0
    finally:
        service.stop()
