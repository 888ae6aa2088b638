"""Run the fake standalone: ``python -m harness.fakes.cloudflare --port 8788``."""

from harness.fakes.cloudflare.server import main

main()
