"""Fault injection: every upstream failure of the contract's error table, end to end.

For each, the real service (gunicorn) answers with the exact status and code, stores nothing,
ends a stream cleanly with [DONE], and serves the next good request.
"""

from __future__ import annotations

import functools
import json

import diskcache
import pytest

from harness.service import API_KEY, LLM_KEY, cloudflare_env, start_service
from tests import support
from tests.support import free_port, sse_chunks

pytestmark = pytest.mark.e2e

FAULTS = [
    ("3030", 400, "content_policy_violation"),
    ("4006", 429, "insufficient_quota"),
    ("3036", 429, "insufficient_quota"),
    ("3040", 503, "rate_limit_exceeded"),
    ("rate_limit", 429, "rate_limit_exceeded"),
    ("5006", 502, "upstream_error"),
    ("10000", 502, "upstream_auth_failed"),
    ("7003", 502, "upstream_auth_failed"),
    ("500", 502, "upstream_error"),
    ("8008", 502, "upstream_error"),
    ({"kind": "timeout", "seconds": 3}, 504, "upstream_error"),
    ("malformed_json", 502, "upstream_error"),
    ("no_image", 502, "upstream_error"),
    ("not_image", 502, "upstream_error"),
    ("bad_base64", 502, "upstream_error"),
    ("empty", 502, "upstream_error"),
    ("close", 502, "upstream_error"),
]


@pytest.fixture(scope="module")
def service(fake_cf, tmp_path_factory):
    """One process, no retries, a short timeout: each fault maps straight to its answer."""
    tmp = tmp_path_factory.mktemp("faults")
    svc = start_service(tmp, cloudflare_env(fake_cf, UPSTREAM_RETRIES="0", UPSTREAM_TIMEOUT="1.5"),
                        workers=1)
    svc.store_dir = tmp / "images"
    yield svc
    svc.stop()


def stored(service) -> int:
    with diskcache.Cache(str(service.store_dir)) as cache:
        return len(cache)


# A model name the service does not know (it falls back), "stream" always sent.
chat = functools.partial(support.chat, content="a cute cat 16:9", model="x", stream=False)


def fault_id(value) -> str:
    """Name a FAULTS entry in the test id: a fault by its JSON, a status or code as itself."""
    return json.dumps(value) if isinstance(value, dict) else str(value)


@pytest.mark.parametrize("fault,status,code", FAULTS, ids=fault_id)
def test_fault_maps_to_exact_error_and_stores_nothing(service, cf, fault, status, code):
    before = stored(service)
    cf.add_faults(fault)
    resp = chat(service)
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["code"] == code and set(err) == {"message", "type", "param", "code"}
    if status in (429, 503):
        assert int(resp.headers["Retry-After"]) > 0
    assert stored(service) == before

    cf.add_faults(fault)
    streamed = chat(service, stream=True)
    assert streamed.status_code == 200
    assert streamed.text.endswith("data: [DONE]\n\n")
    chunks = sse_chunks(streamed)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert "❌" in chunks[-2]["choices"][0]["delta"]["content"]
    assert stored(service) == before

    good = chat(service)
    assert good.status_code == 200 and stored(service) == before + 1


def test_capacity_error_is_retried_then_succeeds(fake_cf, cf, tmp_path):
    svc = start_service(tmp_path, cloudflare_env(fake_cf, UPSTREAM_RETRIES="2"), workers=1)
    try:
        cf.add_faults("3040", "500")
        assert chat(svc).status_code == 200
        runs = [r for r in cf.requests() if r["kind"] == "run"]
        assert [r["fault"] for r in runs] == ["3040", "500", None]
        cf.reset()
        cf.add_faults("3030")  # never retried
        assert chat(svc).status_code == 400
        assert len([r for r in cf.requests() if r["kind"] == "run"]) == 1
    finally:
        svc.stop()


def test_connection_refused(tmp_path):
    env = {"API_KEY": API_KEY, "CF_ACCOUNT_ID": "a", "CF_API_TOKEN": "t", "UPSTREAM_RETRIES": "1",
           "CF_API_BASE": f"http://127.0.0.1:{free_port()}/client/v4"}
    svc = start_service(tmp_path, env, workers=1)
    try:
        resp = chat(svc)
        assert resp.status_code == 502 and resp.json()["error"]["code"] == "upstream_error"
    finally:
        svc.stop()


def test_slow_llm_falls_back_to_the_original_prompt(fake_cf, cf, tmp_path):
    svc = start_service(tmp_path, cloudflare_env(
        fake_cf, CF_IS_TRANSLATE="true", EXTERNAL_API_BASE=fake_cf.url + "/v1",
        EXTERNAL_MODEL="slow-llm", EXTERNAL_API_KEY=LLM_KEY, TRANSLATE_TIMEOUT="1"), workers=1)
    try:
        for fault in ({"kind": "timeout", "seconds": 3}, "500", "empty"):
            cf.add_llm_faults(fault)
            resp = chat(svc, content="一只猫 3:2")
            assert resp.status_code == 200
            content = resp.json()["choices"][0]["message"]["content"]
            assert "skipped" in content and "🌐 Translated prompt: 一只猫" in content
            runs = [r for r in cf.requests() if r["kind"] == "run"]
            assert runs[-1]["json"]["prompt"] == "一只猫"
    finally:
        svc.stop()
