"""Run-time keys across two instances sharing Redis: created on one, used on the other with
the official `openai` SDK, limited by their own budget, rate limit, models and expiry, and
refused everywhere on the request after their revocation. The fake Cloudflare draws."""

from __future__ import annotations

import time

import openai
import pytest
import redis
import requests

from harness.service import cloudflare_env, start_service
from tests.support import bearer, wait_until

pytestmark = pytest.mark.e2e

ADMIN_KEY = "sk-admin-e2e-0000000000"
COUNTERS_DB = 11          # this test's own database on the session's redis-server
SCHNELL = "@cf/black-forest-labs/flux-1-schnell"
KLEIN = "@cf/black-forest-labs/flux-2-klein-4b"


@pytest.fixture(scope="module")
def pair(fake_cf, redis_url, tmp_path_factory):
    counters = redis_url.rsplit("/", 1)[0] + f"/{COUNTERS_DB}"
    redis.Redis.from_url(counters).flushdb()
    env = cloudflare_env(fake_cf, ADMIN_API_KEY=ADMIN_KEY, COUNTERS_URL=counters)
    tmp = tmp_path_factory.mktemp("keys")
    first = start_service(tmp / "a", env)
    second = start_service(tmp / "b", env)
    yield first, second
    for service in (first, second):
        service.stop()


def admin(service, method: str, path: str = "", **body) -> dict:
    response = requests.request(method, f"{service.api}/admin/keys{path}", json=body or None,
                                headers=bearer(ADMIN_KEY), timeout=10)
    assert response.status_code in (200, 201), response.text
    return response.json()


def client(service, secret: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=service.api, api_key=secret, max_retries=0, timeout=60)


def draw(service, secret: str, model: str = SCHNELL):
    return client(service, secret).images.generate(model=model, prompt="a lighthouse",
                                                   size="1024x1024", response_format="url")


def test_a_key_made_on_one_instance_works_on_the_other_until_revoked(pair):
    first, second = pair
    made = admin(first, "POST", name="family laptop")
    secret = made["secret"]
    assert draw(second, secret).data[0].url
    chat = client(first, secret).chat.completions.create(
        model="flux", messages=[{"role": "user", "content": "a red kite"}])
    assert "![" in chat.choices[0].message.content
    admin(second, "DELETE", f"/{made['id']}")
    for service in (first, second):
        with pytest.raises(openai.AuthenticationError, match="was revoked"):
            draw(service, secret)
    listed = admin(first, "GET")["data"]
    line = next(k for k in listed if k["id"] == made["id"])
    assert line["status"] == "revoked" and line["usage"]["spent_neurons"] > 0
    assert secret not in str(listed)


def test_a_key_budget_refuses_then_a_raise_on_the_other_instance_lets_it_draw(pair):
    first, second = pair
    made = admin(first, "POST", name="pocket money", daily_neurons=0.001)
    with pytest.raises(openai.RateLimitError) as refused:
        draw(first, made["secret"])
    assert refused.value.code == "insufficient_quota"
    assert "This API key's daily budget" in refused.value.message
    admin(second, "PATCH", f"/{made['id']}", daily_neurons=1000)
    assert draw(first, made["secret"]).data[0].url


def test_a_key_rate_limit_is_counted_across_both_instances(pair):
    first, second = pair
    made = admin(first, "POST", name="slow", rate_limit="2/minute")
    assert draw(first, made["secret"]).data and draw(second, made["secret"]).data
    with pytest.raises(openai.RateLimitError) as refused:
        draw(first, made["secret"])
    assert refused.value.code == "rate_limit_exceeded"
    assert refused.value.response.headers["Retry-After"]


def test_a_key_limited_to_one_model_and_one_that_expires(pair):
    first, second = pair
    only = admin(first, "POST", name="schnell only", models=[SCHNELL])
    assert draw(second, only["secret"], SCHNELL).data
    with pytest.raises(openai.PermissionDeniedError) as refused:
        draw(second, only["secret"], KLEIN)
    assert refused.value.code == "model_not_allowed"
    soon = admin(second, "POST", name="trial", expires_at=int(time.time()) + 3)
    assert draw(first, soon["secret"]).data

    def refused_now() -> bool:
        try:
            draw(first, soon["secret"])
        except openai.AuthenticationError as exc:
            return "expired on" in exc.message
        return False

    assert wait_until(refused_now, timeout=10, interval=0.5)
