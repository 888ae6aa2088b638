"""Fallback between models: the rule, the chains, `auto`, provider health and the pipeline.

The pipeline tests draw through the real Cloudflare backend with `responses` at the HTTP edge,
so each upstream answer is classified as it would be in production.
"""

from __future__ import annotations

import base64
import io
import logging
from dataclasses import replace

import pytest
import responses
from PIL import Image

from flux_worker.backends.cloudflare import CloudflareBackend
from flux_worker.backends.providers import Providers
from flux_worker.catalog.registry import ModelRegistry
from flux_worker.config import Config, ConfigError
from flux_worker.errors import (
    APIError,
    Cancelled,
    ContentPolicy,
    InvalidRequest,
    Overloaded,
    QuotaExceeded,
    RateLimited,
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
)
from flux_worker.generation.backend import GenerationRequest
from flux_worker.generation.fallback import (
    SKIPPED,
    auto_order,
    can_honour,
    fallback_reason,
    resolve_chains,
)
from flux_worker.generation.job import Caller, ImageOrder
from flux_worker.generation.pipeline import Pipeline
from flux_worker.generation.planner import Planner
from flux_worker.generation.provider_health import OK, ProviderHealth
from flux_worker.generation.sizes import SizeSpec
from flux_worker.net.upstream import make_session
from flux_worker.services import build_services
from flux_worker.storage.location import CountersLocation
from flux_worker.storage.marks import MemoryMarks, RedisMarks
from flux_worker.storage.memory import MemoryStore

ACCOUNT = "0123456789abcdef0123456789abcdef"
API = "https://api.cloudflare.com/client/v4"
MODELS = ModelRegistry.build((), "flux-1-schnell")
SCHNELL = MODELS.require("flux-1-schnell")
KLEIN = MODELS.require("flux-2-klein-4b")
SDXL = MODELS.require("sdxl-lightning")
CHAINS = resolve_chains((("flux-1-schnell", ("flux-2-klein-4b", "sdxl-lightning")),), MODELS)


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def health(limit=3, retry=30.0, clock=None) -> ProviderHealth:
    clock = clock or Clock()
    return ProviderHealth(MemoryMarks(clock), limit=limit, retry_seconds=retry, clock=clock)


def png(width=64, height=64) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), "red").save(out, "PNG")
    return out.getvalue()


def run_url(model_id: str) -> str:
    return f"{API}/accounts/{ACCOUNT}/ai/run/{model_id}"


def ok_answer() -> dict:
    return {"result": {"image": base64.b64encode(png()).decode()}, "success": True,
            "errors": [], "messages": []}


def err_answer(code: int, message: str) -> dict:
    return {"result": None, "success": False, "errors": [{"code": code, "message": message}],
            "messages": []}


# --- the rule ----------------------------------------------------------------------------------

@pytest.mark.parametrize("error,reason", [
    (Overloaded("no capacity"), "capacity"),
    (QuotaExceeded("daily allocation used"), "quota"),
    (RateLimited("slow down"), "rate_limit"),
    (UpstreamError("HTTP 500"), "upstream_error"),
    (UpstreamTimeout("no answer"), "timeout"),
    (ContentPolicy("flagged"), None),
    (InvalidRequest("bad field"), None),
    (UpstreamRejected("HTTP 400"), None),
    (UpstreamAuthFailed("token refused"), None),
    (Cancelled("gone"), None),
    (ValueError("a bug"), None),
])
def test_the_one_rule_says_which_failures_let_another_model_draw(error, reason):
    assert fallback_reason(error) == reason


@pytest.mark.parametrize("status,body,reason", [
    (429, err_answer(3040, "Capacity temporarily exceeded, please try again."), "capacity"),
    (429, err_answer(4006, "you have used up your daily free allocation"), "quota"),
    (429, err_answer(9999, "Too many requests"), "rate_limit"),
    (500, err_answer(8008, "Internal server error"), "upstream_error"),
    (400, err_answer(3030, "AiError: 3030: Input prompt has been flagged"), None),
    (400, err_answer(9000, "Bad input"), None),
])
@responses.activate
def test_cloudflare_answers_are_classified_by_the_rule(status, body, reason):
    responses.add(responses.POST, run_url(SCHNELL.id), json=body, status=status)
    backend = CloudflareBackend(account_id=ACCOUNT, api_token="t", session=make_session(1),
                                retries=0)
    with pytest.raises(APIError) as caught:
        backend.generate(GenerationRequest(prompt="a cat", model=SCHNELL, width=1024,
                                           height=1024))
    assert fallback_reason(caught.value) == reason


# --- the chains --------------------------------------------------------------------------------

def test_chains_resolve_ids_and_aliases_to_offered_models():
    chains = resolve_chains((("@cf/black-forest-labs/flux-1-schnell",
                              ("klein-4b", "sdxl-lightning", "flux-1-schnell")),), MODELS)
    # The model itself is never its own alternative.
    assert chains == {SCHNELL.id: (KLEIN, SDXL)}


def test_a_name_not_offered_is_refused_naming_the_entry_and_the_known_names():
    with pytest.raises(ValueError) as caught:
        resolve_chains((("flux-1-schnell", ("no-such-model",)),), MODELS)
    assert "flux-1-schnell=no-such-model" in str(caught.value)
    assert "flux-2-klein-4b" in str(caught.value)
    narrow = ModelRegistry.build(("flux-1-schnell",), "flux-1-schnell")
    with pytest.raises(ValueError, match="not offered"):
        resolve_chains((("flux-1-schnell", ("flux-2-klein-4b",)),), narrow)


def test_services_refuse_a_bad_chain_at_start():
    config = Config.from_env({"IMAGE_BACKEND": "demo", "STORAGE_URL": "memory://",
                              "MODEL_FALLBACKS": "flux-1-schnell=nope"})
    with pytest.raises(ConfigError, match="MODEL_FALLBACKS: entry `flux-1-schnell=nope`"):
        build_services(config)


def test_an_alternative_must_honour_the_job():
    inpaint = MODELS.require("stable-diffusion-v1-5-inpainting")
    assert not can_honour(inpaint, images=0, mask=False, background=None)   # needs an image
    assert not can_honour(SCHNELL, images=1, mask=False, background=None)   # takes none
    assert can_honour(KLEIN, images=1, mask=False, background=None)
    assert not can_honour(KLEIN, images=1, mask=True, background=None)
    assert not can_honour(KLEIN, images=0, mask=False, background="transparent")


# --- auto --------------------------------------------------------------------------------------

def test_auto_orders_the_default_then_its_chain_then_the_rest():
    order = auto_order(MODELS, CHAINS)
    assert order[:3] == (SCHNELL, KLEIN, SDXL)
    assert set(order) == set(MODELS.models)


def auto_planner(providers=None, fits=None) -> Planner:
    return Planner(MODELS, 4, chains=CHAINS, providers=providers, fits=fits)


def test_auto_takes_the_default_when_it_can():
    model, requested = auto_planner().choose_model(ImageOrder("a cat", model="auto"))
    assert model is SCHNELL and requested is SCHNELL


def test_auto_passes_over_a_skipped_provider_an_unfit_request_and_the_budget():
    skipped = health(limit=1)
    skipped.failed(SCHNELL.provider)      # every Workers AI model is skipped now
    model, _ = auto_planner(providers=skipped).choose_model(ImageOrder("a cat", model="AUTO"))
    assert model is SCHNELL               # no healthy one: the first that can honour it draws
    with_image = ImageOrder("make it blue", model="auto", images=(object(),))  # type: ignore
    assert auto_planner().choose_model(with_image)[0] is KLEIN
    asked: list[str | None] = []

    def fits(caller, cost):  # the budget takes every model but the first asked about
        asked.append(caller.key)
        return len(asked) > 1

    chosen = auto_planner(fits=fits).choose_model(ImageOrder("a cat", model="auto"),
                                                  Caller(identity="sk-a", key="sk-a"))
    assert chosen[0] is KLEIN and asked[0] == "sk-a"


def test_auto_prefers_a_model_that_makes_the_asked_size_exactly():
    planner = auto_planner()
    size = SizeSpec(ratio=None, width=1536, height=1536, source="1536x1536")
    model, _ = planner.choose_model(ImageOrder("a cat", model="auto", size=size))
    assert SCHNELL.output_limits()[1] < 1536 <= model.output_limits()[1]


def test_auto_alternatives_are_the_next_candidates_planned_for_each_model():
    planner = auto_planner()
    order = ImageOrder("a cat 16:9 --steps 50", model="auto")
    model, requested = planner.choose_model(order)
    job = planner.plan(order, model, requested)
    alternatives = planner.alternatives(order, job)
    assert [a.model for a in alternatives[:2]] == [KLEIN, SDXL]
    for alt in alternatives:
        assert (alt.width, alt.height) == (job.width, job.height)
        if alt.steps is not None:
            assert alt.steps <= alt.model.clamp_steps(50)
        if not alt.model.negative_prompt:
            assert alt.negative is None


def test_chat_unknown_names_stay_the_default():
    model, _ = auto_planner().choose_model(ImageOrder("a cat", model="gpt-4o", chat=True))
    assert model is SCHNELL


# --- provider health ---------------------------------------------------------------------------

def test_health_skips_after_the_limit_then_tries_again_after_the_wait():
    clock = Clock()
    state = health(limit=3, retry=30, clock=clock)
    for _ in range(2):
        state.failed("workers-ai")
    assert state.usable("workers-ai") and state.state("workers-ai") == OK
    state.failed("workers-ai")
    assert not state.usable("workers-ai")
    assert state.state("workers-ai") == "skipped for 30 s after 3 failures"
    assert state.usable("openai")
    clock.now += 12
    assert state.state("workers-ai") == "skipped for 18 s after 3 failures"
    clock.now += 18.5
    assert state.usable("workers-ai")              # the trial
    state.failed("workers-ai")                     # a failed trial skips it again at once
    assert not state.usable("workers-ai")
    clock.now += 31
    state.succeeded("workers-ai")                  # a good trial restores it
    state.failed("workers-ai")
    assert state.usable("workers-ai")


def test_health_limit_zero_never_skips():
    state = health(limit=0)
    for _ in range(10):
        state.failed("workers-ai")
    assert state.usable("workers-ai")


class Broken(MemoryMarks):
    def get(self, name):
        raise ConnectionError("down")

    def incr(self, name, ttl):
        raise ConnectionError("down")


def test_health_fails_open_and_logs_once(caplog):
    state = ProviderHealth(Broken(), limit=1, retry_seconds=30)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            state.failed("workers-ai")
            assert state.usable("workers-ai")
    assert sum("provider health unavailable" in r.message for r in caplog.records) == 1


def test_health_is_shared_through_redis(redis_url):
    first = ProviderHealth(RedisMarks(CountersLocation.parse(redis_url)), limit=2,
                           retry_seconds=30)
    second = ProviderHealth(RedisMarks(CountersLocation.parse(redis_url)), limit=2,
                            retry_seconds=30)
    provider = "shared-test-provider"
    try:
        first.failed(provider)
        second.failed(provider)
        assert not first.usable(provider) and not second.usable(provider)
        assert second.state(provider).startswith("skipped for ")
        first.marks.delete(f"provider:{provider}:skip-until")
        second.succeeded(provider)
        first.failed(provider)
        assert second.usable(provider)
    finally:
        first.marks.close()
        second.marks.close()


# --- the pipeline ------------------------------------------------------------------------------

def fallback_pipeline(providers=None):
    backend = Providers({"workers-ai": CloudflareBackend(
        account_id=ACCOUNT, api_token="t", session=make_session(1), retries=0)})
    return Pipeline(backend=backend, store=MemoryStore(max_bytes=1 << 24), translator=None,
                    expiration=60, providers=providers)


def planned(text="a cat 16:9", chains=CHAINS):
    planner = Planner(MODELS, 4, chains=chains)
    order = ImageOrder(text)
    model, requested = planner.choose_model(order)
    job = planner.plan(order, model, requested)
    return replace(job, alternatives=planner.alternatives(order, job))


@pytest.mark.parametrize("status,body,reason", [
    (429, err_answer(3040, "Capacity temporarily exceeded"), "capacity"),
    (429, err_answer(4006, "used up your daily free allocation"), "quota"),
    (503, err_answer(8008, "Internal server error"), "upstream_error"),
])
@responses.activate
def test_the_next_alternative_draws_at_the_jobs_size(status, body, reason):
    responses.add(responses.POST, run_url(SCHNELL.id), json=body, status=status)
    responses.add(responses.POST, run_url(KLEIN.id), json=ok_answer())
    job = planned()
    result = fallback_pipeline().render(job, "a cat")
    assert result.model is KLEIN and result.fallback == reason
    assert result.tried == (SCHNELL.short_name,)
    assert (result.width, result.height) == (job.width, job.height)
    assert [c.request.url for c in responses.calls] == [run_url(SCHNELL.id), run_url(KLEIN.id)]


@responses.activate
def test_a_refused_prompt_never_falls_back():
    responses.add(responses.POST, run_url(SCHNELL.id),
                  json=err_answer(3030, "AiError: 3030: Input prompt has been flagged"),
                  status=400)
    responses.add(responses.POST, run_url(KLEIN.id), json=ok_answer())
    with pytest.raises(ContentPolicy):
        fallback_pipeline().render(planned(), "a cat")
    assert [c.request.url for c in responses.calls] == [run_url(SCHNELL.id)]


@responses.activate
def test_when_all_fail_the_last_error_names_every_model_tried():
    for model in (SCHNELL, KLEIN, SDXL):
        responses.add(responses.POST, run_url(model.id),
                      json=err_answer(3040, "Capacity temporarily exceeded"), status=429)
    with pytest.raises(Overloaded) as caught:
        fallback_pipeline().render(planned(), "a cat")
    assert (f"models tried in order: {SCHNELL.short_name}, {KLEIN.short_name}, "
            f"{SDXL.short_name}") in caught.value.message


@responses.activate
def test_a_skipped_provider_is_passed_over_but_tried_when_nothing_else_can():
    responses.add(responses.POST, run_url(SCHNELL.id), json=ok_answer())
    skipped = health(limit=1)
    skipped.failed("workers-ai")
    # Every alternative is Workers AI too: nothing healthy is left, so the job itself draws.
    result = fallback_pipeline(skipped).render(planned(), "a cat")
    assert result.model is SCHNELL and result.fallback is None
    assert skipped.usable("workers-ai")           # the success restored it


@responses.activate
def test_failures_in_a_row_skip_the_provider():
    responses.add(responses.POST, run_url(SCHNELL.id),
                  json=err_answer(3040, "Capacity temporarily exceeded"), status=429)
    state = health(limit=2)
    lone = planned(chains={})
    for _ in range(2):
        with pytest.raises(Overloaded):
            fallback_pipeline(state).render(lone, "a cat")
    assert state.state("workers-ai").startswith("skipped for 30 s after 2 failures")


@responses.activate
def test_the_asked_models_skipped_provider_lets_an_alternative_of_another_draw():
    responses.add(responses.POST, run_url(KLEIN.id), json=ok_answer())
    state = health(limit=1)
    state.failed("workers-ai")
    job = planned()
    other = replace(job.alternatives[0], model=replace(KLEIN, provider="elsewhere"))
    job = replace(job, alternatives=(other,))
    backend = CloudflareBackend(account_id=ACCOUNT, api_token="t", session=make_session(1),
                                retries=0)
    pipeline = Pipeline(backend=Providers({"workers-ai": backend, "elsewhere": backend}),
                        store=MemoryStore(max_bytes=1 << 24), translator=None, expiration=60,
                        providers=state)
    result = pipeline.render(job, "a cat")
    assert result.fallback == SKIPPED and result.tried == (SCHNELL.short_name,)
    assert [c.request.url for c in responses.calls] == [run_url(KLEIN.id)]
