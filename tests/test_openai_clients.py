"""Where clients assume OpenAI's exact behaviour: GPT image aliases answer base64, `modalities`.

Unit level: the registry's default answer form, the variable that lists the GPT image names,
request parsing and the wire builders. The live service is covered in
tests/e2e/test_openai_clients_e2e.py with the official SDK.
"""

from __future__ import annotations

import base64
import functools
import io

import pytest
from PIL import Image

from flux_worker.catalog.registry import ModelRegistry
from flux_worker.catalog.spec import DALL_E_ALIASES, GPT_IMAGE_ALIASES
from flux_worker.catalog.workers_ai import CATALOG
from flux_worker.chat.phrases import PHRASES, Phrasebook
from flux_worker.config import Config, ConfigError
from flux_worker.errors import InvalidRequest
from flux_worker.openai_api import answers
from flux_worker.openai_api.generation_requests import parse_chat_completion, parse_image_generation
from tests import support
from tests.support import IMAGE_LINK, image_url, sse_chunks

DEFAULT = "@cf/black-forest-labs/flux-1-schnell"


def registry(**env) -> ModelRegistry:
    cfg = Config.from_env(env)
    return ModelRegistry.build(cfg.image_models, cfg.flux_model,
                               gpt_image_names=cfg.gpt_image_aliases)


@pytest.mark.parametrize("name", GPT_IMAGE_ALIASES)
def test_gpt_image_names_mean_the_default_model_and_answer_base64(name):
    models = registry(FLUX_MODEL="sdxl-lightning")
    assert models.require(name).short_name == "sdxl-lightning"
    assert models.default_response_format(name) == "b64_json"
    assert models.default_response_format(name.upper()) == "b64_json"


@pytest.mark.parametrize("name", DALL_E_ALIASES)
def test_dall_e_names_default_to_links(name):
    models = registry()
    assert models.default_response_format(name) == "url"
    assert models.default_response_format(name, "b64_json") == "url"
    assert models.require(name) in CATALOG


@pytest.mark.parametrize("name", [None, "", "flux", DEFAULT, "sdxl"])
def test_own_names_answer_as_the_operator_says(name):
    models = registry()
    assert models.default_response_format(name) == "both"       # IMAGE_RESPONSE_FORMAT's default
    assert models.default_response_format(name, "url") == "url"
    if name:
        assert models.require(name) in CATALOG


def test_the_gpt_image_names_are_configurable():
    assert Config.from_env({}).gpt_image_aliases == GPT_IMAGE_ALIASES
    models = registry(GPT_IMAGE_ALIASES="gpt-image-1, My-Image-Model")
    assert models.default_response_format("my-image-model") == "b64_json"
    assert models.require("my-image-model") is models.default
    # A name taken off the list is no longer known at all.
    assert models.get("gpt-image-2") is None
    assert models.default_response_format("gpt-image-2") == "both"
    none = registry(GPT_IMAGE_ALIASES="")
    assert none.get("gpt-image-1") is None and none.get("dall-e-3") is none.default


def test_a_real_model_name_on_the_list_answers_base64():
    # IMAGE_BACKEND=openai may offer the upstream's own gpt-image-1: it answers as OpenAI's does.
    models = registry(GPT_IMAGE_ALIASES="sdxl-lightning")
    assert models.require("sdxl-lightning").short_name == "sdxl-lightning"
    assert models.default_response_format("sdxl-lightning") == "b64_json"


@pytest.mark.parametrize("value", ["gpt image 1", "gpt-image-1,<script>"])
def test_a_bad_alias_list_names_the_variable(value):
    with pytest.raises(ConfigError, match="GPT_IMAGE_ALIASES"):
        Config.from_env({"GPT_IMAGE_ALIASES": value})


def test_images_request_keeps_no_response_format_when_none_is_sent():
    assert parse_image_generation({"prompt": "a fox"}, 4).response_format is None
    assert parse_image_generation({"prompt": "a fox", "response_format": None},
                                   4).response_format is None
    assert parse_image_generation({"prompt": "a fox", "response_format": "url"},
                                   4).response_format == "url"
    with pytest.raises(InvalidRequest) as info:
        parse_image_generation({"prompt": "a fox", "response_format": "png"}, 4)
    assert info.value.param == "response_format"


def test_modalities_are_parsed_once():
    base = {"messages": [{"role": "user", "content": "a fox"}]}
    assert not parse_chat_completion(base).wants_images
    assert parse_chat_completion(dict(base, modalities=["image", "text"])).wants_images
    assert parse_chat_completion(dict(base, modalities=["Image"])).wants_images
    assert not parse_chat_completion(dict(base, modalities=["text"])).wants_images
    for bad in ("image", [1], {"image": True}):
        with pytest.raises(InvalidRequest) as info:
            parse_chat_completion(dict(base, modalities=bad))
        assert info.value.param == "modalities"


def test_builders_add_openrouter_images_only_when_given():
    url = "http://127.0.0.1:8000/image/abc"
    plain = answers.chat_completion("chatcmpl-1", 1, "m", "text", {})
    assert "images" not in plain["choices"][0]["message"]
    with_images = answers.chat_completion("chatcmpl-1", 1, "m", "text", {}, images=[url])
    assert with_images["choices"][0]["message"] == {
        "role": "assistant", "content": "text", "refusal": None,
        "images": [{"type": "image_url", "image_url": {"url": url}}]}
    writer = answers.ChunkWriter("chatcmpl-1", 1, "m", include_usage=False)
    assert '"images"' not in writer.content("piece")
    assert '"images":[{"type":"image_url","image_url":{"url":"%s"}}]' % url in writer.content(
        "piece", images=[url])


# ---- through the app (Flask's test client) ----

chat = functools.partial(support.chat, model="flux")


@pytest.mark.parametrize("name", GPT_IMAGE_ALIASES)
def test_gpt_image_names_answer_base64_unless_a_link_is_asked(client, auth, name):
    body = client.post("/v1/images/generations", headers=auth,
                       json={"model": name, "prompt": "a fox"}).get_json()
    (item,) = body["data"]
    assert "url" not in item
    assert Image.open(io.BytesIO(base64.b64decode(item["b64_json"]))).size == (1024, 1024)
    linked = client.post("/v1/images/generations", headers=auth, json={
        "model": name, "prompt": "a fox", "response_format": "url"}).get_json()
    assert linked["data"][0]["url"].startswith("http") and "b64_json" not in linked["data"][0]


@pytest.mark.parametrize("name", DALL_E_ALIASES)
def test_dall_e_names_answer_links(client, auth, name):
    body = {"prompt": "a fox", "model": name}
    (item,) = client.post("/v1/images/generations", headers=auth, json=body).get_json()["data"]
    assert item["url"].startswith("http") and "b64_json" not in item


@pytest.mark.parametrize("name", ["flux", None])
def test_own_names_answer_a_link_and_base64(client, auth, name):
    body = {"prompt": "a fox", **({"model": name} if name else {})}
    (item,) = client.post("/v1/images/generations", headers=auth, json=body).get_json()["data"]
    assert item["url"].startswith("http")
    assert Image.open(io.BytesIO(base64.b64decode(item["b64_json"]))).size == (1024, 1024)


@pytest.mark.parametrize("modalities", [["image", "text"], ["image"]])
def test_modalities_add_message_images_with_the_markdown_link(client, modalities):
    message = chat(client, "a fox 16:9", modalities=modalities).get_json()[
        "choices"][0]["message"]
    url = image_url(message["content"])
    assert message["images"] == [{"type": "image_url", "image_url": {"url": url}}]
    plain = chat(client, "a fox 16:9").get_json()["choices"][0]["message"]
    assert "images" not in plain and IMAGE_LINK.search(plain["content"])
    assert "images" not in chat(client, "a fox", modalities=["text"]).get_json()[
        "choices"][0]["message"]


def test_modalities_add_delta_images_to_the_chunk_that_brings_the_image(client):
    events = sse_chunks(chat(client, "a fox 16:9", stream=True, modalities=["image", "text"]))
    deltas = [e["choices"][0]["delta"] for e in events if e["choices"]]
    with_images = [d for d in deltas if "images" in d]
    assert len(with_images) == 1
    (delta,) = with_images
    url = image_url(delta["content"])
    assert delta["images"] == [{"type": "image_url", "image_url": {"url": url}}]
    plain = sse_chunks(chat(client, "a fox 16:9", stream=True))
    assert not [e for e in plain if e["choices"] and "images" in e["choices"][0]["delta"]]


def test_a_clamped_step_count_is_reported_in_the_answer(client):
    content = chat(client, "a fox --steps 50").get_json()["choices"][0]["message"]["content"]
    assert "ℹ️ Adjusted to what flux-1-schnell accepts: --steps 50 → 8" in content
    within = chat(client, "a fox --steps 6").get_json()["choices"][0]["message"]["content"]
    assert "Adjusted" not in within
    fixed = chat(client, "a fox --steps 9", model="klein-4b").get_json()[
        "choices"][0]["message"]["content"]
    assert "Adjusted" not in fixed and "Ignored options" in fixed and "--steps" in fixed


def test_the_clamp_note_in_every_language():
    for language, words in PHRASES.items():
        line = Phrasebook(language)("clamped", model="flux-1-schnell", options="--steps 50 → 8")
        assert "flux-1-schnell" in line and "--steps 50 → 8" in line, language
        english = Phrasebook("en")("clamped", model="flux-1-schnell", options="--steps 50 → 8")
        assert language == "en" or line != english, language
        assert words["clamped"] != words["ignored"]


# Far below any image: a line longer than this would be inline base64, not a link.
MAX_EVENT_BYTES = 8192


@pytest.mark.parametrize("extra", [{}, {"modalities": ["image", "text"]},
                                   {"stream_options": {"include_usage": True}}])
def test_stream_brings_the_markdown_tag_whole_in_one_chunk_and_no_base64(client, extra):
    resp = chat(client, "a lighthouse at dusk 16:9", stream=True, **extra)
    raw = resp.get_data(as_text=True)
    assert all(len(line.encode()) < MAX_EVENT_BYTES for line in raw.split("\n")), \
        max(len(line) for line in raw.split("\n"))
    assert "base64," not in raw and "data:image" not in raw
    pieces = [e["choices"][0]["delta"].get("content", "") for e in sse_chunks(resp)
              if e["choices"]]
    tagged = [p for p in pieces if "![" in p or "](" in p]
    assert len(tagged) == 1, pieces
    (tag,) = IMAGE_LINK.findall(tagged[0])
    assert tag.startswith("http://localhost/image/")
    assert image_url("".join(pieces)) == tag
