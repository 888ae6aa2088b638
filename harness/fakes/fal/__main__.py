"""Run the fake standalone: ``python -m harness.fakes.fal --port 8790``."""

from harness.fakes.fal.server import main

main()
