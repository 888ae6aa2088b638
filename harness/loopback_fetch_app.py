"""The app with its image downloader allowed to reach 127.0.0.1, for tests and benchmarks only.

`start_service(..., app="harness.loopback_fetch_app:app")` loads it instead of `app:app`, so a
hostile image host on this machine (harness/fakes/image_host.py) can stand in for the internet.
The SSRF guard is a constructor argument of `RemoteFetcher` (the unit tests open it the same
way); no variable of the environment can open it, so a production start cannot by accident.
Everything else is built as `app:app` builds it. Only 127.0.0.1 is let through, public
addresses are not: nothing a test names leaves this machine.
"""

from __future__ import annotations

import os

from flux_worker import create_app
from flux_worker.config import Config
from flux_worker.net.fetch import RemoteFetcher
from flux_worker.services import build_services


def _loopback(address: str) -> bool:
    return address == "127.0.0.1"


services = build_services(Config.from_env(os.environ))
intake = services.generations.intake
intake.fetcher = RemoteFetcher(max_bytes=intake.max_bytes, allowed=_loopback)
app = create_app(services=services)
