"""Fallback end to end: gunicorn against the strict fake Cloudflare and its fake Images API.

MODEL_FALLBACKS moves a request to the next model on capacity, quota, 5xx and timeouts (never
on a refused prompt), across providers too; `auto` lets the service choose; a provider that
keeps failing is skipped by every instance sharing the counters in Redis, then restored.
"""

from __future__ import annotations

import openai
import pytest
import requests

from harness.service import LLM_KEY, cloudflare_env, start_service
from tests import support
from tests.support import metric_value, sdk, wait_until

pytestmark = pytest.mark.e2e

SCHNELL = "@cf/black-forest-labs/flux-1-schnell"
KLEIN = "@cf/black-forest-labs/flux-2-klein-4b"
DEV = "@cf/black-forest-labs/flux-2-dev"



def both_providers(fake, **extra) -> dict[str, str]:
    """Workers AI and the fake's OpenAI-compatible Images API, side by side."""
    return cloudflare_env(fake, UPSTREAM_RETRIES="0", UPSTREAM_TIMEOUT="1.5",
                          IMAGE_API_BASE=fake.url, IMAGE_API_KEY=LLM_KEY,
                          IMAGE_API_MODELS="sd-turbo", **extra)


@pytest.fixture(scope="module")
def service(fake_cf, tmp_path_factory):
    """One process; providers never skipped, so each test sees only its own faults."""
    svc = start_service(tmp_path_factory.mktemp("fallback"), both_providers(
        fake_cf, MODEL_FALLBACKS="flux-1-schnell=flux-2-klein-4b;flux-2-dev=sd-turbo",
        PROVIDER_FAILURE_LIMIT="0"), workers=1)
    yield svc
    svc.stop()


def drawn(cf) -> list[str]:
    """The models the fake was asked to draw, in order (Workers AI runs and Images API calls)."""
    return [r["model"] for r in cf.requests() if r["kind"] in ("run", "images")]


@pytest.mark.parametrize("fault,reason", [
    ("3040", "capacity"), ("4006", "quota"), ("500", "upstream_error"),
    ({"kind": "timeout", "seconds": 3}, "timeout"),
])
def test_the_next_model_draws_when_a_provider_fails(service, cf, fault, reason):
    metrics = requests.get(service.url + "/metrics", timeout=10).text
    before = metric_value(metrics, "flux_worker_neurons_total", model=KLEIN)
    cf.add_faults(fault)
    raw = sdk(service).images.with_raw_response.generate(
        model="flux-1-schnell", prompt="a cute cat", size="1024x1024")
    images = raw.parse()
    assert raw.headers["X-Image-Model"] == KLEIN
    assert raw.headers["X-Fallback-Reason"] == reason
    assert raw.headers["X-Image-Size"] == "1024x1024" and images.data[0].b64_json
    assert drawn(cf) == [SCHNELL, KLEIN]
    metrics = requests.get(service.url + "/metrics", timeout=10).text
    # The cost counted is the drawn model's.
    assert metric_value(metrics, "flux_worker_neurons_total", model=KLEIN) > before
    assert metric_value(metrics, "flux_worker_fallbacks_total", from_model=SCHNELL,
                        to_model=KLEIN, reason=reason) >= 1


def test_a_refused_prompt_never_falls_back(service, cf):
    cf.add_faults("3030")
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(service).images.generate(model="flux-1-schnell", prompt="a cute cat")
    assert caught.value.code == "content_policy_violation"
    assert drawn(cf) == [SCHNELL]          # the alternative was never called


def test_fallback_crosses_providers_and_chat_says_so(service, cf):
    cf.add_faults("3040")
    reply = sdk(service).chat.completions.create(
        model="flux-2-dev", messages=[{"role": "user", "content": "a cute cat 16:9"}])
    text = reply.choices[0].message.content
    assert drawn(cf) == [DEV, "sd-turbo"]
    assert "sd-turbo" in text and "capacity" in text and "MODEL_FALLBACKS" in text
    image = requests.get(support.image_url(text), timeout=10)
    assert image.status_code == 200


def test_auto_is_listed_and_draws(service, cf):
    client = sdk(service)
    listed = {m.id: m for m in client.models.list()}
    assert listed["auto"].model_extra["provider"] == "auto"
    images = client.images.generate(model="auto", prompt="a cute cat", size="1024x1024")
    assert images.data[0].b64_json and drawn(cf) == [SCHNELL]   # the default first


def test_two_instances_share_provider_health(fake_cf, cf, redis_server, tmp_path):
    env = both_providers(fake_cf, MODEL_FALLBACKS="flux-1-schnell=sd-turbo",
                         COUNTERS_URL=redis_server.url, PROVIDER_FAILURE_LIMIT="2",
                         PROVIDER_RETRY_SECONDS="2")
    first = start_service(tmp_path / "a", env, workers=1)
    second = start_service(tmp_path / "b", env, workers=1)
    try:
        for _ in range(2):
            cf.add_faults("3040")     # the fake's faults are one queue: one per request
            sdk(first).images.generate(model="flux-1-schnell", prompt="a cute cat")
        assert drawn(cf) == [SCHNELL, "sd-turbo", SCHNELL, "sd-turbo"]
        ready = requests.get(second.url + "/readyz", timeout=10).json()
        assert ready["checks"]["providers"]["workers-ai"].startswith("skipped for ")
        assert ready["checks"]["providers"]["workers-ai"].endswith("after 2 failures")
        metrics = requests.get(second.url + "/metrics", timeout=10).text
        assert metric_value(metrics, "flux_worker_provider_up", provider="workers-ai") == 0

        # Instance B skips Workers AI: its calls stop reaching the fake.
        cf.reset()
        raw = sdk(second).images.with_raw_response.generate(model="flux-1-schnell",
                                                             prompt="a cute cat")
        assert raw.headers["X-Fallback-Reason"] == "provider_skipped"
        assert drawn(cf) == ["sd-turbo"]

        # After the wait one request tries it again, and its success restores it.
        def restored() -> bool:
            state = requests.get(second.url + "/readyz", timeout=10).json()
            return state["checks"]["providers"]["workers-ai"] == "ok"

        wait_until(restored, timeout=15, message="Workers AI restored after the wait")
        cf.reset()
        raw = sdk(second).images.with_raw_response.generate(model="flux-1-schnell",
                                                             prompt="a cute cat")
        assert "X-Fallback-Reason" not in raw.headers and drawn(cf) == [SCHNELL]
        metrics = requests.get(first.url + "/metrics", timeout=10).text
        assert metric_value(metrics, "flux_worker_provider_up", provider="workers-ai") == 1
    finally:
        first.stop()
        second.stop()
