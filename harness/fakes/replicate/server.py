"""Running the fake Replicate in a thread on 127.0.0.1, with helpers for tests."""

from __future__ import annotations

from harness.fakes.replicate.app import TOKEN, ReplicateState, make_app
from harness.fakes.serving import ThreadedFake


class FakeReplicate(ThreadedFake):
    """The fake on a free port in a daemon thread."""

    def __init__(self, state: ReplicateState, host: str = "127.0.0.1", port: int = 0):
        self.state = state
        self.app = make_app(state)
        super().__init__(self.app, "fake-replicate", host, port)
        self.host_port = f"{host}:{self.port}"
        self.api = self.url + "/v1"              # what REPLICATE_API_BASE points at

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



def start(*, token: str = TOKEN, duration: float = 0.2, port: int = 0) -> FakeReplicate:
    """Start the fake; each prediction takes `duration` seconds unless a fault says otherwise."""
    return FakeReplicate(ReplicateState(token, duration), port=port)
