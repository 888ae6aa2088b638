"""The welcome page: its Content-Security-Policy, its static files, the playground's parts."""

from __future__ import annotations

import json
import re

import pytest

from tests.support import app_with

HTML = {"Accept": "text/html"}


def csp_of(response) -> dict[str, str]:
    policy = response.headers["Content-Security-Policy"]
    return {d.split(" ", 1)[0]: d.split(" ", 1)[1] if " " in d else ""
            for d in (part.strip() for part in policy.split(";")) if d}


@pytest.fixture
def make_client(apps):
    """Build clients for apps with other settings; closed after the test."""
    return apps.client


def test_page_has_a_strict_csp(client):
    resp = client.get("/", headers=HTML)
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    csp = csp_of(resp)
    assert csp == {"default-src": "'none'", "script-src": "'self'", "style-src": "'self'",
                   "img-src": "'self' data: blob:", "connect-src": "'self'",
                   "form-action": "'none'", "frame-ancestors": "'none'", "base-uri": "'none'"}


def test_page_has_no_inline_script_or_style(client):
    page = client.get("/", headers=HTML).get_data(as_text=True)
    assert "<style" not in page and " style=" not in page
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S)
    for attrs, body in scripts:
        assert 'src="' in attrs or 'type="application/json"' in attrs, attrs
        assert not body.strip() or 'type="application/json"' in attrs
    assert not re.search(r"\son[a-z]+=", page)  # no inline event handlers either


def test_json_branch_is_unchanged(client):
    resp = client.get("/", headers={"Accept": "application/json"})
    assert resp.is_json and resp.get_json()["backend"] == "demo"


def test_page_config_block_feeds_the_playground(client):
    page = client.get("/", headers=HTML).get_data(as_text=True)
    block = re.search(r'<script type="application/json" id="flux-config">(.*?)</script>',
                      page, re.S)
    config = json.loads(block.group(1))
    steps = config.pop("steps")
    assert config == {"auth_required": True, "image_expiration": 600,
                      "default_model": "@cf/black-forest-labs/flux-1-schnell",
                      "chat_url": "/v1/chat/completions",
                      "history_url": "/v1/images/history"}
    # The steps input's range per model, as /v1/models/<id> states it.
    assert steps["@cf/black-forest-labs/flux-1-schnell"] == {"field": "steps", "min": 1, "max": 8}
    assert steps["@cf/leonardo/phoenix-1.0"] == {"field": "num_steps", "min": 1, "max": 50}
    assert steps["@cf/black-forest-labs/flux-2-klein-4b"] is None


def test_page_lists_models_ratios_and_status(client):
    page = client.get("/", headers=HTML).get_data(as_text=True)
    assert "demo" in page.lower() and "flux-1-schnell" in page
    assert '<option value="@cf/black-forest-labs/flux-1-schnell" selected>' in page
    assert '<option value="@cf/lykon/dreamshaper-8-lcm">' in page
    for ratio in ("1:1", "1:2", "3:2", "3:4", "16:9", "9:16"):
        assert f'name="ratio" value="{ratio}"' in page
    assert "images kept <strong>10 min</strong>" in page and "storage: <strong>memory" in page
    for client_name in ("NextChat", "ChatBox", "Open WebUI", "openai</code> SDK"):
        assert client_name in page
    assert 'aria-live="polite"' in page and 'role="alert"' in page


def test_key_field_only_when_a_key_is_needed(client, make_client):
    assert 'id="api-key"' in client.get("/", headers=HTML).get_data(as_text=True)
    page = make_client(API_KEY="").get("/", headers=HTML).get_data(as_text=True)
    assert 'id="api-key"' not in page and "no API key needed" in page
    assert '"auth_required": false' in page


@pytest.mark.parametrize("name, mimetype", [
    ("playground.js", "javascript"), ("playground.css", "text/css"),
    ("favicon.svg", "image/svg+xml")])
def test_static_files_are_served_with_their_types(client, name, mimetype):
    resp = client.get(f"/static/{name}")
    assert resp.status_code == 200 and mimetype in resp.mimetype
    assert resp.headers["X-Content-Type-Options"] == "nosniff"  # so the type must be right
    resp.close()


def test_page_references_only_existing_static_files(client):
    page = client.get("/", headers=HTML).get_data(as_text=True)
    paths = set(re.findall(r'(?:src|href)="(/static/[^"]+)"', page))
    assert {"/static/playground.js", "/static/playground.css"} <= paths
    for path in paths:
        resp = client.get(path)
        assert resp.status_code == 200, path
        resp.close()


def test_images_elsewhere_are_allowed_by_the_csp(make_client):
    resp = make_client(PUBLIC_BASE_URL="https://img.example.com/prefix").get("/", headers=HTML)
    assert csp_of(resp)["img-src"] == "'self' data: blob: https://img.example.com"
    assert csp_of(resp)["connect-src"] == "'self'"


def test_csp_only_on_the_page(client, auth):
    assert "Content-Security-Policy" not in client.get("/healthz").headers
    resp = client.get("/v1/models", headers=auth)
    assert "Content-Security-Policy" not in resp.headers


def test_page_says_images_are_kept_for_ever_with_image_expiration_0():
    with app_with(IMAGE_EXPIRATION=0) as (app, _services):
        page = app.test_client().get("/", headers=HTML).get_data(as_text=True)
    assert "images kept <strong>for ever</strong></li>" in page
