"""Run the fake standalone: ``python -m tests.fakes.cloudflare --port 8788``."""

from tests.fakes.cloudflare.server import main

main()
