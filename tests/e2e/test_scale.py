"""Several instances on one Redis; storage outages answer 503 and heal by themselves."""

from __future__ import annotations

import functools

import pytest
import requests

from harness.service import API_KEY, start_service
from tests import support
from tests.support import RedisServer, image_url, need_redis

pytestmark = pytest.mark.e2e


@pytest.fixture
def redis():
    need_redis()  # skips (or fails in CI) when redis-server is missing
    with RedisServer() as server:
        yield server


chat = functools.partial(support.chat, content="a cute cat 16:9")


def test_two_instances_share_one_redis(redis, tmp_path):
    env = {"API_KEY": API_KEY, "STORAGE_URL": redis.url, "RATE_LIMIT": "3/minute"}
    first = start_service(tmp_path / "a", env, workers=1)
    second = start_service(tmp_path / "b", env, workers=1)
    try:
        url = image_url(chat(first).json()["choices"][0]["message"]["content"])
        assert url.startswith("http") and "/image/" in url, url
        key = url.rsplit("/", 1)[1]
        served = requests.get(f"{second.url}/image/{key}", timeout=5)
        assert served.status_code == 200 and served.headers["Content-Type"] == "image/jpeg"
        # The rate limit is counted in Redis too: both instances draw on one allowance.
        assert chat(second).status_code == 200
        assert chat(first).status_code == 200
        limited = chat(second)
        assert limited.status_code == 429 and limited.headers["Retry-After"]
    finally:
        first.stop()
        second.stop()


def test_redis_outage_is_503_and_heals(redis, tmp_path):
    service = start_service(tmp_path, {"API_KEY": API_KEY, "STORAGE_URL": redis.url}, workers=1)
    try:
        assert chat(service).status_code == 200
        redis.stop()
        down = chat(service)
        assert down.status_code == 503 and down.json()["error"]["code"] == "storage_error"
        ready = requests.get(service.url + "/readyz", timeout=10)
        assert ready.status_code == 503 and ready.json()["error"]["type"] == "storage_error"
        assert "Redis" in down.json()["error"]["message"]
        redis.start()
        assert requests.get(service.url + "/readyz", timeout=10).status_code == 200
        assert chat(service).status_code == 200
    finally:
        service.stop()
