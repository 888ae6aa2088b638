"""The Vercel AI SDK (`ai` + `@ai-sdk/openai`, run by node) against gunicorn and fake Cloudflare.

The SDK is what many TypeScript apps use: `generateImage` sends no `response_format` and reads
`b64_json`, for new pictures and for edits; `generateText` speaks the Responses API, with or without
OpenAI's image generation tool. The script is tests/e2e/vercel_ai/check.mjs; `make test` installs
its packages from package-lock.json (`npm ci`) when npm is on the machine.
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import shutil
import subprocess

import pytest
import requests
from PIL import Image

from harness.service import API_KEY
from tests.support import image_url

pytestmark = pytest.mark.e2e

CHECK = pathlib.Path(__file__).parent / "vercel_ai"


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, with the SDK installed; skipped without them unless FLUX_REQUIRE_NODE=1."""
    binary = shutil.which("node")
    reason = None
    if binary is None:
        reason = "node not found: apt-get install nodejs npm"
    elif not (CHECK / "node_modules" / "ai").is_dir():
        reason = f"the SDK is not installed: npm ci --prefix {CHECK} (make test does it)"
    if reason:
        if os.environ.get("FLUX_REQUIRE_NODE") == "1":
            pytest.fail(f"{reason} (FLUX_REQUIRE_NODE=1)")
        pytest.skip(reason)
    return binary


def run(node: str, service, scenario: str, **env: str) -> dict:
    done = subprocess.run(
        [node, str(CHECK / "check.mjs"), scenario], capture_output=True, text=True, timeout=60,
        env={**os.environ, "FLUX_BASE_URL": service.api, "FLUX_API_KEY": API_KEY, **env})
    assert done.returncode == 0, f"{scenario}: {done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("model", ["gpt-image-1", "flux-1-schnell"])
def test_generate_image(node, cf_service, cf, model):
    got = run(node, cf_service, "image", FLUX_IMAGE_MODEL=model)
    assert got["count"] == 1 and got["kind"] in ("png", "jpeg", "webp") and got["bytes"] > 1000


@pytest.mark.parametrize("model", ["gpt-image-1", "flux-2-klein-4b"])
def test_edit_image(node, cf_service, cf, model, tmp_path):
    source = tmp_path / "source.png"
    Image.new("RGB", (320, 240), (200, 40, 40)).save(source)
    got = run(node, cf_service, "edit", FLUX_IMAGE_MODEL=model, FLUX_EDIT_IMAGE=str(source))
    assert got["count"] == 1 and got["kind"] in ("png", "jpeg", "webp")
    # The edit went upstream with the picture: the fake saw an input image.
    last = [r for r in cf.requests() if r["kind"] == "run"][-1]
    sent = set(last["files"] or {}) | set(last["json"] or {})
    assert any(name.startswith(("input_image", "image")) for name in sent), sent


def test_generate_text_answers_with_the_image_link(node, cf_service, cf):
    got = run(node, cf_service, "text")
    link = image_url(got["text"])
    served = requests.get(link, timeout=10)
    assert served.status_code == 200
    assert Image.open(io.BytesIO(served.content)).size[0] > 0
    # "16:9" in the prompt chose the ratio, as it does in chat.
    width, height = Image.open(io.BytesIO(served.content)).size
    assert abs(width / height - 16 / 9) < 0.02


def test_generate_text_with_the_image_generation_tool(node, cf_service, cf):
    got = run(node, cf_service, "tool")
    assert got["images"] == 1 and got["kind"] == "png"
    image_url(got["text"])
