"""The HTTP API through Flask's test client: chat, stream, models, images, auth, CORS, proxies."""

from __future__ import annotations

import base64
import functools
import io
import json
import re

import pytest
import responses
from PIL import Image

from flux_worker.generation.sizes import PRESETS
from tests import support
from tests.support import IMAGE_LINK, TEST_KEY, image_url, make_config, sse_events

# What a client made for ChatGPT sends: a model name this server does not have.
chat = functools.partial(support.chat, model="gpt-4o")


def text_of(response) -> str:
    """Return the text of a chat completion answer."""
    return response.get_json()["choices"][0]["message"]["content"]


def image_at(client, url):
    path = url.split("://", 1)[1].split("/", 1)[1]
    resp = client.get("/" + path)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp, Image.open(io.BytesIO(resp.data))


@pytest.mark.parametrize("ratio,size", sorted(PRESETS.items()))
def test_chat_gives_image_of_the_stated_size_for_every_preset(client, auth, ratio, size):
    resp = chat(client, f"a cute cat {ratio}", headers=auth)
    assert resp.status_code == 200
    body = resp.get_json()
    content = body["choices"][0]["message"]["content"]
    assert content.splitlines()[0] == f"🎨 Original prompt: a cute cat {ratio}"
    assert "💬 Prompt model: Original Prompt" in content
    assert "🌐 Translated prompt: a cute cat\n" in content
    assert f"📐 Image size: {size[0]}x{size[1]}" in content
    assert "🌟 Image generated successfully!\nHere is the result:\n\n![Generated image](" in content
    img_resp, img = image_at(client, image_url(content))
    assert img.size == size
    assert img_resp.mimetype == "image/jpeg"


def test_chat_completion_object_shape(client, auth):
    body = chat(client, "a red fox", headers=auth).get_json()
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert body["model"] == "@cf/black-forest-labs/flux-1-schnell"  # gpt-4o falls back
    choice = body["choices"][0]
    assert choice["finish_reason"] == "stop" and choice["message"]["role"] == "assistant"
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0


def test_chat_uses_model_named_by_alias(client, auth):
    body = client.post("/chat/completions", headers=auth, json={
        "model": "sdxl-lightning",
        "messages": [{"role": "user", "content": "a castle --seed 42 3:4"}]}).get_json()
    assert body["model"] == "@cf/bytedance/stable-diffusion-xl-lightning"
    content = body["choices"][0]["message"]["content"]
    assert "📐 Image size: 768x1024" in content and "🌱 Seed: 42" in content


def test_only_last_user_message_counts_and_parts_are_joined(client, auth):
    body = client.post("/v1/chat/completions", headers=auth, json={"messages": [
        {"role": "user", "content": "an old request 9:16"},
        {"role": "assistant", "content": "done"},
        # (a message with image_url parts is an edit: tests/test_edits_api.py)
        {"role": "user", "content": [{"type": "text", "text": "a lighthouse"},
                                     {"type": "text", "text": "at dusk 16:9"}]},
    ]}).get_json()
    content = body["choices"][0]["message"]["content"]
    assert "📐 Image size: 1024x576" in content
    assert "a lighthouse" in content and "old request" not in content


def test_ignored_option_is_reported(client, auth):
    content = text_of(chat(client, "a dog --seed 7 --no cats", headers=auth))
    assert "Ignored options" in content and "--seed" in content and "--no" in content
    assert "🌱 Seed" not in content  # schnell has no seed


def test_stream_matches_non_stream_and_ends_with_done(client, auth):
    resp = chat(client, "a cute cat 3:2", headers=auth, stream=True)
    assert resp.status_code == 200
    assert resp.mimetype == "text/event-stream"
    events = sse_events(resp)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert len([c for c in chunks if c["choices"][0]["delta"].get("content")]) >= 3
    plain = text_of(chat(client, "a cute cat 3:2", headers=auth))
    # Identical except for the image key.
    assert IMAGE_LINK.sub("IMG", content) == IMAGE_LINK.sub("IMG", plain)
    assert "usage" not in chunks[0]


def test_stream_usage_chunk_when_asked(client, auth):
    events = sse_events(chat(client, "a cat", headers=auth, stream=True,
                             stream_options={"include_usage": True}))
    usage_chunk = events[-2]
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["total_tokens"] > 0
    assert all(e["usage"] is None for e in events[:-2])


def test_stream_bad_request_is_http_error_not_broken_stream(client, auth):
    resp = chat(client, "   ", headers=auth, stream=True)
    assert resp.status_code == 400
    assert resp.get_json()["error"]["type"] == "invalid_request_error"


def test_housekeeping_title_request_gets_text_not_image(client, auth):
    resp = client.post("/v1/chat/completions", headers=auth, json={"messages": [
        {"role": "user", "content": "a cute cat 16:9"},
        {"role": "assistant", "content": "![Generated image](http://x/image/abc)"},
        {"role": "user", "content": "Please generate a four to five word title summarizing our"
         " conversation without any lead-in, punctuation, quotation marks"},
    ]})
    content = resp.get_json()["choices"][0]["message"]["content"]
    assert "![" not in content and "a cute cat" in content


def test_models_list_and_one(client, auth):
    body = client.get("/v1/models", headers=auth).get_json()
    assert body["object"] == "list"
    ids = [m["id"] for m in body["data"]]
    assert "@cf/black-forest-labs/flux-1-schnell" in ids and len(ids) >= 9
    for m in body["data"]:
        assert m["object"] == "model" and isinstance(m["created"], int) and m["owned_by"]
        assert m["backend"] == "demo"
    one = client.get("/v1/models/@cf/leonardo/phoenix-1.0", headers=auth).get_json()
    assert one["id"] == "@cf/leonardo/phoenix-1.0" and one["capabilities"]["negative_prompt"]
    assert client.get("/models/flux-1-schnell", headers=auth).get_json()["id"].endswith("schnell")
    missing = client.get("/v1/models/gpt-4o", headers=auth)
    assert missing.status_code == 404
    assert missing.get_json()["error"]["code"] == "model_not_found"


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic abc", "Bearer "])
def test_bad_api_key_is_401(client, header):
    headers = {"Authorization": header} if header else {}
    resp = client.post("/v1/chat/completions", headers=headers,
                       json={"messages": [{"role": "user", "content": "x"}]})
    assert resp.status_code == 401
    err = resp.get_json()["error"]
    assert err["code"] == "invalid_api_key" and err["type"] == "invalid_request_error"
    assert TEST_KEY not in resp.get_data(as_text=True)
    assert resp.headers["Access-Control-Allow-Origin"] == "*"


def test_several_keys_and_no_key_mode(apps):
    app = apps.app(API_KEY="k1-aaaa, k2-bbbb")
    client = app.test_client()
    for key in ("k1-aaaa", "k2-bbbb"):
        resp = client.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
        assert resp.status_code == 200
    open_app = apps.app(API_KEY="")
    assert open_app.test_client().get("/v1/models").status_code == 200


def test_image_serving_headers_conditional_and_head(client, auth):
    url = image_url(text_of(chat(client, "a cat", headers=auth)))
    path = "/" + url.split("/", 3)[3]
    resp = client.get(path)
    max_age = int(re.search(r"max-age=(\d+)", resp.headers["Cache-Control"])[1])
    assert 0 < max_age <= 600
    assert resp.headers["ETag"]
    assert client.get(path, headers={"If-None-Match": resp.headers["ETag"]}).status_code == 304
    head = client.head(path)
    assert head.status_code == 200 and head.data == b""
    assert int(head.headers["Content-Length"]) == len(resp.data)
    assert head.headers["Content-Type"] == "image/jpeg"


@pytest.mark.parametrize("path", ["/image/nope", "/image/..%2Fetc%2Fpasswd",
                                  "/image/AAAAAAAAAAAAAAAAAAAAAA"])
def test_unknown_image_is_404_json(client, path):
    resp = client.get(path)
    assert resp.status_code == 404
    assert resp.get_json()["error"]["type"] == "invalid_request_error"


def test_links_follow_trusted_proxy_headers(client, auth):
    headers = dict(auth, **{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "img.example.com"})
    content = text_of(client.post("/v1/chat/completions", headers=headers, json={
        "messages": [{"role": "user", "content": "a cat"}]}))
    assert image_url(content).startswith("https://img.example.com/image/")


def test_untrusted_proxy_headers_are_ignored_and_public_base_url_wins(apps, auth):
    for env, expected in (({"TRUSTED_PROXIES": ""}, "http://localhost/image/"),
                          ({"PUBLIC_BASE_URL": "https://cdn.example.org/"},
                           "https://cdn.example.org/image/")):
        client = apps.client(**env)
        headers = dict(auth, **{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"})
        content = text_of(client.post("/v1/chat/completions", headers=headers, json={
            "messages": [{"role": "user", "content": "a cat"}]}))
        assert image_url(content).startswith(expected)


@pytest.mark.parametrize("language,word", [("de", "Bildgröße"), ("zh-cn", "图像尺寸"),
                                           ("zh-hant", "圖像尺寸"), ("ja", "画像サイズ"),
                                           ("es", "Tamaño"), ("fr", "Taille"), ("ru", "Размер")])
def test_answer_language(apps, auth, language, word):
    client = apps.client(LANGUAGE=language)
    content = text_of(client.post("/v1/chat/completions", headers=auth, json={
        "messages": [{"role": "user", "content": "a cat"}]}))
    assert word in content and "📐" in content


def test_request_id_is_returned_and_honoured(client):
    assert client.get("/healthz").headers["X-Request-ID"]
    resp = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert resp.headers["X-Request-ID"] == "abc-123"


def test_welcome_page_says_demo(client):
    page = client.get("/").get_data(as_text=True)
    assert "demo" in page.lower() and "flux-1-schnell" in page
    info = client.get("/", headers={"Accept": "application/json"}).get_json()
    assert info["backend"] == "demo" and info["storage"] == "memory"


def test_health_and_readiness(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["checks"]["storage"] == "ok"


def test_images_api_b64_is_raw_base64_and_batch_images_differ(client, auth):
    resp = client.post("/v1/images/generations", headers=auth, json={
        "prompt": "a fox", "n": 2, "size": "512x512", "response_format": "b64_json",
        "quality": "hd", "style": "vivid", "user": "u1", "background": "auto", "moderation": "low"})
    assert resp.status_code == 200
    body = resp.get_json()
    assert isinstance(body["created"], int) and len(body["data"]) == 2
    raw = [item["b64_json"] for item in body["data"]]
    assert not any(r.startswith("data:") for r in raw)
    decoded = [base64.b64decode(r, validate=True) for r in raw]
    assert decoded[0] != decoded[1]
    assert all(Image.open(io.BytesIO(d)).size == (512, 512) for d in decoded)
    assert "revised_prompt" not in body["data"][0]  # no translation configured


def test_images_api_url_default_and_model_alias(client, auth):
    body = client.post("/images/generations", headers=auth, json={
        "prompt": "a fox 16:9", "model": "dall-e-3"}).get_json()
    _, img = image_at(client, body["data"][0]["url"])
    assert img.size == (1024, 576)  # no size field: the prompt's ratio counts


@responses.activate
def test_translated_prompt_is_revised_prompt_and_shown_in_chat(apps, auth):
    responses.add(responses.POST, "http://llm.invalid/v1/chat/completions", json={
        "choices": [{"message": {"content": "<think>plan</think>A small cat, watercolor"}}]})
    config = make_config(CF_IS_TRANSLATE="true", EXTERNAL_API_BASE="http://llm.invalid",
                         EXTERNAL_MODEL="tiny-llm", EXTERNAL_API_KEY="llm-k")
    client = apps.client(config)
    resp = client.post("/v1/images/generations", headers=auth, json={"prompt": "一只小猫"})
    body = resp.get_json()
    assert body["data"][0]["revised_prompt"] == "A small cat, watercolor"
    content = text_of(chat(client, "一只小猫 16:9", headers=auth))
    assert "💬 Prompt model: tiny-llm" in content
    assert "🌐 Translated prompt: A small cat, watercolor" in content
    sent = json.loads(responses.calls[-1].request.body)
    assert "Aspect ratio: 16:9" in sent["messages"][1]["content"]
