"""Moderation end to end: the real service checks prompts with the fake Cloudflare's Llama Guard
(MODERATION=cloudflare) or its OpenAI-compatible /v1/moderations (MODERATION=openai) before any
image call, through the official `openai` SDK; `moderation="low"`, a translated prompt, and a
moderation service that fails (refuse and allow)."""

from __future__ import annotations

import openai
import pytest
import requests

from harness.service import LLM_KEY, cloudflare_env, start_service
from tests.support import metric_value, sdk

pytestmark = pytest.mark.e2e

FLAGGED = "a forbiddenfruit picnic"        # the fake flags it: S12 / sexual
VIOLENT = "a bloodbath at dawn"             # the fake flags it: S1 / violence


@pytest.fixture(scope="module")
def guard_service(fake_cf, tmp_path_factory):
    """Llama Guard on the drawing account; `low` lets sexual content through; failures refuse."""
    service = start_service(tmp_path_factory.mktemp("guard"), cloudflare_env(
        fake_cf, MODERATION="cloudflare", MODERATION_LOW="sexual", MODERATION_TIMEOUT="2"))
    yield service
    service.stop()


@pytest.fixture(scope="module")
def openai_service(fake_cf, tmp_path_factory):
    """An OpenAI-compatible moderations endpoint; a failure lets the prompt through."""
    service = start_service(tmp_path_factory.mktemp("omod"), cloudflare_env(
        fake_cf, MODERATION="openai", MODERATION_URL=fake_cf.url + "/v1",
        MODERATION_API_KEY=LLM_KEY, MODERATION_ON_ERROR="allow", MODERATION_TIMEOUT="2"))
    yield service
    service.stop()


def image_calls(cf) -> list[dict]:
    return [r for r in cf.requests() if r["kind"] == "run"
            and r["model"] != "@cf/meta/llama-guard-3-8b"]


def test_llama_guard_refuses_before_any_image_call_and_names_the_category(guard_service, cf):
    client = sdk(guard_service)
    with pytest.raises(openai.BadRequestError) as refused:
        client.images.generate(prompt=VIOLENT, size="1024x1024")
    assert refused.value.code == "content_policy_violation"
    assert "violence or violent crimes" in refused.value.message
    assert image_calls(cf) == []
    assert cf.judged() == [VIOLENT]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="flux",
                                       messages=[{"role": "user", "content": VIOLENT}])
    assert image_calls(cf) == []
    assert client.images.generate(prompt="a calm lake", size="1024x1024").data
    assert len(image_calls(cf)) == 1
    metrics = requests.get(guard_service.url + "/metrics", timeout=10).text
    assert metric_value(metrics, "flux_worker_moderation_total", outcome="refused",
                        category="violence") >= 2


def test_low_relaxes_only_what_the_operator_allows(guard_service, cf):
    client = sdk(guard_service)
    with pytest.raises(openai.BadRequestError, match="sexual content"):
        client.images.generate(prompt=FLAGGED, size="1024x1024")
    relaxed = client.images.generate(prompt=FLAGGED, size="1024x1024",
                                     extra_body={"moderation": "low"})
    assert relaxed.data and len(image_calls(cf)) == 1
    with pytest.raises(openai.BadRequestError, match="violence"):
        client.images.generate(prompt=VIOLENT, size="1024x1024",
                               extra_body={"moderation": "low"})
    cf.guard_answers_text()                     # Llama Guard's own text: "unsafe\nS1"
    with pytest.raises(openai.BadRequestError, match="violence"):
        client.images.generate(prompt=VIOLENT, size="1024x1024")
    assert len(image_calls(cf)) == 1


def test_a_failing_llama_guard_refuses_with_a_503_and_draws_nothing(guard_service, cf):
    cf.moderation_faults("500", "malformed")
    client = sdk(guard_service)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError) as refused:
            client.images.generate(prompt="a calm lake", size="1024x1024")
        assert refused.value.status_code == 503
        assert refused.value.code == "moderation_unavailable"
    assert image_calls(cf) == []


def test_the_moderations_endpoint_refuses_and_a_failure_lets_through(openai_service, cf):
    client = sdk(openai_service)
    with pytest.raises(openai.BadRequestError, match="sexual content"):
        client.images.generate(prompt=FLAGGED, size="1024x1024")
    assert image_calls(cf) == []
    cf.moderation_faults("timeout")
    assert client.images.generate(prompt="a calm lake", size="1024x1024").data
    assert len(image_calls(cf)) == 1
    assert "MODERATION_ON_ERROR=allow" in openai_service.log()
    metrics = requests.get(openai_service.url + "/metrics", timeout=10).text
    assert metric_value(metrics, "flux_worker_moderation_total", outcome="error_allowed") >= 1


def test_the_translated_prompt_is_checked_too(fake_cf, cf, tmp_path):
    service = start_service(tmp_path, cloudflare_env(
        fake_cf, MODERATION="openai", MODERATION_URL=fake_cf.url,
        MODERATION_API_KEY=LLM_KEY, CF_IS_TRANSLATE="true"))
    try:
        requests.post(fake_cf.url + "/_fake/llm", json={"reply": VIOLENT}, timeout=5)
        with pytest.raises(openai.BadRequestError, match="violence"):
            sdk(service).images.generate(prompt="ein ruhiger See", size="1024x1024")
        assert cf.judged() == ["ein ruhiger See", VIOLENT]
        assert image_calls(cf) == []
    finally:
        service.stop()
