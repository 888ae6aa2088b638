"""Background responses across instances: two services sharing Redis storage (redis-server),
the fake Cloudflare slowed by a fault, the official `openai` SDK polling the other instance.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import openai
import pytest

from harness.service import API_KEY, cloudflare_env, start_service
from tests.support import wait_until

pytestmark = pytest.mark.e2e

STALE = 3      # RESPONSES_STALE_SECONDS: a job is heartbeating every 0.75 s


def sdk(service) -> openai.OpenAI:
    return openai.OpenAI(base_url=service.api, api_key=API_KEY, max_retries=0, timeout=30)


@pytest.fixture
def pair(fake_cf, redis_url, tmp_path):
    env = cloudflare_env(fake_cf, STORAGE_URL=redis_url.rsplit("/", 1)[0] + "/7",
                         RESPONSES_STALE_SECONDS=STALE, UPSTREAM_TIMEOUT="60")
    first = start_service(tmp_path / "a", env)
    second = start_service(tmp_path / "b", env)
    yield first, second
    for service in (first, second):
        service.stop()


def kill_instance(service) -> None:
    """SIGKILL gunicorn's workers and master: no shutdown code runs anywhere."""
    pid = service.proc.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for child in children:
        os.kill(int(child), signal.SIGKILL)
    service.proc.kill()
    service.proc.wait(10)


def test_a_background_response_started_on_one_instance_completes_on_the_other(pair, cf):
    first, second = pair
    cf.add_faults({"kind": "timeout", "seconds": 2})       # slow enough to be seen running
    queued = sdk(first).responses.create(model="gpt-5.4", input="a windmill 16:9",
                                         tools=[{"type": "image_generation"}], background=True)
    statuses = []

    def final():
        got = sdk(second).responses.retrieve(queued.id)
        statuses.append(got.status)
        return got if got.status not in ("queued", "in_progress") else None

    done = wait_until(final, timeout=30, interval=0.2)
    assert done.status == "completed" and done.output[0].result
    assert "in_progress" in statuses
    assert sdk(second).responses.input_items.list(queued.id).data[0].content[0].text == (
        "a windmill 16:9")


def test_a_cancel_on_the_other_instance_stops_a_job_before_its_upstream_call(
        fake_cf, redis_url, tmp_path, cf):
    env = cloudflare_env(fake_cf, STORAGE_URL=redis_url.rsplit("/", 1)[0] + "/8",
                         RESPONSES_STALE_SECONDS=STALE, CF_IS_TRANSLATE="true",
                         EXTERNAL_API_BASE=fake_cf.url + "/v1", EXTERNAL_MODEL="gpt-4o-mini",
                         EXTERNAL_API_KEY="test-llm-key", TRANSLATE_TIMEOUT="15")
    first, second = start_service(tmp_path / "a", env), start_service(tmp_path / "b", env)
    try:
        cf.add_llm_faults({"kind": "timeout", "seconds": 4})    # a slow translation
        queued = sdk(first).responses.create(model="gpt-5.4", input="a cat", background=True)
        answer = sdk(second).responses.cancel(queued.id)
        assert answer.status == "cancelled"
        assert sdk(first).responses.retrieve(queued.id).status == "cancelled"
        assert [r for r in cf.requests() if r["kind"] == "run"] == []
    finally:
        first.stop()
        second.stop()


def test_a_killed_instances_background_job_ends_failed(pair, cf):
    first, second = pair
    cf.add_faults({"kind": "timeout", "seconds": 30})      # still running when killed
    queued = sdk(first).responses.create(model="gpt-5.4", input="a slow picture",
                                         background=True)
    wait_until(lambda: sdk(second).responses.retrieve(queued.id).status == "in_progress",
               timeout=10)
    wait_until(lambda: [r for r in cf.requests() if r["kind"] == "run"], timeout=10)
    kill_instance(first)
    seen = sdk(second).responses.retrieve(queued.id)
    assert seen.status == "in_progress"                    # not yet stale
    failed = wait_until(lambda: (r := sdk(second).responses.retrieve(queued.id)).status
                        == "failed" and r, timeout=STALE + 5, interval=0.2)
    assert failed.error.code == "server_error" and "stopped" in failed.error.message
