"""`flux-worker discover-models` against the strict fake's model search and schema routes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from flux_worker.serving.cli import discover_main, main
from harness.fakes import cloudflare
from harness.service import ROOT

TOKEN = "cfut_SECRET-discovery-token"


@pytest.fixture(scope="module")
def fake():
    server = cloudflare.start(api_token=TOKEN)
    yield server
    server.stop()


def env(fake, **extra) -> dict[str, str]:
    return {"CF_ACCOUNT_ID": "test-account", "CF_API_TOKEN": TOKEN,
            "CF_API_BASE": fake.url + "/client/v4", **extra}


def test_lists_every_page_with_input_fields(fake, capsys):
    assert discover_main([], env(fake)) == 0
    out = capsys.readouterr().out
    assert "openai/gpt-image-2" in out and "@cf/black-forest-labs/flux-1-schnell" in out
    assert "aspect_ratio: string, one of 1:1 | 3:4 | 4:3 | 9:16 | 16:9" in out
    assert "steps: integer, >= 1, <= 50, default 50" in out
    assert "prompt: string (required)" in out
    assert TOKEN not in out


def test_json_gives_the_raw_list(fake, capsys):
    assert discover_main(["--json"], env(fake)) == 0
    models = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    assert models["google/imagen-4"]["task"] == "Text-to-Image"
    assert models["google/imagen-4"]["input"]["properties"]["aspect_ratio"]["enum"]
    # More than one page of 100 is not needed here; the fake pages at 100 as Cloudflare does.
    assert len(models) >= 7


def test_a_refused_token_says_what_to_check(fake, capsys):
    assert discover_main([], env(fake, CF_API_TOKEN="wrong")) == 1
    err = capsys.readouterr().err
    assert "HTTP 401" in err and "Workers AI Read" in err and "wrong" not in err


def test_without_credentials_it_says_what_to_set(capsys):
    assert discover_main([], {}) == 4
    assert "CF_ACCOUNT_ID and CF_API_TOKEN" in capsys.readouterr().err


def test_the_command_routes_to_discovery(fake, capsys, monkeypatch):
    for name, value in env(fake).items():
        monkeypatch.setenv(name, value)
    assert main(["discover-models", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)


def test_help_works():
    done = subprocess.run([sys.executable, "-m", "flux_worker", "discover-models", "--help"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert "--json" in done.stdout and "Workers AI Read" in done.stdout
