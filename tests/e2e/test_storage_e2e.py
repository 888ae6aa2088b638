"""Images on object storage and images that last, end to end: the real service under gunicorn,
the fake Cloudflare, a moto S3 server, redis-server, driven by the openai client and requests.
"""

from __future__ import annotations

import re

import openai
import pytest
import requests

from harness.service import API_KEY, cloudflare_env, start_service
from tests.support import free_port, image_url, wait_until

pytestmark = pytest.mark.e2e


def chat_link(service, stream: bool = False, prompt: str = "a lighthouse at dusk") -> str:
    """Ask for an image in a chat and return the link in the answer."""
    client = openai.OpenAI(base_url=service.api, api_key=API_KEY, max_retries=0, timeout=30)
    messages = [{"role": "user", "content": prompt}]
    if stream:
        chunks = client.chat.completions.create(model="flux-schnell", messages=messages,
                                                stream=True)
        content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        answer = client.chat.completions.create(model="flux-schnell", messages=messages)
        content = answer.choices[0].message.content
    link = image_url(content)
    assert link.startswith(("http://", "https://")), content
    return link


@pytest.fixture(scope="module")
def s3_service(fake_cf, s3_server, tmp_path_factory):
    """The service on the fake Cloudflare, keeping images in a moto bucket under a prefix."""
    bucket = s3_server.create_bucket()
    env = cloudflare_env(fake_cf, STORAGE_URL=f"s3://{bucket}/flux", IMAGE_EXPIRATION=600,
                         COUNTERS_URL="memory://", **s3_server.env())
    service = start_service(tmp_path_factory.mktemp("s3-service"), env)
    service.bucket = bucket
    yield service
    service.stop()


@pytest.mark.parametrize("stream", [False, True])
def test_chat_image_over_s3_is_served_with_etag_304_and_head(s3_service, s3_server, stream):
    link = chat_link(s3_service, stream=stream)
    assert link.startswith(s3_service.url + "/image/")
    key = link.rsplit("/", 1)[1]
    head = s3_server.client().head_object(Bucket=s3_service.bucket, Key="flux/" + key)
    assert head["ContentType"] == "image/jpeg"
    got = requests.get(link, timeout=10)
    assert got.status_code == 200 and got.content[:3] == b"\xff\xd8\xff"
    assert got.headers["ETag"] == f'"{key}"'
    max_age = int(re.search(r"max-age=(\d+)", got.headers["Cache-Control"]).group(1))
    assert 590 <= max_age <= 600
    again = requests.get(link, headers={"If-None-Match": f'"{key}"'}, timeout=10)
    assert again.status_code == 304 and again.content == b""
    head = requests.head(link, timeout=10)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(got.content)


def test_images_api_over_s3(s3_service):
    client = openai.OpenAI(base_url=s3_service.api, api_key=API_KEY, max_retries=0, timeout=30)
    answer = client.images.generate(model="flux-schnell", prompt="two red boats", n=2)
    assert len(answer.data) == 2
    bodies = [requests.get(item.url, timeout=10) for item in answer.data]
    assert all(b.status_code == 200 and b.headers["Content-Type"] == "image/jpeg" for b in bodies)
    assert answer.data[0].url != answer.data[1].url


def test_expired_s3_images_are_refused_and_deleted(fake_cf, s3_server, tmp_path):
    bucket = s3_server.create_bucket()
    env = cloudflare_env(fake_cf, STORAGE_URL=f"s3://{bucket}", IMAGE_EXPIRATION=2,
                         COUNTERS_URL="memory://", **s3_server.env())
    service = start_service(tmp_path, env)
    try:
        link = chat_link(service)
        assert requests.get(link, timeout=10).status_code == 200
        # Asked again until the two seconds are up: the first refusal is the one to check.
        answers: list[requests.Response] = []

        def refused() -> bool:
            answers.append(requests.get(link, timeout=10))
            return answers[-1].status_code == 404

        wait_until(refused, timeout=10, interval=0.2, message="the image to expire")
        gone = answers[-1]
        assert gone.status_code == 404
        assert gone.json()["error"]["code"] == "image_not_found"
        assert s3_server.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    finally:
        service.stop()


def test_direct_links_point_at_the_bucket_and_the_service_serves_no_bytes(
        fake_cf, s3_server, tmp_path):
    bucket = s3_server.create_bucket()
    s3_server.make_public(bucket)
    public = f"{s3_server.endpoint}/{bucket}"  # moto, path-style: a public bucket's address
    env = cloudflare_env(fake_cf, STORAGE_URL=f"s3://{bucket}/img", IMAGE_LINKS="direct",
                         S3_PUBLIC_BASE_URL=public, COUNTERS_URL="memory://", **s3_server.env())
    service = start_service(tmp_path, env)
    try:
        link = chat_link(service)
        assert link.startswith(public + "/img/")
        got = requests.get(link, timeout=10)
        assert got.status_code == 200 and got.content[:3] == b"\xff\xd8\xff"
        assert got.headers["Content-Type"] == "image/jpeg"
        assert "/image/" not in service.log()
        # The page shows the bucket's images (img-src allows their scheme) without naming
        # the bucket's host: the page is an open route.
        page = requests.get(service.url + "/", timeout=10)
        policy = page.headers["Content-Security-Policy"]
        assert "img-src 'self' data: blob: http:;" in policy
        assert f"127.0.0.1:{s3_server.port}" not in policy
    finally:
        service.stop()


def test_presigned_links_are_fetched_without_credentials(fake_cf, s3_server, tmp_path):
    bucket = s3_server.create_bucket()
    env = cloudflare_env(fake_cf, STORAGE_URL=f"s3://{bucket}", IMAGE_LINKS="presigned",
                         IMAGE_EXPIRATION=900, COUNTERS_URL="memory://", **s3_server.env())
    service = start_service(tmp_path, env)
    try:
        link = chat_link(service)
        assert link.startswith(s3_server.endpoint) and "X-Amz-Expires=900" in link
        assert requests.get(link.split("?")[0], timeout=10).status_code == 403  # private bucket
        got = requests.get(link, timeout=10)
        assert got.status_code == 200 and got.content[:3] == b"\xff\xd8\xff"
    finally:
        service.stop()


def test_a_missing_bucket_is_named_at_start_and_costs_no_upstream_call(cf, s3_server, tmp_path):
    env = cloudflare_env(cf, STORAGE_URL="s3://no-such-bucket-here", COUNTERS_URL="memory://",
                         **s3_server.env())
    service = start_service(tmp_path, env)
    try:
        assert "'no-such-bucket-here'" in service.log() and "does not exist" in service.log()
        # /readyz tells a configured key the cause; anyone else only that storage fails.
        ready = requests.get(service.url + "/readyz", timeout=10,
                             headers={"Authorization": f"Bearer {API_KEY}"})
        assert ready.status_code == 503 and "does not exist" in ready.text
        anonymous = requests.get(service.url + "/readyz", timeout=10)
        assert anonymous.status_code == 503 and "no-such-bucket-here" not in anonymous.text
        answer = requests.post(service.api + "/chat/completions", timeout=30,
                               headers={"Authorization": f"Bearer {API_KEY}"},
                               json={"messages": [{"role": "user", "content": "a cat"}]})
        assert answer.status_code == 503
        assert answer.json()["error"]["code"] == "storage_error"
        assert not [r for r in cf.requests() if "/ai/run/" in r.get("path", "")]
        assert s3_server.options.secret_access_key not in service.log()
    finally:
        service.stop()


# Retention: IMAGE_EXPIRATION=0, and links surviving a restart of the server.

@pytest.fixture(params=["disk", "redis", "s3"])
def lasting_storage(request, tmp_path):
    """Service variables for storage that outlives the server, with images kept for ever."""
    if request.param == "disk":
        return {"STORAGE_URL": f"disk://{tmp_path / 'kept'}"}
    if request.param == "redis":
        return {"STORAGE_URL": request.getfixturevalue("redis_url").replace("/0", "/5")}
    server = request.getfixturevalue("s3_server")
    return {"STORAGE_URL": f"s3://{server.create_bucket()}/kept", "COUNTERS_URL": "memory://",
            **server.env()}


def test_links_in_earlier_answers_work_after_a_restart(fake_cf, lasting_storage, tmp_path):
    port = free_port()
    env = cloudflare_env(fake_cf, IMAGE_EXPIRATION=0, **lasting_storage)
    first = start_service(tmp_path / "first", env, port=port)
    try:
        links = [chat_link(first), chat_link(first, stream=True)]
        before = [requests.get(link, timeout=10) for link in links]
        assert all(b.status_code == 200 for b in before)
        # Kept for ever: caches may keep it a year.
        assert "max-age=31536000" in before[0].headers["Cache-Control"]
    finally:
        first.stop()
    second = start_service(tmp_path / "second", env, port=port)
    try:
        after = [requests.get(link, timeout=10) for link in links]
        assert [a.status_code for a in after] == [200, 200]
        assert [a.content for a in after] == [b.content for b in before]
    finally:
        second.stop()
