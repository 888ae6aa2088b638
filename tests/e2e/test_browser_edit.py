"""The playground edits images in a real browser: attach a file, then edit a gallery image."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from harness.service import start_service

from .test_browser import TIMEOUT_MS

pytestmark = pytest.mark.e2e

LOADED = ("() => { const i = document.getElementById('result-img');"
          " return !document.getElementById('result').hidden && i.complete && i.naturalWidth > 0"
          " && i.src !== window.previousResult; }")


@pytest.fixture
def demo(tmp_path):
    service = start_service(tmp_path, {"IMAGE_EXPIRATION": "1800"}, workers=1)
    yield service
    service.stop()


def test_playground_attaches_an_image_and_edits_a_gallery_image(browser, demo, tmp_path):
    photo = tmp_path / "photo.png"
    Image.new("RGB", (1200, 600), (30, 160, 60)).save(photo, "PNG")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    console: list[str] = []
    page.on("console", lambda msg: console.append(msg.text))
    try:
        page.goto(demo.url + "/")
        page.set_input_files("#edit-file", str(photo))
        page.wait_for_selector("#edit-preview:not([hidden])")
        assert page.text_content("#edit-label") == "photo.png"
        page.fill("#prompt", "make it blue")
        page.click("#generate")
        page.wait_for_function(LOADED)
        progress = page.locator("#progress li").all_text_contents()
        assert any("attached image 1 (1200x600)" in line for line in progress), progress
        assert any("Instruction: make it blue" in line for line in progress), progress
        assert any("flux-2-klein-4b" in line for line in progress), progress
        assert any("1024x512" in line for line in progress), progress   # 1200x600 kept 2:1
        first = page.get_attribute("#result-img", "src")
        assert first.startswith(demo.url + "/image/")
        page.evaluate("src => { window.previousResult = src; }", first)

        # "Edit" on the gallery card takes that image (this service's own link) as the input.
        page.click("#edit-clear")
        assert page.is_hidden("#edit-preview")
        page.locator("#gallery .shot .shot-edit").first.click()
        assert page.get_attribute("#edit-img", "src") == first
        page.fill("#prompt", "now at night")
        page.click("#generate")
        page.wait_for_function(LOADED)
        progress = page.locator("#progress li").all_text_contents()
        assert any(first in line for line in progress if "Reference" in line), progress
        second = page.get_attribute("#result-img", "src")
        with Image.open(io.BytesIO(page.request.get(second).body())) as img:
            assert img.size == (1024, 512)          # no ratio picked: the input's proportions
        assert page.is_hidden("#error")
        assert not [m for m in console if "Content Security Policy" in m], console
    finally:
        context.close()
