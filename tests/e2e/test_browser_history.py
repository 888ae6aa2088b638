"""The playground's gallery follows the key: two browser contexts (separate localStorage, as
two browsers) with the same key see the server's history; a deletion in one is gone for both.
Debian's Chromium driven by Playwright, as in test_browser.py."""

from __future__ import annotations

import pytest
import requests

from harness.service import start_service
from tests.support import BROWSER_KEY as KEY
from tests.support import BROWSER_TIMEOUT_MS as TIMEOUT_MS

pytestmark = pytest.mark.e2e


def open_playground(browser, service):
    """A new browser context (its own localStorage) on the playground, the key entered."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    console: list[str] = []
    page.on("console", lambda msg: console.append(msg.text))
    page.goto(service.url + "/")
    page.fill("#api-key", KEY)
    page.press("#api-key", "Tab")       # the field's change asks the server for the history
    return context, page, console


def make(page, prompt: str) -> None:
    """Generate `prompt` in the playground and wait for its gallery card."""
    page.fill("#prompt", prompt)
    page.click("#generate")
    page.wait_for_selector(f"#gallery .shot:has-text('{prompt}')")


def test_the_gallery_shows_the_keys_history_in_another_browser(browser, demo_with_key):
    first, page, console = open_playground(browser, demo_with_key)
    second, other, other_console = open_playground(browser, demo_with_key)
    try:
        make(page, "a red kite over the dunes")
        assert page.text_content("#gallery-title") == "Your recent images"

        # The other browser never made it, and its localStorage is empty: the server's list.
        assert other.evaluate("() => localStorage.getItem('flux-worker.gallery')") is None
        other.reload()
        shot = other.locator("#gallery .shot").first
        shot.wait_for()
        assert "a red kite over the dunes" in shot.text_content()
        link = shot.locator("a.thumb").get_attribute("href")
        assert link.startswith(demo_with_key.url + "/image/")
        other.wait_for_function("() => { const i = document.querySelector('#gallery img');"
                                " return i && i.complete && i.naturalWidth > 0; }")

        # Deleting it there removes it from the server: gone in both galleries and its link.
        shot.locator("button.shot-delete").click()
        other.wait_for_selector("#gallery .shot", state="detached")
        assert other.is_visible("#gallery-empty")
        assert requests.get(link, timeout=10).status_code == 404
        page.reload()
        page.wait_for_function("() => document.getElementById('gallery-title').textContent"
                               " === 'Your recent images'")
        assert page.locator("#gallery .shot").count() == 0

        for messages in (console, other_console):
            assert not [m for m in messages if "Content Security Policy" in m], messages
    finally:
        first.close()
        second.close()


def test_without_a_server_history_the_gallery_stays_in_the_browser(browser, tmp_path):
    service = start_service(tmp_path, {"API_KEY": KEY, "IMAGE_HISTORY": "off"}, workers=1)
    context, page, _ = open_playground(browser, service)
    try:
        make(page, "a quiet pond")
        assert page.text_content("#gallery-title") == "Recent in this browser"
        assert page.locator("button.shot-delete").count() == 0
        page.reload()
        page.locator("#gallery .shot").first.wait_for()
    finally:
        context.close()
        service.stop()
