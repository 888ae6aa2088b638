"""Clients that assume OpenAI's exact behaviour, against the real gunicorn and the fake Cloudflare.

OpenAI's documented gpt-image-1 code runs unchanged on every GPT image alias; DALL·E names still
answer links; `modalities` adds OpenRouter's `images` in both answer forms, read the way clients
read extra fields from the official SDK; the stream never splits the image tag and never carries
base64.
"""

from __future__ import annotations

import base64
import io
import json

import openai
import pytest
import requests
from PIL import Image

from flux_worker.catalog.spec import GPT_IMAGE_ALIASES
from harness.service import API_KEY
from tests.support import IMAGE_LINK, image_url

pytestmark = pytest.mark.e2e


def sdk(service) -> openai.OpenAI:
    return openai.OpenAI(base_url=service.api, api_key=API_KEY, max_retries=0, timeout=30)


@pytest.mark.parametrize("alias", GPT_IMAGE_ALIASES)
def test_openais_gpt_image_snippet_runs_unchanged(cf_service, cf, alias):
    client = sdk(cf_service)
    # OpenAI's documented example, with only the model name varied.
    prompt = """
    A children's book drawing of a veterinarian using a stethoscope to
    listen to the heartbeat of a baby otter.
    """
    result = client.images.generate(model=alias, prompt=prompt)
    image_base64 = result.data[0].b64_json
    image_bytes = base64.b64decode(image_base64)
    image = Image.open(io.BytesIO(image_bytes))
    image.load()
    assert image.size == (1024, 1024)
    assert result.data[0].url is None
    # The alias means FLUX_MODEL: the fake Cloudflare saw flux-1-schnell.
    assert cf.requests()[-1]["model"] == "@cf/black-forest-labs/flux-1-schnell"


def test_gpt_image_alias_gives_a_link_when_asked(cf_service, cf):
    result = sdk(cf_service).images.generate(model="gpt-image-1", prompt="a fox",
                                             response_format="url")
    assert result.data[0].b64_json is None
    assert requests.get(result.data[0].url, timeout=10).status_code == 200


def test_dall_e_3_still_answers_a_link(cf_service, cf):
    result = sdk(cf_service).images.generate(model="dall-e-3", prompt="a fox", size="1024x1024")
    assert result.data[0].b64_json is None
    resp = requests.get(result.data[0].url, timeout=10)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("image/")


def test_modalities_add_message_images(cf_service, cf):
    reply = sdk(cf_service).chat.completions.create(
        model="flux-1-schnell", messages=[{"role": "user", "content": "a castle 16:9"}],
        extra_body={"modalities": ["image", "text"]})
    message = reply.choices[0].message
    url = image_url(message.content)
    # The SDK keeps fields it does not model in model_extra; to_dict() shows them too.
    assert message.model_extra["images"] == [{"type": "image_url", "image_url": {"url": url}}]
    assert message.to_dict()["images"][0]["image_url"]["url"] == url
    image = Image.open(io.BytesIO(requests.get(url, timeout=10).content))
    assert image.size == (1024, 576)
    plain = sdk(cf_service).chat.completions.create(
        model="flux-1-schnell", messages=[{"role": "user", "content": "a castle"}])
    assert "images" not in (plain.choices[0].message.model_extra or {})


def test_modalities_add_delta_images_to_the_chunk_with_the_image(cf_service, cf):
    stream = sdk(cf_service).chat.completions.create(
        model="flux-1-schnell", messages=[{"role": "user", "content": "a castle 16:9"}],
        stream=True, extra_body={"modalities": ["image", "text"]})
    chunks = [c for c in stream if c.choices]
    carrying = [c.choices[0].delta for c in chunks if "images" in (
        c.choices[0].delta.model_extra or {})]
    assert len(carrying) == 1
    (delta,) = carrying
    url = image_url(delta.content)
    assert delta.to_dict()["images"] == [{"type": "image_url", "image_url": {"url": url}}]
    content = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert image_url(content) == url
    assert requests.get(url, timeout=10).status_code == 200


# A link is ~100 bytes; an inline 1024x1024 JPEG in base64 is ~100 KB or more.
MAX_EVENT_BYTES = 8192


@pytest.mark.parametrize("body", [
    {"model": "flux-1-schnell"},
    {"model": "sdxl-lightning", "modalities": ["image", "text"]},
    {"model": "flux-2-dev", "stream_options": {"include_usage": True}},
], ids=["schnell", "sdxl-modalities", "flux2-usage"])
def test_every_chunk_brings_the_tag_whole_and_no_base64(cf_service, cf, body):
    resp = requests.post(cf_service.api + "/chat/completions", timeout=30, stream=True,
                         headers={"Authorization": f"Bearer {API_KEY}"},
                         json={"messages": [{"role": "user", "content": "a tower 3:2"}],
                               "stream": True, **body})
    assert resp.status_code == 200
    tagged = []
    pieces = []
    # Every event as it arrives on the wire: one `data:` line each, each small.
    for line in resp.iter_lines(decode_unicode=True):
        if not line:
            continue
        assert line.startswith("data: ") and len(line.encode()) < MAX_EVENT_BYTES, line[:200]
        assert "base64," not in line and "data:image" not in line
        if line == "data: [DONE]":
            break
        chunk = json.loads(line[len("data: "):])
        if not chunk["choices"]:
            continue
        piece = chunk["choices"][0]["delta"].get("content") or ""
        pieces.append(piece)
        if "!" in piece or "](" in piece or "[" in piece:
            tagged.append(piece)
    # Exactly one chunk has the tag, and it has all of it.
    assert len(tagged) == 1, pieces
    (tag,) = IMAGE_LINK.findall(tagged[0])
    assert image_url("".join(pieces)) == tag
    assert requests.get(tag, timeout=10).status_code == 200
