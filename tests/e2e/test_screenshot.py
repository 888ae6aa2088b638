"""scripts/screenshot.py, which regenerates docs/playground.png, run as its users run it."""

from __future__ import annotations

import subprocess
import sys

import pytest
from PIL import Image, ImageStat

from harness.browser import CHROMIUM
from scripts.screenshot import HEIGHT, ROOT, WIDTH

pytestmark = pytest.mark.e2e


def test_the_script_regenerates_the_playground_picture(browser, tmp_path):
    # `browser` only for its check: the system Chromium, or a skip (a failure under
    # FLUX_REQUIRE_BROWSER=1); the script launches its own.
    assert CHROMIUM.exists()
    output = tmp_path / "playground.png"
    done = subprocess.run([sys.executable, "-m", "scripts.screenshot", "--output", str(output)],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    with Image.open(output) as picture:
        assert picture.size == (WIDTH, HEIGHT)
        # Not a blank page: the playground and the generated picture give it contrast.
        assert max(ImageStat.Stat(picture.convert("L")).stddev) > 20
