"""Running the fake fal: FakeFal in a thread on 127.0.0.1, and the command line."""

from __future__ import annotations

import argparse
from typing import Any

from harness.fakes.fal.app import DEFAULT_FAL_KEY, FalState, make_app
from harness.fakes.serving import ThreadedFake, serve


class FakeFal(ThreadedFake):
    """The fake on 127.0.0.1 in a daemon thread, with the bases the service is pointed at."""

    def __init__(self, key: str = DEFAULT_FAL_KEY, host: str = "127.0.0.1", port: int = 0):
        self.app = make_app(key=key)
        self.state: FalState = self.app.extensions["fake_fal"]
        self.key = key
        super().__init__(self.app, "fake-fal", host, port)
        self.api_base = self.url + "/sync"          # FAL_API_BASE
        self.queue_base = self.url + "/queue"       # FAL_QUEUE_BASE

    def env(self) -> dict[str, str]:
        """The service's variables that point it here (the file host allowed too)."""
        return {"FAL_KEY": self.key, "FAL_API_BASE": self.api_base,
                "FAL_QUEUE_BASE": self.queue_base, "PROVIDER_FILE_HOSTS": f"127.0.0.1:{self.port}"}

    def add_faults(self, *kinds: str | dict) -> None:
        """Queue faults (FIFO), each for the next sync call or submit: "429", "504", ..."""
        self.state.add_faults(list(kinds))

    def requests(self, kind: str | None = None) -> list[dict]:
        return [r for r in self.state.requests() if kind is None or r["kind"] == kind]

    def reset(self) -> None:
        self.state.reset()





def start(**kwargs: Any) -> FakeFal:
    """Start the fake on a free port (kwargs: key, host, port)."""
    return FakeFal(**kwargs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake fal.ai (sync and queue API)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--key", default=DEFAULT_FAL_KEY)
    args = parser.parse_args(argv)
    server = serve(make_app(key=args.key), args.host, args.port)
    print(f"fake fal on http://{args.host}:{server.server_port} (FAL_API_BASE .../sync, "
          "FAL_QUEUE_BASE .../queue)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
