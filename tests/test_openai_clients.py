"""Where clients assume OpenAI's exact behaviour: GPT image aliases answer base64, `modalities`.

Unit level: the registry's default answer form, the variable that lists the GPT image names,
request parsing and the wire builders. The live service is covered in
tests/e2e/test_openai_clients_e2e.py with the official SDK.
"""

from __future__ import annotations

import pytest

from flux_worker import openai_format
from flux_worker.api_requests import ChatRequest, ImagesRequest
from flux_worker.catalog import CATALOG, DALL_E_ALIASES, GPT_IMAGE_ALIASES, ModelRegistry
from flux_worker.config import Config, ConfigError
from flux_worker.errors import InvalidRequest

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


@pytest.mark.parametrize("name", [*DALL_E_ALIASES, None, "", "flux", DEFAULT, "sdxl"])
def test_dall_e_names_and_real_models_answer_links(name):
    models = registry()
    assert models.default_response_format(name) == "url"
    if name:
        assert models.require(name) in CATALOG


def test_the_gpt_image_names_are_configurable():
    assert Config.from_env({}).gpt_image_aliases == GPT_IMAGE_ALIASES
    models = registry(GPT_IMAGE_ALIASES="gpt-image-1, My-Image-Model")
    assert models.default_response_format("my-image-model") == "b64_json"
    assert models.require("my-image-model") is models.default
    # A name taken off the list is no longer known at all.
    assert models.get("gpt-image-2") is None
    assert models.default_response_format("gpt-image-2") == "url"
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
    assert ImagesRequest.from_json({"prompt": "a fox"}, 4).response_format is None
    assert ImagesRequest.from_json({"prompt": "a fox", "response_format": None},
                                   4).response_format is None
    assert ImagesRequest.from_json({"prompt": "a fox", "response_format": "url"},
                                   4).response_format == "url"
    with pytest.raises(InvalidRequest) as info:
        ImagesRequest.from_json({"prompt": "a fox", "response_format": "png"}, 4)
    assert info.value.param == "response_format"


def test_modalities_are_parsed_once():
    base = {"messages": [{"role": "user", "content": "a fox"}]}
    assert not ChatRequest.from_json(base).wants_images
    assert ChatRequest.from_json(dict(base, modalities=["image", "text"])).wants_images
    assert ChatRequest.from_json(dict(base, modalities=["Image"])).wants_images
    assert not ChatRequest.from_json(dict(base, modalities=["text"])).wants_images
    for bad in ("image", [1], {"image": True}):
        with pytest.raises(InvalidRequest) as info:
            ChatRequest.from_json(dict(base, modalities=bad))
        assert info.value.param == "modalities"


def test_builders_add_openrouter_images_only_when_given():
    url = "http://127.0.0.1:8000/image/abc"
    plain = openai_format.chat_completion("chatcmpl-1", 1, "m", "text", {})
    assert "images" not in plain["choices"][0]["message"]
    with_images = openai_format.chat_completion("chatcmpl-1", 1, "m", "text", {}, images=[url])
    assert with_images["choices"][0]["message"] == {
        "role": "assistant", "content": "text",
        "images": [{"type": "image_url", "image_url": {"url": url}}]}
    writer = openai_format.ChunkWriter("chatcmpl-1", 1, "m", include_usage=False)
    assert '"images"' not in writer.content("piece")
    assert '"images":[{"type":"image_url","image_url":{"url":"%s"}}]' % url in writer.content(
        "piece", images=[url])
