"""Regenerate the README's picture of the playground from the running service.

    python -m scripts.screenshot                  # writes docs/playground.png
    python -m scripts.screenshot --output x.png

It starts the service under gunicorn (demo backend, with an API key so the page shows the key
field) on 127.0.0.1, opens the welcome page in headless Chromium (Debian's, through Playwright:
harness/browser.py), generates one picture with the playground as a user would, and saves the
top of the page: status and playground. tests/e2e/test_screenshot.py runs it, so it cannot rot.
The answer's emoji need a colour emoji font (Debian's fonts-noto-color-emoji); without one the
script still writes the picture, with boxes for them, and says so.
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import subprocess
import sys
import tempfile

from harness.browser import CHROMIUM, launch
from harness.service import start_service

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "playground.png"
KEY = "sk-screenshot-key"
PROMPT = "a lighthouse at dusk, oil painting"
WIDTH, HEIGHT = 1280, 1040  # the page's top: the status card and the whole playground
TIMEOUT_MS = 20_000
EMOJI = "1f3a8"  # 🎨, the first character of the answer the picture shows


def emoji_font_missing() -> bool:
    """Whether no installed font draws the answer's emoji (Chromium would show boxes)."""
    fc_list = shutil.which("fc-list")
    if fc_list is None:
        return False  # no fontconfig tools to ask: cannot tell, so do not warn
    found = subprocess.run([fc_list, f":charset={EMOJI}", "family"], capture_output=True,
                           text=True, timeout=60, check=False)
    return not found.stdout.strip()


def capture(output: pathlib.Path) -> None:
    """Start the service, generate in the playground, save the screenshot to `output`."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="flux-screenshot-") as tmp:
        service = start_service(pathlib.Path(tmp), {"API_KEY": KEY}, workers=1)
        try:
            with sync_playwright() as pw:
                browser = launch(pw)
                try:
                    # Reduced motion: the answer's lines fade in, and a picture taken during
                    # the fade shows them half transparent.
                    page = browser.new_page(viewport={"width": WIDTH, "height": 900},
                                            reduced_motion="reduce")
                    page.set_default_timeout(TIMEOUT_MS)
                    page.goto(service.url + "/")
                    page.fill("#api-key", KEY)
                    page.fill("#prompt", PROMPT)
                    page.click("label.chip:has-text('16:9')")
                    page.click("#generate")
                    page.wait_for_function(
                        "() => { const i = document.getElementById('result-img');"
                        " return !document.getElementById('result').hidden"
                        " && i.complete && i.naturalWidth > 0; }")
                    output.parent.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(output), full_page=True,
                                    clip={"x": 0, "y": 0, "width": WIDTH, "height": HEIGHT})
                finally:
                    browser.close()
        finally:
            service.stop()


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(prog="python -m scripts.screenshot", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--output", type=pathlib.Path, default=OUTPUT,
                     help=f"where to write the PNG (default: {OUTPUT.relative_to(ROOT)})")
    args = cli.parse_args(argv)
    if not CHROMIUM.exists():
        print(f"{CHROMIUM} not found: apt-get install chromium", file=sys.stderr)
        return 1
    if emoji_font_missing():
        print("no colour emoji font: the answer's emoji will show as boxes "
              "(apt-get install fonts-noto-color-emoji)", file=sys.stderr)
    capture(args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
