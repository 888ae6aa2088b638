"""Running the fake: FakeServer in a thread, start() and the command line."""

from __future__ import annotations

import argparse
from typing import Any

from flask import Flask

from harness.fakes.cloudflare.app import make_app
from harness.fakes.cloudflare.guard import GUARD, reset_guard
from harness.fakes.cloudflare.state import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_API_TOKEN,
    DEFAULT_LLM_KEY,
    FakeState,
)
from harness.fakes.serving import ThreadedFake, serve

# ============================================================================================
# Running it.
# ============================================================================================


class FakeServer(ThreadedFake):
    """The fake running on 127.0.0.1 in a daemon thread, with helpers for tests."""

    def __init__(self, app: Flask, host: str = "127.0.0.1", port: int = 0):
        self.app = app
        self.state: FakeState = app.extensions["fake_cloudflare"]
        self.host = host
        super().__init__(app, "fake-cloudflare", host, port)

    def add_faults(self, *kinds: str | dict) -> None:
        """Queue image faults (FIFO): "3030", "timeout", {"kind": "timeout", "seconds": 3}, ..."""
        self.state.add_faults(list(kinds))

    def add_partner_faults(self, *kinds: str | dict) -> None:
        """Queue faults of the partner route (partners.PARTNER_FAULTS): "2021", "failed", ..."""
        self.state.partners.add_faults(list(kinds))

    def advance_partner_clock(self, seconds: float) -> None:
        """Move the partner files' fake clock: links older than a day then answer 404."""
        with self.state.partners.lock:
            self.state.partners.clock += seconds

    def add_llm_faults(self, *kinds: str | dict) -> None:
        self.state.add_faults(list(kinds), llm=True)

    def requests(self) -> list[dict]:
        return self.state.requests()

    def reset(self) -> None:
        self.state.reset()
        reset_guard()

    def moderation_faults(self, *kinds: str) -> None:
        """Queue faults of the next moderation judgements (guard.FAULTS), either route."""
        with GUARD.lock:
            GUARD.faults.extend(kinds)

    def guard_answers_text(self, on: bool = True) -> None:
        """Make Llama Guard answer with its own text ("unsafe\nS12") instead of an object."""
        GUARD.text = on

    def judged(self) -> list[str]:
        """The texts the fake's moderation judged so far."""
        return list(GUARD.judged)

    def exhaust(self, *account_ids: str) -> None:
        """Answer 4006 (daily allocation used up) for these accounts; none to clear."""
        with self.state.lock:
            self.state.exhausted = set(account_ids)

    def set_llm_reply(self, text: str) -> None:
        self.state.llm_reply = text





def start(*, host: str = "127.0.0.1", port: int = 0, **kwargs: Any) -> FakeServer:
    """Start the fake on a free port (or `port`); kwargs go to make_app()."""
    return FakeServer(make_app(**kwargs), host, port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake Cloudflare Workers AI / OpenAI server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8788)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per image")
    parser.add_argument("--llm-latency", type=float, default=0.0, help="seconds per chat answer")
    parser.add_argument("--image-kb", type=int, default=None, help="approximate JPEG size")
    parser.add_argument("--fail-rate", type=float, default=0.0,
                        help="share of generations answered with a random upstream fault")
    parser.add_argument("--account-id", default=DEFAULT_ACCOUNT_ID)
    parser.add_argument("--api-token", default=DEFAULT_API_TOKEN)
    parser.add_argument("--llm-key", default=DEFAULT_LLM_KEY)
    parser.add_argument("--gateway-token", default=None)
    args = parser.parse_args(argv)
    app = make_app(account_id=args.account_id, api_token=args.api_token, llm_key=args.llm_key,
                   latency=args.latency, llm_latency=args.llm_latency, image_kb=args.image_kb,
                   gateway_token=args.gateway_token, fail_rate=args.fail_rate)
    server = serve(app, args.host, args.port)
    print(f"fake cloudflare on http://{args.host}:{server.server_port} "
          f"(account {args.account_id}, latency {args.latency}s)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
