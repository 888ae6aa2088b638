"""Streamed Images answers and GPT-image parity end to end: gunicorn, the strict fake Cloudflare,
the official `openai` SDK. Every answer and event validates against OpenAI's schemas."""

from __future__ import annotations

import base64
import io
import socket
from urllib.parse import urlsplit

import openai
import pytest
import requests
from PIL import Image

from harness.fakes import cloudflare
from harness.service import API_KEY, CF_ACCOUNT, CF_TOKEN, LLM_KEY, cloudflare_env, start_service
from tests.e2e.test_abandon import UPSTREAM_SECONDS, generations_ended, image_calls, stored
from tests.support import wait_until
from tests.test_image_streams import DEV, INPAINT, check, mask_png, png

pytestmark = pytest.mark.e2e


def sdk(service) -> openai.OpenAI:
    return openai.OpenAI(base_url=service.api, api_key=API_KEY, max_retries=0, timeout=30)


def runs(cf) -> list[dict]:
    return [r for r in cf.requests() if r["kind"] == "run"]


def decoded(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def test_images_generate_stream_yields_the_image(cf_service, cf):
    stream = sdk(cf_service).images.generate(model="gpt-image-1", prompt="a red fox",
                                             stream=True, partial_images=2, size="1024x1024",
                                             quality="medium")
    got = list(stream)
    assert [event.type for event in got] == ["image_generation.completed"]
    event = got[0].model_dump()
    check("ImageGenStreamEvent", event)
    assert decoded(event["b64_json"]).size == (1024, 1024)
    assert event["size"] == "1024x1024" and event["quality"] == "medium"
    # The link of the stored image comes along (an extra field the SDK keeps).
    assert requests.get(event["url"], timeout=10).status_code == 200
    (call,) = runs(cf)
    assert call["model"].endswith("flux-1-schnell")


def test_images_edit_stream_yields_the_image(cf_service, cf):
    stream = sdk(cf_service).images.edit(image=("cat.png", png((800, 600)), "image/png"),
                                         prompt="make it blue", model="gpt-image-1",
                                         stream=True, partial_images=1)
    got = list(stream)
    assert [event.type for event in got] == ["image_edit.completed"]
    event = got[0].model_dump()
    check("ImageEditStreamEvent", event)
    assert decoded(event["b64_json"]).size == (1024, 768)
    assert event["size"] == "auto"      # 1024x768 is none of OpenAI's sizes


def test_a_failure_in_the_stream_raises_in_the_sdk(cf_service, cf):
    cf.add_faults("3030")               # never retried: the upstream refuses
    stream = sdk(cf_service).images.generate(model="gpt-image-1", prompt="a fox", stream=True)
    with pytest.raises(openai.APIError) as info:
        list(stream)
    assert info.value.message


def test_a_bad_request_is_an_http_error_before_any_stream(cf_service, cf):
    with pytest.raises(openai.BadRequestError) as info:
        sdk(cf_service).images.generate(model="gpt-image-1", prompt="a fox", stream=True,
                                        background="transparent")
    assert info.value.code == "transparency_not_supported"
    assert runs(cf) == []


@pytest.mark.parametrize("model, url, b64", [
    ("gpt-image-1", False, True), ("gpt-image-1.5", False, True),
    ("dall-e-2", True, False), ("dall-e-3", True, False),
    ("flux-1-schnell", True, True),
])
def test_default_formats_per_model_name(cf_service, cf, model, url, b64):
    raw = sdk(cf_service).images.with_raw_response.generate(model=model, prompt="a fox")
    result = raw.parse()
    check("ImagesResponse", raw.http_response.json())      # the answer as sent
    item = result.data[0]
    assert (item.url is not None, item.b64_json is not None) == (url, b64)
    if b64:
        assert decoded(item.b64_json).size == (1024, 1024)
    link = raw.headers["X-Image-Links"]
    assert requests.get(link, timeout=10).status_code == 200


def test_an_openai_names_size_is_drawn_exactly(cf_service, cf):
    raw = sdk(cf_service).images.with_raw_response.generate(model="gpt-image-1",
                                                             prompt="a tall tower",
                                                             size="1024x1536")
    result = raw.parse()
    assert result.size == "1024x1536" and raw.headers["X-Image-Size"] == "1024x1536"
    assert decoded(result.data[0].b64_json).size == (1024, 1536)
    assert runs(cf)[-1]["model"] == DEV
    check("ImagesResponse", raw.http_response.json())


@pytest.mark.parametrize("model", ["gpt-image-1", "dall-e-2"])
def test_a_mask_with_an_openai_name_is_drawn_by_a_model_that_takes_masks(cf_service, cf, model):
    raw = sdk(cf_service).images.with_raw_response.edit(
        image=("cat.png", png((512, 512)), "image/png"),
        mask=("mask.png", mask_png((512, 512)), "image/png"), prompt="a hat", model=model)
    body = raw.http_response.json()
    check("ImagesResponse", body)           # `model` and `requested_model` are extra keys
    assert body["model"] == INPAINT
    (call,) = runs(cf)
    assert call["model"] == INPAINT and call["status"] == 200


def test_gpt_image_fields_are_answered(cf_service, cf):
    result = sdk(cf_service).images.generate(
        model="gpt-image-1", prompt="a fox", quality="high", output_format="webp",
        output_compression=50, background="opaque", moderation="low")
    assert (result.quality, result.output_format, result.background) == ("high", "webp",
                                                                         "opaque")
    assert result.usage is not None and result.usage.output_tokens > 0
    assert decoded(result.data[0].b64_json).format == "WEBP"
    (call,) = runs(cf)
    assert call["json"]["steps"] == 8       # high: twice FLUX_NUM_STEPS (4)


def test_a_dropped_image_stream_stops_its_generation_and_stores_nothing(tmp_path):
    """As chat streams: a client that leaves cancels; the upstream call already running is
    the only one made (and charged), and no image is stored for nobody."""
    slow = cloudflare.start(account_id=CF_ACCOUNT, api_token=CF_TOKEN, llm_key=LLM_KEY,
                            latency=UPSTREAM_SECONDS)
    service = start_service(tmp_path, cloudflare_env(slow, UPSTREAM_RETRIES="2"), workers=1)
    try:
        parts = urlsplit(service.url)
        body = b'{"model": "gpt-image-1", "prompt": "a fox", "stream": true}'
        head = (f"POST /v1/images/generations HTTP/1.1\r\nHost: {parts.hostname}\r\n"
                f"Authorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n")
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
            sock.sendall(head.encode() + body)
            answer = b""
            while b": keep-alive" not in answer:       # the first comment comes at once
                piece = sock.recv(1024)
                assert piece, answer
                answer += piece
            # Leave once the upstream call is under way (on a loaded machine the generation may
            # not have reached it yet when the first comment arrives).
            wait_until(lambda: image_calls(slow), timeout=UPSTREAM_SECONDS,
                       message="the upstream call to begin")
        assert answer.startswith(b"HTTP/1.1 200")
        wait_until(lambda: generations_ended(service, slow), timeout=UPSTREAM_SECONDS + 10,
                   interval=0.2, message="the abandoned generation to end")
        assert len(image_calls(slow)) == 1
        assert stored(tmp_path / "images") == 0, "an image was stored for a client that left"
    finally:
        service.stop()
        slow.stop()
