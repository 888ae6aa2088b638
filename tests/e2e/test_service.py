"""The real service under gunicorn, driven by the official openai SDK and requests."""

from __future__ import annotations

import io
import subprocess
import sys

import openai
import pytest
import requests
from PIL import Image

from flux_worker.generation.sizes import PRESETS
from harness.service import API_KEY, CF_TOKEN, LLM_KEY, ROOT, cloudflare_env, start_service
from tests.support import image_url

pytestmark = pytest.mark.e2e
SCHNELL = "@cf/black-forest-labs/flux-1-schnell"


def sdk(service, key=API_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=service.api, api_key=key, max_retries=0, timeout=30)


def ask(client: openai.OpenAI, text: str) -> str:
    """Send one user message and return the answer's text."""
    reply = client.chat.completions.create(model="x", messages=[{"role": "user", "content": text}])
    return reply.choices[0].message.content


def fetch_image(url: str):
    resp = requests.get(url, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp, Image.open(io.BytesIO(resp.content))


@pytest.mark.parametrize("ratio,size", sorted(PRESETS.items()))
def test_chat_every_preset_against_strict_cloudflare(cf_service, cf, ratio, size):
    reply = sdk(cf_service).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": f"a cute cat {ratio}"}])
    content = reply.choices[0].message.content
    assert reply.model == SCHNELL
    assert f"📐 Image size: {size[0]}x{size[1]}" in content
    resp, img = fetch_image(image_url(content))
    assert img.size == size and resp.headers["Content-Type"] == "image/jpeg"
    sent = cf.requests()[-1]
    assert sent["model"] == SCHNELL and sent["json"] == {"prompt": "a cute cat", "steps": 4}


def test_stream_through_the_sdk(cf_service, cf):
    stream = sdk(cf_service).chat.completions.create(
        model=SCHNELL, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "a lighthouse at dusk 16:9"}])
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and finishes.count("stop") == 1
    assert chunks[-1].usage.total_tokens > 0 and chunks[-1].choices == []
    assert "📐 Image size: 1024x576" in text
    _, img = fetch_image(image_url(text))
    assert img.size == (1024, 576)


def test_models_through_the_sdk(cf_service):
    client = sdk(cf_service)
    ids = [m.id for m in client.models.list()]
    assert SCHNELL in ids and "@cf/leonardo/phoenix-1.0" in ids
    assert client.models.retrieve(SCHNELL).id == SCHNELL
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("gpt-4o")
    assert info.value.body["code"] == "model_not_found"


def test_wrong_key_through_the_sdk(cf_service):
    with pytest.raises(openai.AuthenticationError) as info:
        sdk(cf_service, key="sk-wrong").chat.completions.create(
            model="x", messages=[{"role": "user", "content": "a cat"}])
    assert info.value.body["code"] == "invalid_api_key"


def test_content_policy_through_the_sdk(cf_service, cf):
    cf.add_faults("3030")
    with pytest.raises(openai.BadRequestError) as info:
        sdk(cf_service).chat.completions.create(
            model="x", messages=[{"role": "user", "content": "something flagged"}])
    assert info.value.body["code"] == "content_policy_violation"


def test_errors_and_cors_with_requests(cf_service):
    url = cf_service.url
    pre = requests.options(url + "/v1/chat/completions", timeout=5, headers={
        "Origin": "https://chat.example", "Access-Control-Request-Method": "POST"})
    assert pre.status_code == 204 and pre.headers["Access-Control-Allow-Origin"] == "*"
    for resp, status in (
            (requests.post(url + "/v1/chat/completions", data="{bad", timeout=5,
                           headers={"Authorization": f"Bearer {API_KEY}"}), 400),
            (requests.get(url + "/nope", timeout=5), 404),
            (requests.get(url + "/image/AAAAAAAAAAAAAAAAAAAAAA", timeout=5), 404),
            (requests.put(url + "/v1/models", timeout=5), 405)):
        assert resp.status_code == status
        assert set(resp.json()["error"]) == {"message", "type", "param", "code"}
        assert resp.headers["Access-Control-Allow-Origin"] == "*"


def test_image_headers_and_conditional_get(cf_service, cf):
    reply = sdk(cf_service).chat.completions.create(
        model="x", messages=[{"role": "user", "content": "a red fox"}])
    url = image_url(reply.choices[0].message.content)
    first = requests.get(url, timeout=5)
    assert first.headers["ETag"] and "max-age=" in first.headers["Cache-Control"]
    again = requests.get(url, headers={"If-None-Match": first.headers["ETag"]}, timeout=5)
    assert again.status_code == 304
    head = requests.head(url, timeout=5)
    assert head.status_code == 200 and head.headers["Content-Type"] == "image/jpeg"


def test_images_shared_by_all_worker_processes(cf_service, cf):
    """Disk storage is one cache for all gunicorn processes: every fetch finds the image."""
    client = sdk(cf_service)
    urls = [image_url(ask(client, f"cat {i}")) for i in range(4)]
    for url in urls:
        for _ in range(4):  # new connections land on either process
            assert requests.get(url, timeout=5, headers={"Connection": "close"}).status_code == 200


def test_logs_never_contain_secrets(cf_service, cf):
    ask(sdk(cf_service), "a cat")
    with pytest.raises(openai.AuthenticationError):
        sdk(cf_service, key="sk-wrong-but-logged?").models.list()
    log = cf_service.log()
    assert "generated" in log  # the log is really captured
    assert "POST /v1/chat/completions 200" in log
    for secret in (API_KEY, CF_TOKEN, "sk-wrong-but-logged?"):
        assert secret not in log


def test_translation_through_an_external_llm(fake_cf, cf, tmp_path):
    service = start_service(tmp_path, cloudflare_env(
        fake_cf, CF_IS_TRANSLATE="true", EXTERNAL_API_BASE=fake_cf.url,  # no /v1: added
        EXTERNAL_MODEL="fake-llm", EXTERNAL_API_KEY=LLM_KEY, TRANSLATE_TIMEOUT="2"), workers=1)
    try:
        client = sdk(service)
        content = ask(client, "一只可爱的猫 16:9")
        assert "💬 Prompt model: fake-llm" in content
        assert "🌐 Translated prompt: A cute cat sitting on a windowsill" in content
        assert "<think>" not in content
        llm_call = [r for r in cf.requests() if r["kind"] == "llm"][-1]
        assert "16:9" in llm_call["json"]["messages"][1]["content"]
        image_call = [r for r in cf.requests() if r["kind"] == "run"][-1]
        assert image_call["json"]["prompt"].startswith("A cute cat sitting")
        # A slow LLM: the original prompt is used and the answer says so.
        cf.add_llm_faults({"kind": "timeout", "seconds": 4})
        content = ask(client, "a red fox 3:2")
        assert "Original Prompt" in content and "skipped" in content
        assert "📐 Image size: 768x512" in content
    finally:
        service.stop()


def test_demo_backend_on_embedded_defaults(demo_service):
    page = requests.get(demo_service.url + "/", timeout=5)
    assert page.status_code == 200 and "demo" in page.text.lower()
    reply = sdk(demo_service, key="anything").chat.completions.create(
        model="flux", messages=[{"role": "user", "content": "a cute cat 9:16"}])
    _, img = fetch_image(image_url(reply.choices[0].message.content))
    assert img.size == (576, 1024)
    assert requests.get(demo_service.url + "/readyz", timeout=5).json()["checks"]["storage"] == "ok"
    assert "DEMO backend active" in demo_service.log()


@pytest.mark.parametrize("env,name", [({"FLUX_NUM_STEPS": "abc"}, "FLUX_NUM_STEPS"),
                                      ({"CF_ACCOUNT_ID": "a", "CF_API_TOKEN": "t"}, "API_KEY")])
def test_bad_configuration_stops_the_start(tmp_path, env, name):
    service = start_service(tmp_path, env, wait=False)
    try:
        assert service.proc.wait(30) != 0
        assert name in service.log() and "configuration error" in service.log()
    finally:
        service.stop()


def test_app_module_refuses_bad_config_too():
    result = subprocess.run([sys.executable, "-c", "import app"], cwd=ROOT, capture_output=True,
                            text=True, env={"PATH": "/usr/bin:/bin", "IMAGE_EXPIRATION": "soon"})
    assert result.returncode != 0 and "IMAGE_EXPIRATION" in result.stderr


def test_memory_storage_runs_one_worker_so_every_image_is_found(tmp_path):
    service = start_service(tmp_path, {"STORAGE_URL": "memory://"}, workers=None)
    try:
        client = sdk(service, key="none")
        for i in range(4):
            content = ask(client, f"cat {i}")
            for _ in range(3):
                url = image_url(content)
                fresh = requests.get(url, timeout=5, headers={"Connection": "close"})
                assert fresh.status_code == 200
        assert "keeps images inside each process" not in service.log()
    finally:
        service.stop()


def test_two_instances_on_one_host_leave_no_shared_control_socket(tmp_path):
    # gunicorn 27 put one control socket per user at ~/.gunicorn/gunicorn.ctl, and a second
    # instance replaced the first's; the service turns it off.
    home = tmp_path / "home"
    first = start_service(tmp_path / "a", {"HOME": str(home)}, workers=1)
    second = start_service(tmp_path / "b", {"HOME": str(home)}, workers=1)
    try:
        for service in (first, second):
            assert requests.get(service.url + "/healthz", timeout=5).status_code == 200
        assert not (home / ".gunicorn").exists()
    finally:
        first.stop()
        second.stop()
