"""Moderation end to end: the real service checks prompts with the fake Cloudflare's Llama Guard
(MODERATION=cloudflare) or its OpenAI-compatible /v1/moderations (MODERATION=openai) before any
image call, through the official `openai` SDK; `moderation="low"` (Images API and the Responses
image tool), a translated prompt, a moderation service that fails (refuse and allow), and every
interface (streamed images, edits, Responses, a chat stream, MCP) refused with nothing drawn,
stored or spent."""

from __future__ import annotations

import asyncio

import diskcache
import openai
import pytest
import requests
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from harness.service import API_KEY, LLM_KEY, cloudflare_env, start_service
from tests.support import bearer, metric_value, png, sdk, wait_until

pytestmark = pytest.mark.e2e

ADMIN = "sk-e2e-moderation-admin-01"
FLAGGED = "a forbiddenfruit picnic"        # the fake flags it: S12 / sexual
VIOLENT = "a bloodbath at dawn"             # the fake flags it: S1 / violence


@pytest.fixture(scope="module")
def guard_service(fake_cf, tmp_path_factory):
    """Llama Guard on the drawing account; `low` lets sexual content through; failures refuse."""
    service = start_service(tmp_path_factory.mktemp("guard"), cloudflare_env(
        fake_cf, MODERATION="cloudflare", MODERATION_LOW="sexual", MODERATION_TIMEOUT="2",
        ADMIN_API_KEY=ADMIN))
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
    # A variation has no prompt: nothing is judged, the picture is drawn.
    assert client.images.create_variation(image=("cat.png", png(), "image/png")).data
    assert len(image_calls(cf)) == 2 and cf.judged() == [VIOLENT, VIOLENT, "a calm lake"]
    metrics = requests.get(guard_service.url + "/metrics", timeout=10).text
    assert metric_value(metrics, "flux_worker_moderation_total", outcome="refused",
                        category="violence") >= 2
    # The admin page's activity lists the refusal as the caller saw it.
    wait_until(lambda: any(
        line["code"] == "content_policy_violation" and "violent crimes" in line["message"]
        for line in requests.get(guard_service.api + "/admin/activity", headers=bearer(ADMIN),
                                 timeout=10).json()["data"]), message="the refusal in activity")


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
        # A refused prompt of the user's never reaches the translator (an LLM call that costs).
        translations = len([r for r in cf.requests() if r["kind"] == "llm"])
        assert translations >= 1
        with pytest.raises(openai.BadRequestError, match="sexual content"):
            sdk(service).images.generate(prompt=FLAGGED, size="1024x1024")
        assert len([r for r in cf.requests() if r["kind"] == "llm"]) == translations
    finally:
        service.stop()


def test_the_responses_image_tool_carries_moderation_low(guard_service, cf):
    client = sdk(guard_service)
    relaxed = client.responses.create(model="gpt-5.4", input=FLAGGED, tools=[
        {"type": "image_generation", "moderation": "low"}])
    calls = [item for item in relaxed.output if item.type == "image_generation_call"]
    assert calls and calls[0].status == "completed" and len(image_calls(cf)) == 1
    with pytest.raises(openai.BadRequestError, match="sexual content"):
        client.responses.create(model="gpt-5.4", input=FLAGGED,
                                tools=[{"type": "image_generation"}])
    assert len(image_calls(cf)) == 1


@pytest.fixture
def budgeted(fake_cf, tmp_path):
    """Llama Guard, and a daily budget of 150 neurons: an edit reserves about 110 and an image
    57.6, so a refusal that kept its reservation would make the next request impossible."""
    service = start_service(tmp_path, cloudflare_env(
        fake_cf, MODERATION="cloudflare", KEY_BUDGETS=f"{API_KEY}=150"), workers=1)
    yield service, tmp_path / "images"
    service.stop()


def test_every_interface_is_refused_and_nothing_is_drawn_stored_or_spent(budgeted, cf):
    service, images = budgeted
    client = sdk(service)
    with pytest.raises(openai.APIError, match="violence"):       # an error event
        list(client.images.generate(prompt=VIOLENT, stream=True))
    with pytest.raises(openai.BadRequestError, match="violence"):
        client.images.edit(image=("cat.png", png(), "image/png"), prompt=VIOLENT)
    with pytest.raises(openai.APIError, match="violence"):
        for _ in client.responses.create(model="gpt-5.4", input=VIOLENT, stream=True):
            pass
    chat = client.chat.completions.create(model="flux", stream=True,
                                          messages=[{"role": "user", "content": VIOLENT}])
    # A chat stream tells a failure in the chat's own text, as every chat failure.
    assert "violence" in "".join(c.choices[0].delta.content or "" for c in chat if c.choices)
    tool = asyncio.run(_mcp_generate(service, VIOLENT))
    assert tool.is_error is True
    assert tool.content[0].text.startswith("content_policy_violation: ")
    assert "violence" in tool.content[0].text
    assert len(cf.judged()) == 5 and image_calls(cf) == [] and stored_images(images) == 0
    assert history(service) == []               # IMAGE_HISTORY (on) keeps no refused prompt

    # Every refusal gave its reservation back: the one image the budget holds is drawn.
    assert client.images.generate(prompt="a calm lake", size="1024x1024").data
    usage = requests.get(service.api + "/usage", headers=bearer(API_KEY), timeout=10).json()
    assert usage["key"]["spent_neurons"] == pytest.approx(57.6, rel=0.05)
    assert stored_images(images) == 1
    assert [entry["prompt"] for entry in history(service)] == ["a calm lake"]


def history(service) -> list[dict]:
    answer = requests.get(service.api + "/images/history", headers=bearer(API_KEY), timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


async def _mcp_generate(service, prompt: str):
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {API_KEY}"})
    async with Client(streamable_http_client(service.url + "/mcp", http_client=http)) as client:
        return await client.call_tool("generate_image", {"prompt": prompt})


def stored_images(path) -> int:
    """Images on the disk store; the Responses API keeps its failed Response objects there too
    (`store` defaults to true, as OpenAI's), which hold no image."""
    with diskcache.Cache(str(path)) as cache:
        return sum(1 for key in cache.iterkeys() if not str(key).startswith("response."))
