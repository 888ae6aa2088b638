"""Running the fake Replicate in a thread on 127.0.0.1, with helpers for tests."""

from __future__ import annotations

import threading
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server

from harness.fakes.replicate.app import TOKEN, ReplicateState, make_app


class _QuietHandler(WSGIRequestHandler):
    """No access log: the tests read the fake's own request log."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class FakeReplicate:
    """The fake on a free port in a daemon thread."""

    def __init__(self, state: ReplicateState, host: str = "127.0.0.1", port: int = 0):
        self.state = state
        self.app = make_app(state)
        self._server = make_server(host, port, self.app, threaded=True,
                                   request_handler=_QuietHandler)
        self.port = self._server.server_port
        self.host_port = f"{host}:{self.port}"
        self.url = f"http://{self.host_port}"
        self.api = self.url + "/v1"              # what REPLICATE_API_BASE points at
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="fake-replicate", daemon=True)
        self._thread.start()

    def add_faults(self, *faults: str | dict) -> None:
        """Queue faults for the next creates: "402", {"kind": "slow", "seconds": 5}, ..."""
        self.state.add_faults(list(faults))

    def advance_clock(self, seconds: float) -> None:
        """Move the fake clock: files and outputs older than FILE_LIFETIME are removed."""
        with self.state.lock:
            self.state.clock += seconds

    def hold_at_most(self, seconds: float) -> None:
        """End `Prefer: wait` holds after `seconds` (Replicate may answer before N)."""
        with self.state.lock:
            self.state.max_hold = seconds

    def requests(self, kind: str | None = None) -> list[dict]:
        with self.state.lock:
            return [dict(e) for e in self.state.log if kind is None or e["kind"] == kind]

    def reset(self) -> None:
        self.state.reset()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def start(*, token: str = TOKEN, duration: float = 0.2, port: int = 0) -> FakeReplicate:
    """Start the fake; each prediction takes `duration` seconds unless a fault says otherwise."""
    return FakeReplicate(ReplicateState(token, duration), port=port)
