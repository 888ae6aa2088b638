"""MCP end to end: the official SDK client against gunicorn (2 workers) and over stdio.

The service runs on the Cloudflare backend pointed at the strict fake. Over streamable HTTP the
client talks both protocol eras: 2026-07-28 (no handshake, `mode="auto"`) and the 2025 handshake
(`mode="legacy"`, initialize first), against a stateless transport that any worker can answer.
"""

from __future__ import annotations

import asyncio
import base64
import io
import pathlib
import sys
import urllib.parse

import pytest
import requests
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from PIL import Image

from harness.service import API_KEY, CF_TOKEN, ROOT, cloudflare_env, start_service

pytestmark = pytest.mark.e2e
SCHNELL = "@cf/black-forest-labs/flux-1-schnell"


def mcp_client(service, key=API_KEY, mode="auto") -> Client:
    """An SDK client for the service's /mcp endpoint, sending `key` as its Bearer token."""
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {key}"})
    return Client(streamable_http_client(service.url + "/mcp", http_client=http), mode=mode)


def session(service, calls, **kwargs):
    """Open a client, run `calls(client)` and return its result."""

    async def main():
        async with mcp_client(service, **kwargs) as client:
            return await calls(client)

    return asyncio.run(main())


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def image_of(block) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(block.data)))


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_initialize_list_and_call_every_tool(cf_service, cf, mode):
    async def calls(client):
        tools = await client.list_tools()
        models = await client.call_tool("list_models", {})
        made = await client.call_tool("generate_image", {"prompt": "a red fox 16:9", "seed": 7})
        return client.protocol_version, tools, models, made

    version, tools, models, made = session(cf_service, calls, mode=mode)
    assert version == ("2026-07-28" if mode == "auto" else "2025-11-25")
    assert {t.name for t in tools.tools} == {"generate_image", "edit_image", "list_models"}
    assert models.is_error is False
    assert SCHNELL in {m["id"] for m in models.structured_content["models"]}

    assert made.is_error is False, made.content
    text, image = made.content
    assert "size 1024x576" in text.text and "flux-1-schnell" in text.text
    assert "Prompt used: a red fox" in text.text
    assert image_of(image).size == (1024, 576)
    url = made.structured_content["images"][0]["url"]
    assert f"Full image: {url}" in text.text and url.startswith(cf_service.url + "/image/")
    full = requests.get(url, timeout=10)
    assert full.status_code == 200 and Image.open(io.BytesIO(full.content)).size == (1024, 576)
    assert full.content == base64.b64decode(image.data)
    sent = [r for r in cf.requests() if r["kind"] == "run"][-1]
    assert sent["model"] == SCHNELL and sent["json"]["prompt"] == "a red fox"
    assert "model=" + SCHNELL in cf_service.log()


def test_many_calls_in_parallel_across_workers(cf_service, cf):
    async def calls(client):
        return await asyncio.gather(*(
            client.call_tool("generate_image", {"prompt": f"a boat {i}", "size": "512x512"})
            for i in range(6)))

    results = session(cf_service, calls, mode="legacy")
    assert all(r.is_error is False for r in results)
    assert {image_of(r.content[1]).size for r in results} == {(512, 512)}


def test_sizes_and_n(cf_service, cf):
    result = session(cf_service, lambda c: c.call_tool("generate_image", {
        "prompt": "a desert road", "model": "sdxl-lightning", "size": "832x512", "n": 2,
        "seed": 100}))
    assert result.is_error is False, result.content
    images = [b for b in result.content if b.type == "image"]
    assert [image_of(b).size for b in images] == [(832, 512), (832, 512)]
    assert "seed 100" in result.content[0].text and "seed 101" in result.content[0].text


def test_edit_an_image_the_service_made(cf_service, cf):
    async def calls(client):
        made = await client.call_tool("generate_image", {"prompt": "a red house", "seed": 1,
                                                         "model": "flux-2-klein-4b",
                                                         "size": "768x512"})
        link = made.structured_content["images"][0]["url"]
        png = io.BytesIO()
        Image.new("RGB", (300, 300), (10, 120, 200)).save(png, "PNG")
        data_url = "data:image/png;base64," + base64.b64encode(png.getvalue()).decode()
        edited = await client.call_tool("edit_image", {
            "prompt": "paint the door blue", "images": [link, data_url],
            "model": "flux-2-klein-4b"})
        return made, edited

    made, edited = session(cf_service, calls)
    assert made.is_error is False, made.content
    assert edited.is_error is False, edited.content
    text, image = edited.content
    assert "From 2 input images (768x512, 300x300)." in text.text
    assert image_of(image).size == (768, 512)  # the first image's proportions
    sent = [r for r in cf.requests() if r["kind"] == "run"][-1]
    assert sent["model"] == "@cf/black-forest-labs/flux-2-klein-4b"
    assert set(sent["files"]) >= {"input_image_0", "input_image_1"}
    assert sent["form"]["prompt"] == "paint the door blue"


def test_edit_refuses_remote_links_by_default(cf_service, cf):
    result = session(cf_service, lambda c: c.call_tool("edit_image", {
        "prompt": "x", "images": ["https://elsewhere.example/cat.png"]}))
    assert result.is_error is True
    assert result.content[0].text.startswith("invalid_image: ")
    assert [r for r in cf.requests() if r["kind"] == "run"] == []


def test_wrong_key_is_refused_before_the_mcp_layer(cf_service):
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    resp = requests.post(cf_service.url + "/mcp", json=body, timeout=10, headers={
        "Authorization": "Bearer sk-wrong", "Accept": "application/json, text/event-stream"})
    api = requests.get(cf_service.api + "/models", timeout=10,
                       headers={"Authorization": "Bearer sk-wrong"})
    assert resp.status_code == 401 and api.status_code == 401
    assert resp.json() == api.json()
    assert resp.json()["error"]["code"] == "invalid_api_key"
    assert resp.headers["X-Request-ID"]
    missing = requests.post(cf_service.url + "/mcp", json=body, timeout=10)
    assert missing.status_code == 401 and "didn't provide an API key" in missing.text

    with pytest.raises(BaseException) as info:
        session(cf_service, lambda c: c.list_tools(), key="sk-wrong")
    assert any(isinstance(e, MCPError) for e in leaves(info.value)), repr(info.value)
    assert "sk-wrong" not in cf_service.log()


def test_content_policy_refusal_is_a_tool_error(cf_service, cf):
    cf.add_faults("3030")
    result = session(cf_service, lambda c: c.call_tool("generate_image", {"prompt": "a cat"}))
    assert result.is_error is True
    [text] = result.content
    assert text.text.startswith("content_policy_violation: ")
    assert "Traceback" not in text.text and CF_TOKEN not in text.text


def test_quota_and_upstream_failures_are_tool_errors(cf_service, cf):
    cf.add_faults("4006", "500", "500", "500")
    quota = session(cf_service, lambda c: c.call_tool("generate_image", {"prompt": "a cat"}))
    upstream = session(cf_service, lambda c: c.call_tool("generate_image", {"prompt": "a dog"}))
    assert quota.is_error and quota.content[0].text.startswith("insufficient_quota: ")
    assert upstream.is_error and upstream.content[0].text.startswith("upstream_error: ")


def test_bad_input_is_a_tool_error(cf_service):
    result = session(cf_service, lambda c: c.call_tool(
        "generate_image", {"prompt": "a cat", "n": 99}))
    assert result.is_error is True
    assert result.content[0].text.startswith("invalid_request_error: `n` must be")


def test_rate_limited_call_is_a_tool_error(fake_cf, cf, tmp_path):
    svc = start_service(tmp_path, cloudflare_env(fake_cf, RATE_LIMIT="3/minute"))
    try:
        # The limit counts images, and MCP and the HTTP API share it (across both workers).
        two = session(svc, lambda c: c.call_tool("generate_image", {"prompt": "a", "n": 2}))
        api = requests.post(svc.api + "/images/generations", timeout=30,
                            headers={"Authorization": f"Bearer {API_KEY}"},
                            json={"prompt": "a cat"})
        refused = session(svc, lambda c: c.call_tool("generate_image", {"prompt": "a cat"}))
    finally:
        svc.stop()
    assert two.is_error is False and api.status_code == 200
    assert refused.is_error is True
    assert refused.content[0].text.startswith("rate_limit_exceeded: Rate limit reached")


def test_budget_is_shared_with_the_api_and_refuses_with_a_tool_error(fake_cf, cf, tmp_path):
    svc = start_service(tmp_path, cloudflare_env(fake_cf, KEY_BUDGETS=f"{API_KEY}=100"))
    try:
        first = session(svc, lambda c: c.call_tool("generate_image", {"prompt": "a cat"}))
        # 57.6 of 100 neurons are spent: neither the API nor MCP may start another image.
        api = requests.post(svc.api + "/images/generations", timeout=30,
                            headers={"Authorization": f"Bearer {API_KEY}"},
                            json={"prompt": "a cat"})
        refused = session(svc, lambda c: c.call_tool("generate_image", {"prompt": "a cat"}))
        usage = requests.get(svc.api + "/usage", timeout=10,
                             headers={"Authorization": f"Bearer {API_KEY}"}).json()
    finally:
        svc.stop()
    assert first.is_error is False and first.structured_content["neurons"] > 0
    assert api.status_code == 429 and api.json()["error"]["code"] == "insufficient_quota"
    assert refused.is_error is True
    assert refused.content[0].text.startswith("insufficient_quota: ")
    assert usage["key"]["spent_neurons"] == pytest.approx(first.structured_content["neurons"])


def test_stdio_lists_tools_and_generates(fake_cf, cf, tmp_path):
    env = cloudflare_env(fake_cf, STORAGE_URL="memory://", TMPDIR=str(tmp_path))
    del env["API_KEY"]  # a local server needs no client key
    params = StdioServerParameters(command=sys.executable, args=["-m", "flux_worker.mcp"],
                                   env=env, cwd=str(ROOT))

    async def main():
        async with Client(params) as client:
            tools = await client.list_tools()
            made = await client.call_tool("generate_image",
                                          {"prompt": "a snowy village", "aspect_ratio": "3:2"})
            return tools, made

    tools, made = asyncio.run(main())
    assert {t.name for t in tools.tools} == {"generate_image", "edit_image", "list_models"}
    assert made.is_error is False, made.content
    text, image = made.content
    assert image_of(image).size == (768, 512) and "size 768x512" in text.text
    url = made.structured_content["images"][0]["url"]
    assert url.startswith("file://") and f"Full image: {url}" in text.text
    assert "expire" not in text.text  # the file stays until the user removes it
    path = pathlib.Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
    assert path.is_relative_to(tmp_path) and path.read_bytes() == base64.b64decode(image.data)
    sent = [r for r in cf.requests() if r["kind"] == "run"][-1]
    assert sent["authorization_valid"] and sent["json"]["prompt"] == "a snowy village"
