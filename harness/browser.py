"""Debian's Chromium, headless, driven by Playwright: for the browser tests and the screenshot
script. Playwright's own browser download is not used (`playwright install` needs the network);
`apt-get install chromium` provides /usr/bin/chromium."""

from __future__ import annotations

import pathlib
from typing import Any

CHROMIUM = pathlib.Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def launch(playwright: Any) -> Any:
    """The system Chromium, headless, as a Playwright browser."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                      args=CHROMIUM_ARGS)
