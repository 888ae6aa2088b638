"""Every catalog model, through chat and the Images API, against the strict fake Cloudflare.

Also: the Images API through the official SDK, aliases, the AI Gateway route, translation on
the same Cloudflare account, and the OpenAI-compatible image backend.
"""

from __future__ import annotations

import base64
import io

import openai
import pytest
import requests
from PIL import Image

from flux_worker.catalog.workers_ai import CATALOG
from harness.service import API_KEY, LLM_KEY, cloudflare_env, start_service
from tests.support import image_url

pytestmark = pytest.mark.e2e
SNIFF = {b"\xff\xd8\xff": "JPEG", b"\x89PNG": "PNG"}


def sdk(service) -> openai.OpenAI:
    return openai.OpenAI(base_url=service.api, api_key=API_KEY, max_retries=0, timeout=30)


def open_image(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


# img2img and inpainting need an input image: tests/e2e/test_edits_e2e.py drives them.
TEXT_MODELS = [m for m in CATALOG if not m.needs_image]


@pytest.mark.parametrize("model", TEXT_MODELS, ids=lambda m: m.short_name)
def test_every_model_through_chat(cf_service, cf, model):
    reply = sdk(cf_service).chat.completions.create(
        model=model.id, messages=[{"role": "user", "content": "a castle on a hill 16:9"}])
    assert reply.model == model.id
    content = reply.choices[0].message.content
    assert "📐 Image size: 1024x576" in content
    resp = requests.get(image_url(content), timeout=10)
    img = open_image(resp.content)
    assert img.size == (1024, 576)
    assert resp.headers["Content-Type"] == Image.MIME[img.format]
    sent = cf.requests()[-1]
    assert sent["status"] == 200 and sent["model"] == model.id
    if model.encoding == "multipart":
        assert sent["content_type"].startswith("multipart/form-data") and sent["form"]["prompt"]
    else:
        assert sent["content_type"] == "application/json" and sent["json"]["prompt"]


@pytest.mark.parametrize("model", TEXT_MODELS, ids=lambda m: m.short_name)
def test_every_model_through_the_images_api(cf_service, cf, model):
    result = sdk(cf_service).images.generate(model=model.short_name, prompt="a red fox",
                                             size="768x1024", response_format="b64_json")
    img = open_image(base64.b64decode(result.data[0].b64_json))
    assert img.size == (768, 1024)


def test_images_api_url_n2_and_sizes(cf_service, cf):
    client = sdk(cf_service)
    result = client.images.generate(model="sdxl-lightning", prompt="a lighthouse", n=2,
                                    size="1024x576", extra_body={"seed": 1234})
    assert len(result.data) == 2
    urls = [d.url for d in result.data]
    images = [requests.get(u, timeout=10).content for u in urls]
    assert all(open_image(b).size == (1024, 576) for b in images)
    # Each image of the batch gets its own seed: distinct, and reproducible from the first.
    seeds = [r["json"]["seed"] for r in cf.requests() if r["kind"] == "run"]
    assert sorted(seeds) == [1234, 1235]
    square = client.images.generate(model="dall-e-3", prompt="a fox", size="auto")
    assert open_image(requests.get(square.data[0].url, timeout=10).content).size == (1024, 1024)
    ratio = client.images.generate(model="flux-1-schnell", prompt="a fox",
                                   extra_body={"size": "9:16"})
    assert open_image(requests.get(ratio.data[0].url, timeout=10).content).size == (576, 1024)
    webp = client.images.generate(model="flux", prompt="a fox", response_format="b64_json",
                                  extra_body={"output_format": "webp"})
    raw = base64.b64decode(webp.data[0].b64_json)
    assert raw[:4] == b"RIFF" and raw[8:12] == b"WEBP"


def test_images_api_unknown_model_is_404(cf_service):
    with pytest.raises(openai.NotFoundError) as info:
        sdk(cf_service).images.generate(model="stable-cascade", prompt="x")
    assert info.value.body["code"] == "model_not_found"


def test_inline_options_reach_the_model(cf_service, cf):
    content = sdk(cf_service).chat.completions.create(
        model="phoenix", messages=[{"role": "user", "content":
                                    "a knight --seed 77 --steps 12 --no blur, text --ar 3:2"}],
    ).choices[0].message.content
    assert "🌱 Seed: 77" in content and "📐 Image size: 768x512" in content
    sent = cf.requests()[-1]["json"]
    assert sent == {"prompt": "a knight", "num_steps": 12, "width": 768, "height": 512,
                    "seed": 77, "negative_prompt": "blur, text"}


def test_models_endpoint_tells_the_truth(cf_service):
    client = sdk(cf_service)
    ids = {m.id for m in client.models.list()}
    assert ids == {m.id for m in CATALOG} | {"auto"}     # auto: the service chooses
    described = client.models.retrieve("@cf/black-forest-labs/flux-1-schnell").model_dump()
    assert described["capabilities"]["size_control"] is False
    assert described["capabilities"]["steps"] == {"field": "steps", "min": 1, "max": 8}


def test_image_models_setting_limits_the_offer(fake_cf, tmp_path):
    # EDIT_MODEL, like FLUX_MODEL, is offered even when IMAGE_MODELS leaves it out: off here.
    env = cloudflare_env(fake_cf, IMAGE_MODELS="flux-1-schnell,sdxl-lightning",
                         FLUX_MODEL="sdxl-lightning", EDIT_MODEL="")
    svc = start_service(tmp_path, env, workers=1)
    try:
        client = sdk(svc)
        assert {m.id for m in client.models.list()} == {
            "@cf/black-forest-labs/flux-1-schnell", "@cf/bytedance/stable-diffusion-xl-lightning",
            "auto"}
        reply = client.chat.completions.create(model="gpt-4o", messages=[
            {"role": "user", "content": "a cat"}])
        assert reply.model == "@cf/bytedance/stable-diffusion-xl-lightning"
        with pytest.raises(openai.NotFoundError):
            client.images.generate(model="phoenix", prompt="x")
    finally:
        svc.stop()


def test_ai_gateway_route_and_header(tmp_path):
    from harness.fakes import cloudflare
    with cloudflare.start(gateway_token="gw-token-1", gateway_run_only=True) as fake:
        svc = start_service(tmp_path, cloudflare_env(
            fake, CF_AI_GATEWAY=f"{fake.url}/gateway/v1/test-account/my-gw",
            CF_AI_GATEWAY_TOKEN="gw-token-1"), workers=1)
        try:
            for _ in range(2):
                reply = sdk(svc).chat.completions.create(model="x", messages=[
                    {"role": "user", "content": "a cat"}])
                assert "🌟" in reply.choices[0].message.content
            runs = [r for r in fake.requests() if r["kind"] == "run"]
            assert all(r["cf_aig_authorization"] == "Bearer gw-token-1" for r in runs)
            # The documented form answered 7003 once; the /run/ form is remembered after that.
            assert [r["status"] for r in runs] == [404, 200, 200]
            assert "gw-token-1" not in svc.log()
        finally:
            svc.stop()


def test_translation_on_the_same_cloudflare_account(fake_cf, cf, tmp_path):
    svc = start_service(tmp_path, cloudflare_env(fake_cf, CF_IS_TRANSLATE="true"), workers=1)
    try:
        content = sdk(svc).chat.completions.create(model="x", messages=[
            {"role": "user", "content": "一只猫 16:9"}]).choices[0].message.content
        assert "💬 Prompt model: @cf/meta/llama-3.1-8b-instruct-fast" in content
        llm = [r for r in cf.requests() if r["kind"] == "llm"][-1]
        assert llm["path"].endswith("/accounts/test-account/ai/v1/chat/completions")
        assert llm["json"]["model"] == "@cf/meta/llama-3.1-8b-instruct-fast"
    finally:
        svc.stop()


def test_openai_compatible_image_backend(fake_cf, cf, tmp_path):
    svc = start_service(tmp_path, {
        "API_KEY": API_KEY, "IMAGE_BACKEND": "openai", "IMAGE_API_BASE": fake_cf.url,
        "IMAGE_API_KEY": LLM_KEY, "IMAGE_MODELS": "sd-turbo,dall-e-3"}, workers=1)
    try:
        client = sdk(svc)
        assert {m.id for m in client.models.list()} == {"sd-turbo", "dall-e-3", "auto"}
        content = client.chat.completions.create(model="sd-turbo", messages=[
            {"role": "user", "content": "a cat 16:9"}]).choices[0].message.content
        img = open_image(requests.get(image_url(content), timeout=10).content)
        assert img.size == (1024, 576)
        sent = [r for r in cf.requests() if r["kind"] == "images"][-1]["json"]
        assert sent["model"] == "sd-turbo" and sent["size"] == "1024x576"
    finally:
        svc.stop()
