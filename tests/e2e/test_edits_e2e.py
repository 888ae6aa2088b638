"""Edits, variations and chat edits end to end: gunicorn, the strict fake Cloudflare, openai SDK."""

from __future__ import annotations

import base64
import io
import json

import openai
import pytest
import requests
from PIL import Image

from harness.service import API_KEY, cloudflare_env, start_service

pytestmark = pytest.mark.e2e

KLEIN = "@cf/black-forest-labs/flux-2-klein-4b"
DEV = "@cf/black-forest-labs/flux-2-dev"
INPAINT = "@cf/runwayml/stable-diffusion-v1-5-inpainting"
IMG2IMG = "@cf/runwayml/stable-diffusion-v1-5-img2img"


def png(size=(800, 600), colour=(200, 40, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


def mask_png(size=(800, 600)) -> bytes:
    mask = Image.new("RGBA", size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, size[0] // 2, size[1]))
    out = io.BytesIO()
    mask.save(out, "PNG")
    return out.getvalue()


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def client_for(service) -> openai.OpenAI:
    return openai.OpenAI(base_url=service.api, api_key=API_KEY, max_retries=0, timeout=30)


def runs(cf) -> list[dict]:
    return [r for r in cf.requests() if r["kind"] == "run"]


@pytest.fixture(scope="module")
def strict_service(fake_cf, tmp_path_factory):
    """No EDIT_MODEL, remote fetching on (so the guard itself answers), a small upload limit."""
    tmp = tmp_path_factory.mktemp("edits-strict")
    service = start_service(tmp, cloudflare_env(fake_cf, EDIT_MODEL="",
                                                FETCH_REMOTE_IMAGES="true",
                                                MAX_UPLOAD_BYTES=200_000), workers=1)
    yield service
    service.stop()


# --- images.edit ---------------------------------------------------------------------------------

def test_edit_one_image_through_edit_model(cf, cf_service):
    resp = client_for(cf_service).images.edit(image=("cat.png", png(), "image/png"),
                                              prompt="make it blue")
    assert resp.data[0].url.startswith(cf_service.url + "/image/")
    extra = resp.model_dump()
    assert extra["model"] == KLEIN and extra["requested_model"].endswith("flux-1-schnell")
    (call,) = runs(cf)
    assert call["model"] == KLEIN and call["status"] == 200
    assert set(call["files"]) == {"input_image_0"}
    image = requests.get(resp.data[0].url, timeout=10)
    assert image.status_code == 200
    assert Image.open(io.BytesIO(image.content)).size == (1024, 768)


def test_edit_several_images(cf, cf_service):
    resp = client_for(cf_service).images.edit(
        image=[("a.png", png(), "image/png"), ("b.png", png((300, 900)), "image/png"),
               ("c.png", png((2000, 2000)), "image/png")],
        prompt="put them together", model="flux-2-dev", response_format="b64_json")
    assert Image.open(io.BytesIO(base64.b64decode(resp.data[0].b64_json))).format
    (call,) = runs(cf)
    assert call["model"] == DEV and call["status"] == 200
    assert set(call["files"]) == {"input_image_0", "input_image_1", "input_image_2"}


def test_edit_with_a_mask(cf, cf_service):
    resp = client_for(cf_service).images.edit(
        image=("room.png", png(), "image/png"), mask=("mask.png", mask_png((400, 300)),
                                                      "image/png"),
        prompt="a red sofa", model="stable-diffusion-v1-5-inpainting", size="512x512")
    got = Image.open(io.BytesIO(requests.get(resp.data[0].url, timeout=10).content))
    assert got.size == (512, 512)
    (call,) = runs(cf)
    assert call["model"] == INPAINT and call["status"] == 200
    assert {"image_b64", "mask", "prompt"} <= set(call["json"])


def test_img2img_with_strength(cf, cf_service):
    resp = requests.post(cf_service.api + "/images/edits", headers={
        "Authorization": f"Bearer {API_KEY}"}, json={
        "prompt": "as a watercolour", "model": "img2img", "strength": 0.3,
        "images": [{"image_url": data_url(png((640, 480)))}]}, timeout=30)
    assert resp.status_code == 200, resp.text
    (call,) = runs(cf)
    assert call["model"] == IMG2IMG and call["json"]["strength"] == 0.3


def test_create_variation(cf, cf_service):
    resp = client_for(cf_service).images.create_variation(
        image=("cat.png", png(), "image/png"), n=2, size="512x512")
    assert len(resp.data) == 2 and len({item.url for item in resp.data}) == 2
    calls = runs(cf)
    assert len(calls) == 2 and all(c["model"] == KLEIN for c in calls)
    assert len({c["form"]["seed"] for c in calls}) == 2      # each variation its own seed


# --- chat ----------------------------------------------------------------------------------------

def test_chat_with_an_attached_image(cf, cf_service):
    resp = client_for(cf_service).chat.completions.create(model="flux", messages=[{
        "role": "user", "content": [
            {"type": "text", "text": "make the sky pink"},
            {"type": "image_url", "image_url": {"url": data_url(png((600, 600)))}}]}])
    content = resp.choices[0].message.content
    assert "attached image 1 (600x600)" in content and "make the sky pink" in content
    assert "flux-2-klein-4b" in content and "/image/" in content.rsplit("(", 1)[-1]
    (call,) = runs(cf)
    assert call["model"] == KLEIN and "input_image_0" in call["files"]


def test_chat_edit_after_an_earlier_answer_streams(cf, cf_service):
    client = client_for(cf_service)
    first = client.chat.completions.create(model="flux", messages=[
        {"role": "user", "content": "a red car"}]).choices[0].message.content
    link = first.rsplit("(", 1)[-1].rstrip(")")
    stream = client.chat.completions.create(model="flux", stream=True, messages=[
        {"role": "user", "content": "a red car"},
        {"role": "assistant", "content": first},
        {"role": "user", "content": "make it blue --edit"}])
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert f"[1]({link})" in text and "/image/" in text.rsplit("(", 1)[-1]
    calls = runs(cf)
    assert [c["model"] for c in calls] == ["@cf/black-forest-labs/flux-1-schnell", KLEIN]
    assert "input_image_0" in calls[1]["files"]


# --- errors: 400 (413), nothing sent upstream ----------------------------------------------------

def _refused(cf, call, status=400) -> dict:
    with pytest.raises(openai.APIStatusError) as info:
        call()
    assert info.value.status_code == status
    assert runs(cf) == []
    return info.value.body if isinstance(info.value.body, dict) else json.loads(info.value.body)


def test_errors_are_400_and_nothing_goes_upstream(cf, cf_service):
    client = client_for(cf_service)
    image = ("a.png", png((64, 64)), "image/png")
    body = _refused(cf, lambda: client.images.edit(image=[image] * 5, prompt="x",
                                                   model="flux-2-dev"))
    assert body["code"] == "too_many_images"
    body = _refused(cf, lambda: client.images.edit(image=("a.png", b"not an image", "image/png"),
                                                   prompt="x"))
    assert body["code"] == "invalid_image"
    body = _refused(cf, lambda: client.images.edit(image=[image, image],
                                                   mask=("m.png", mask_png((64, 64)),
                                                                      "image/png"),
                                                   prompt="x", model="klein-4b"))
    assert body["code"] == "mask_not_supported"
    body = _refused(cf, lambda: client.chat.completions.create(model="flux", messages=[{
        "role": "user", "content": [{"type": "text", "text": "x"}, {
            "type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]))
    assert "FETCH_REMOTE_IMAGES" in body["message"]
    body = _refused(cf, lambda: client.chat.completions.create(model="flux", stream=True,
                                                               messages=[{
        "role": "user", "content": [{"type": "text", "text": "x"}, {
            "type": "image_url", "image_url": {"url": cf_service.url + "/image/" + "Q" * 22}}]}]))
    assert body["code"] == "image_expired"


def test_strict_service_errors(cf, strict_service):
    client = client_for(strict_service)
    body = _refused(cf, lambda: client.images.edit(image=("a.png", png((64, 64)), "image/png"),
                                                   prompt="x", model="flux-1-schnell"))
    assert "EDIT_MODEL" in body["message"]
    # FETCH_REMOTE_IMAGES=true: a name that resolves to loopback is refused by the guard.
    body = _refused(cf, lambda: client.chat.completions.create(model="klein-4b", messages=[{
        "role": "user", "content": [{"type": "text", "text": "x"}, {
            "type": "image_url", "image_url": {"url": strict_service.url.replace(
                "127.0.0.1", "localhost") + "/healthz"}}]}]))
    assert "internal address" in body["message"]
    big = ("big.png", png((900, 900)) + b"\0" * 300_000, "image/png")
    body = _refused(cf, lambda: client.images.edit(image=big, prompt="x", model="klein-4b"),
                    status=413)
    assert "MAX_UPLOAD_BYTES" in body["message"]


# --- IMAGE_BACKEND=openai: edits and variations go to the upstream's own endpoints --------------

def test_openai_backend_forwards_edits_and_variations(cf, fake_cf, tmp_path):
    from harness.service import LLM_KEY
    service = start_service(tmp_path, {
        "API_KEY": API_KEY, "IMAGE_BACKEND": "openai", "IMAGE_API_BASE": fake_cf.url,
        "IMAGE_API_KEY": LLM_KEY, "IMAGE_MODELS": "gpt-image-1"}, workers=1)
    try:
        client = client_for(service)
        edited = client.images.edit(image=[("a.png", png((256, 256)), "image/png")] * 2,
                                    mask=("m.png", mask_png((256, 256)), "image/png"),
                                    prompt="make it blue", size="512x512")
        # gpt-image-* names answer base64 unless a link is asked for, as OpenAI's do.
        got = Image.open(io.BytesIO(base64.b64decode(edited.data[0].b64_json)))
        assert got.size == (512, 512)
        client.images.create_variation(image=("a.png", png((256, 256)), "image/png"))
        calls = [r for r in cf.requests() if r["kind"] == "images"]
        assert [c["route"] for c in calls] == ["openai_edits", "openai_variations"]
        assert all(c["status"] == 200 for c in calls)
        assert calls[0]["form"]["prompt"] == "make it blue" and "mask" in calls[0]["files"]
        assert "image[]" in calls[0]["files"] and "prompt" not in calls[1]["form"]
    finally:
        service.stop()


# --- AI Gateway: FLUX.2 multipart calls go direct (reference §8) ---------------------------------

def test_gateway_multipart_goes_direct_and_says_so_once(tmp_path):
    from harness.fakes import cloudflare
    from harness.service import CF_ACCOUNT, CF_TOKEN
    fake = cloudflare.start(account_id=CF_ACCOUNT, api_token=CF_TOKEN,
                            gateway_multipart_7000=True)
    service = start_service(tmp_path, cloudflare_env(
        fake, CF_AI_GATEWAY=f"{fake.url}/gateway/v1/{CF_ACCOUNT}/gw"), workers=1)
    try:
        client = client_for(service)
        client.images.edit(image=("a.png", png((300, 300)), "image/png"), prompt="blue",
                           model="klein-4b")
        client.images.generate(prompt="a cat", model="klein-4b")      # text only
        client.images.generate(prompt="a dog", model="klein-4b")
        calls = [(r["route"], r["status"]) for r in fake.requests() if r["kind"] == "run"]
        # The edit went direct; the first text-only call met 7000 on the gateway and fell
        # back; after that every multipart call goes direct.
        assert calls == [("direct", 200), ("gateway", 500), ("direct", 200), ("direct", 200)]
        assert service.log().count("go to the direct route") == 1
    finally:
        service.stop()
        fake.stop()


@pytest.mark.parametrize("model", ["img2img", "inpainting"])
def test_image_models_refuse_text_only_requests(cf, cf_service, model):
    client = client_for(cf_service)
    body = _refused(cf, lambda: client.images.generate(model=model, prompt="a fox"))
    assert body["code"] == "image_required"
    body = _refused(cf, lambda: client.chat.completions.create(model=model, messages=[
        {"role": "user", "content": "a fox"}]))
    assert body["code"] == "image_required"
