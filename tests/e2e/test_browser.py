"""The welcome page's playground in a real browser: Debian's Chromium driven by Playwright.

Playwright's own browser download is not used (`playwright install` needs the network); the
test launches the system Chromium at /usr/bin/chromium (`apt-get install chromium`). Without
it the test skips, unless FLUX_REQUIRE_BROWSER=1 (set in CI), where it fails instead.
Set PLAYGROUND_SCREENSHOT=docs/playground.png to refresh the README's screenshot.
"""

from __future__ import annotations

import os

import pytest

from harness.service import start_service

pytestmark = pytest.mark.e2e

KEY = "sk-browser-test-key-42"
TIMEOUT_MS = 10_000


@pytest.fixture
def demo_with_key(tmp_path):
    """The demo backend with an API key, so the page shows the key field."""
    service = start_service(tmp_path, {"API_KEY": KEY, "IMAGE_EXPIRATION": "1800"}, workers=1)
    yield service
    service.stop()


def test_playground_generates_streams_and_keeps_a_gallery(browser, demo_with_key, tmp_path):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    console: list[str] = []
    page.on("console", lambda msg: console.append(msg.text))
    try:
        page.goto(demo_with_key.url + "/")
        assert "demo" in page.content().lower()

        page.fill("#api-key", KEY)
        page.fill("#prompt", "a lighthouse at dusk")
        page.select_option("#model", "@cf/black-forest-labs/flux-1-schnell")
        page.click("label.chip:has-text('16:9')")
        page.click("#generate")

        # The image loaded with the stated size, after the streamed progress lines.
        page.wait_for_function(
            "() => { const i = document.getElementById('result-img');"
            " return !document.getElementById('result').hidden"
            " && i.complete && i.naturalWidth > 0; }")
        size = page.eval_on_selector("#result-img", "i => [i.naturalWidth, i.naturalHeight]")
        assert size == [1024, 576]
        progress = page.locator("#progress li").all_text_contents()
        assert any("1024x576" in line for line in progress), progress
        assert any("a lighthouse at dusk 16:9" in line for line in progress), progress
        assert page.is_hidden("#error")
        assert page.text_content("#result-size") == "1024×576"
        assert "expires in" in page.text_content("#result-expiry")
        download = page.get_attribute("#result-download", "href")
        assert download.startswith(demo_with_key.url + "/image/")
        page.screenshot(path=str(tmp_path / "playground.png"), full_page=True)
        if os.environ.get("PLAYGROUND_SCREENSHOT"):  # the README's picture: status + playground
            page.screenshot(path=os.environ["PLAYGROUND_SCREENSHOT"],
                            full_page=True, clip={"x": 0, "y": 0, "width": 1280, "height": 1040})

        # After a reload the gallery (localStorage) still has the result, and the key is kept.
        page.reload()
        shot = page.locator("#gallery .shot").first
        shot.wait_for()
        assert "a lighthouse at dusk" in shot.text_content()
        assert "1024×576" in shot.text_content()
        assert page.input_value("#api-key") == KEY

        # A wrong key is reported in words, next to the form; Enter in the prompt submits.
        page.fill("#api-key", "sk-wrong")
        page.fill("#prompt", "another lighthouse")
        page.press("#prompt", "Enter")
        page.wait_for_selector("#error:not([hidden])")
        assert "API key was not accepted" in page.text_content("#error")
        assert page.locator("#gallery .shot").count() == 1

        # The strict CSP held: nothing on the page needed an inline script or style.
        assert not [m for m in console if "Content Security Policy" in m], console
    finally:
        context.close()


def _generated(page) -> None:
    page.wait_for_function(
        "() => { const i = document.getElementById('result-img');"
        " return !document.getElementById('result').hidden && i.complete && i.naturalWidth > 0; }")


def test_phone_view_brings_the_finished_image_into_view(browser, demo_with_key):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                                  has_touch=True, device_scale_factor=2)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        page.goto(demo_with_key.url + "/")
        page.fill("#api-key", KEY)
        page.fill("#prompt", "a tall lighthouse")
        page.click("label.chip:has-text('9:16')")
        # On a phone the output lies below the form: the image would end below the screen.
        # Measured before the click: a fast generation may scroll before a later measurement.
        scrolled = page.evaluate("scrollY")
        bottom = page.eval_on_selector("#output", "o => o.getBoundingClientRect().top") + 600
        assert bottom > page.evaluate("innerHeight"), "the test needs the output below the fold"
        page.click("#generate")
        _generated(page)
        page.wait_for_function(
            "() => { const r = document.getElementById('result-img').getBoundingClientRect();"
            " return r.top >= 0 && r.bottom <= innerHeight && r.height > 100; }")
        assert page.evaluate("scrollY") > scrolled
        assert page.eval_on_selector("#result-img", "i => [i.naturalWidth, i.naturalHeight]") \
            == [576, 1024]
        # The gallery thumbnail shows the whole tall picture, not its top square.
        thumb = page.locator("#gallery .thumb img").first
        thumb.wait_for()
        assert thumb.evaluate("i => getComputedStyle(i).objectFit") == "contain"
    finally:
        context.close()


def test_error_text_shows_code_not_backticks(browser, demo_with_key):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        page.goto(demo_with_key.url + "/")
        page.fill("#api-key", KEY)
        # Only options, no description: the service answers 400 with an example in backticks.
        page.fill("#prompt", "--seed 5")
        page.click("#generate")
        page.wait_for_selector("#error:not([hidden])")
        text = page.text_content("#error")
        assert "The prompt is empty" in text and "`" not in text, text
        assert page.locator("#error code").all_text_contents() == ["a cute cat 16:9"]
        # Markup inside a message stays text: the message is split, never parsed as HTML.
        assert page.locator("#error *").evaluate_all("els => els.map(e => e.tagName)") == ["CODE"]
    finally:
        context.close()


def test_steps_input_follows_the_models_range(browser, demo_with_key):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        page.goto(demo_with_key.url + "/")
        page.select_option("#model", "@cf/black-forest-labs/flux-1-schnell")
        assert page.get_attribute("#steps", "max") == "8"
        assert "takes 1–8" in page.text_content("#steps-hint")
        page.fill("#steps", "50")
        page.press("#steps", "Tab")  # change fires when the field is left
        assert page.input_value("#steps") == "8"
        assert "Steps set to 8" in page.text_content("#steps-hint")
        page.select_option("#model", "@cf/leonardo/phoenix-1.0")
        assert page.get_attribute("#steps", "max") == "50" and page.input_value("#steps") == "8"
        page.fill("#steps", "50")
        page.press("#steps", "Tab")
        assert page.input_value("#steps") == "50"
        # Back to a smaller range: the value is brought in, and the page says so.
        page.select_option("#model", "@cf/black-forest-labs/flux-1-schnell")
        assert page.input_value("#steps") == "8" and "Steps set to 8" in page.text_content(
            "#steps-hint")
        page.select_option("#model", "@cf/black-forest-labs/flux-2-klein-4b")
        assert page.is_disabled("#steps") and page.input_value("#steps") == ""
        assert "fixed" in page.text_content("#steps-hint")
        # Steps typed into the prompt reach the server, which clamps them and says so.
        page.select_option("#model", "@cf/black-forest-labs/flux-1-schnell")
        page.fill("#api-key", KEY)
        page.fill("#steps", "")
        page.fill("#prompt", "a fox --steps 50")
        page.click("#generate")
        _generated(page)
        lines = page.locator("#progress li").all_text_contents()
        assert "ℹ️ Adjusted to what flux-1-schnell accepts: --steps 50 → 8" in lines, lines
    finally:
        context.close()
