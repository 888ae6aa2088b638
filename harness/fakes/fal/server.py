"""Running the fake fal: FakeFal in a thread on 127.0.0.1, and the command line."""

from __future__ import annotations

import argparse
import threading
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server

from harness.fakes.fal.app import DEFAULT_FAL_KEY, FalState, make_app


class _QuietHandler(WSGIRequestHandler):
    """No access log: the polls would drown the test output."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class FakeFal:
    """The fake on 127.0.0.1 in a daemon thread, with the bases the service is pointed at."""

    def __init__(self, key: str = DEFAULT_FAL_KEY, host: str = "127.0.0.1", port: int = 0):
        self.app = make_app(key=key)
        self.state: FalState = self.app.extensions["fake_fal"]
        self.key = key
        self._server = make_server(host, port, self.app, threaded=True,
                                   request_handler=_QuietHandler)
        self.port = self._server.server_port
        self.url = f"http://{host}:{self.port}"
        self.api_base = self.url + "/sync"          # FAL_API_BASE
        self.queue_base = self.url + "/queue"       # FAL_QUEUE_BASE
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-fal",
                                        daemon=True)
        self._thread.start()

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

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "FakeFal":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start(**kwargs: Any) -> FakeFal:
    """Start the fake on a free port (kwargs: key, host, port)."""
    return FakeFal(**kwargs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake fal.ai (sync and queue API)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--key", default=DEFAULT_FAL_KEY)
    args = parser.parse_args(argv)
    server = make_server(args.host, args.port, make_app(key=args.key), threaded=True,
                         request_handler=_QuietHandler)
    print(f"fake fal on http://{args.host}:{server.server_port} (FAL_API_BASE .../sync, "
          "FAL_QUEUE_BASE .../queue)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
