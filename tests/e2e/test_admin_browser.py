"""The admin page in a real browser (Debian's Chromium through Playwright, harness/browser.py),
on a desktop and a 390x844 phone, against the real service under gunicorn and the fake
Cloudflare: sign in, see a generation made with the `openai` SDK appear with its thumbnail and
cost, create a key in the page, use it from the SDK, revoke it in the page and see the SDK's
next call refused. Every request the browser makes goes to the service on 127.0.0.1; any other
is aborted and recorded, and the test asserts there was none.

With FLUX_ADMIN_SCREENSHOTS=1 the test also writes docs/admin-desktop.png and
docs/admin-phone.png, the pictures docs/admin.md shows:

    FLUX_ADMIN_SCREENSHOTS=1 .venv/bin/python -m pytest tests/e2e/test_admin_browser.py
"""

from __future__ import annotations

import os
import pathlib

import openai
import pytest

from harness.service import cloudflare_env, start_service
from tests.support import sdk

pytestmark = pytest.mark.e2e

ADMIN = "sk-admin-browser-key-777"
PROMPT = "a red fox in the snow, watercolour"
TIMEOUT_MS = 15_000
DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs"
VIEWPORTS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}


@pytest.fixture(scope="module")
def admin_service(fake_cf, tmp_path_factory):
    """The service on the fake Cloudflare, with the admin page on."""
    service = start_service(tmp_path_factory.mktemp("admin-browser"),
                            cloudflare_env(fake_cf, ADMIN_API_KEY=ADMIN), workers=2)
    yield service
    service.stop()


@pytest.mark.parametrize("device", list(VIEWPORTS))
def test_sign_in_see_a_generation_create_use_and_revoke_a_key(browser, admin_service, cf,
                                                              device):
    service = admin_service
    context = browser.new_context(viewport=VIEWPORTS[device], reduced_motion="reduce",
                                  is_mobile=device == "phone", has_touch=device == "phone")
    elsewhere: list[str] = []

    def only_the_service(route):
        if route.request.url.startswith(service.url + "/"):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_service)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    console: list[str] = []
    page.on("console", lambda msg: console.append(msg.text))
    page.on("dialog", lambda dialog: dialog.accept())      # the revoke confirmation
    try:
        page.goto(service.url + "/admin")
        page.fill("#admin-key", "sk-not-the-admin-key")
        page.click("#sign-in")
        assert "not the admin key" in page.text_content("#signin-error")
        page.fill("#admin-key", ADMIN)
        page.click("#sign-in")
        page.wait_for_selector("#spend-keys tbody tr")

        # A generation from the SDK appears with its thumbnail and cost.
        prompt = f"{PROMPT} ({device})"
        sdk(service).images.generate(model="flux", prompt=prompt, size="512x512")
        page.reload()
        shot = page.locator("#generation-list li", has_text=prompt).first
        shot.wait_for()
        page.wait_for_function(
            "(p) => [...document.querySelectorAll('#generation-list li')].some(li =>"
            " li.textContent.includes(p) && li.querySelector('img').complete"
            " && li.querySelector('img').naturalWidth > 0)", arg=prompt)
        meta = shot.locator(".meta").text_content()
        assert "$0." in meta and "512x512" in meta, meta
        assert "$0." in page.text_content("#total-today")
        assert page.locator("#chart rect").count() == 30

        # A key made in the page works from the SDK; revoked in the page, it is refused.
        name = f"browser {device}"
        page.fill("#key-name", name)
        page.fill("#key-usd", "0.5")
        page.click("#key-save")
        page.wait_for_selector("#secret:not([hidden])")
        secret = page.text_content("#secret-value").strip()
        assert secret and page.is_visible("#secret-copy")
        row = page.locator("#key-list tbody tr", has_text=name)
        row.wait_for()
        assert sdk(service, secret).images.generate(model="flux", prompt="a kite").data
        row.locator("button", has_text="Revoke").click()
        page.locator("#key-list tbody tr", has_text=name).filter(
            has_text="revoked").wait_for()
        with pytest.raises(openai.AuthenticationError):
            sdk(service, secret).images.generate(model="flux", prompt="a kite")
        page.reload()
        page.wait_for_selector("#spend-keys tbody tr")
        assert secret not in page.content()                  # the secret was shown once

        if os.environ.get("FLUX_ADMIN_SCREENSHOTS") == "1":
            page.evaluate("window.scrollTo(0, 0)")
            # The whole page on a desktop; a phone's first screen.
            page.screenshot(path=str(DOCS / f"admin-{device}.png"), full_page=device == "desktop")

        page.click("#sign-out")
        page.wait_for_selector("#signin")
        assert not elsewhere, elsewhere
        assert not [m for m in console if "Content Security Policy" in m], console
    finally:
        context.close()
