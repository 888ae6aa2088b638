"""End-to-end fixtures: the real service under gunicorn against local fakes on 127.0.0.1."""

from __future__ import annotations

import os

import pytest

from harness.browser import CHROMIUM, launch
from harness.fakes import cloudflare
from harness.service import CF_ACCOUNT, CF_TOKEN, LLM_KEY, cloudflare_env, start_service
from tests.support import BROWSER_KEY


@pytest.fixture(scope="session")
def fake_cf():
    """A strict fake of Cloudflare Workers AI (and an LLM) on 127.0.0.1."""
    server = cloudflare.start(account_id=CF_ACCOUNT, api_token=CF_TOKEN, llm_key=LLM_KEY)
    yield server
    server.stop()


@pytest.fixture
def cf(fake_cf):
    """The fake, with faults and recorded requests cleared."""
    fake_cf.reset()
    yield fake_cf
    fake_cf.reset()


@pytest.fixture(scope="session")
def cf_service(fake_cf, tmp_path_factory):
    """The service on the Cloudflare backend, pointed at the fake."""
    tmp = tmp_path_factory.mktemp("cf-service")
    service = start_service(tmp, cloudflare_env(fake_cf))
    yield service
    service.stop()


@pytest.fixture(scope="session")
def demo_service(tmp_path_factory):
    """The service on embedded defaults: demo backend, disk storage, no key."""
    tmp = tmp_path_factory.mktemp("demo-service")
    service = start_service(tmp, {})
    yield service
    service.stop()


# --- a real browser: Debian's Chromium driven by Playwright (no browser download) ---------


@pytest.fixture
def demo_with_key(tmp_path):
    """The demo backend with an API key (BROWSER_KEY), so the page shows the key field."""
    service = start_service(tmp_path, {"API_KEY": BROWSER_KEY, "IMAGE_EXPIRATION": "1800"},
                            workers=1)
    yield service
    service.stop()



def _unavailable(reason: str) -> None:
    if os.environ.get("FLUX_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (FLUX_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium (the system one); skipped without it unless FLUX_REQUIRE_BROWSER=1."""
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} not found: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed: pip install -r requirements-dev.txt")
    with sync_playwright() as pw:
        chromium = launch(pw)
        yield chromium
        chromium.close()
