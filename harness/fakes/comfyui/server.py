"""Running the fake ComfyUI on 127.0.0.1 in a thread (tests), or from the command line."""

from __future__ import annotations

import argparse

from harness.fakes.comfyui.app import make_app
from harness.fakes.comfyui.state import FakeComfyState
from harness.fakes.serving import ThreadedFake


class FakeComfyUI(ThreadedFake):
    """The fake on a free port in a daemon thread; `state` is what tests read and steer."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, step_seconds: float = 0.0):
        self.app = make_app(step_seconds)
        self.state: FakeComfyState = self.app.extensions["fake_comfyui"]
        super().__init__(self.app, "fake-comfyui", host, port)

    def requests(self, path: str | None = None) -> list[dict]:
        """The recorded requests (all, or those of one path such as `/prompt`)."""
        return [r for r in self.state.requests() if path is None or r.get("path") == path]

    def queued(self) -> list[dict]:
        """The prompts queued, with their graphs."""
        return [r for r in self.state.requests() if r.get("kind") == "queued"]

    def add_faults(self, *faults: str | dict) -> None:
        self.state.add_faults(*faults)

    def reset(self) -> None:
        self.state.reset()





def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake ComfyUI server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--step-seconds", type=float, default=0.05)
    args = parser.parse_args(argv)
    server = FakeComfyUI(args.host, args.port, args.step_seconds)
    print(f"fake ComfyUI on {server.url}", flush=True)
    try:
        server._thread.join()
    except KeyboardInterrupt:
        server.stop()
