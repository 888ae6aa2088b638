"""Following one prompt over ComfyUI's websocket (`/ws?clientId=`).

ComfyUI sends a prompt's events only to the socket of the `client_id` it was submitted with, so
the socket is opened first, then the prompt submitted. Its frames: `execution_start`,
`progress` {value, max} per sampler step (passed on to the request's progress callback),
`executed`, then `executing` with `node: null` when the prompt is done; `execution_error` or
`execution_interrupted` when it is not. Binary frames are previews and are skipped.

The socket is a convenience, not a need: a socket that cannot open, or breaks (a proxy that
drops websockets, a restart), answers LOST, and the backend polls /history instead. Each wait
on the socket is short, so the caller's cancel event and the deadline are seen within a tick.
"""

from __future__ import annotations

import enum
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import websocket

log = logging.getLogger(__name__)

# Seconds of one wait on the socket: how soon a cancel or the deadline is noticed.
TICK = 0.25
# Seconds without a frame after which /history is asked whether the prompt is done anyway.
SILENCE = 3.0


class Outcome(enum.Enum):
    DONE = "done"                    # executing {node: null}: /history has the outputs
    FAILED = "failed"                # execution_error (its data in Followed.error)
    INTERRUPTED = "interrupted"      # execution_interrupted: someone stopped it on ComfyUI
    LOST = "lost"                    # no socket, or it broke: poll /history
    CANCELLED = "cancelled"          # the caller has gone
    EXPIRED = "expired"              # the deadline passed


@dataclass
class Followed:
    outcome: Outcome
    error: dict[str, Any] = field(default_factory=dict)


def ws_address(base: str, client_id: str) -> str:
    """`http://host:8188/prefix` -> `ws://host:8188/prefix/ws?clientId=...` (https: wss)."""
    scheme, _, rest = base.partition("://")
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/ws?clientId={client_id}"


class Socket:
    """The websocket of one client id; `None`-safe: a socket that never opened is LOST."""

    def __init__(self, base: str, client_id: str, connect_timeout: float):
        self.client_id = client_id
        self._ws: websocket.WebSocket | None = None
        try:
            self._ws = websocket.create_connection(ws_address(base, client_id),
                                                   timeout=connect_timeout,
                                                   enable_multithread=False)
            # ComfyUI files the socket under its client id only after the handshake, then
            # greets it with a `status` frame: a prompt submitted before that greeting could
            # run before its events have anywhere to go.
            self._ws.recv()
            self._ws.settimeout(TICK)
        except (OSError, websocket.WebSocketException) as exc:
            log.info("comfyui: no websocket (%s); following the prompt through /history",
                     type(exc).__name__)
            self.close()

    def close(self) -> None:
        if self._ws is not None:
            try:
                self._ws.close(timeout=1)
            except (OSError, websocket.WebSocketException):
                pass                      # it is being dropped anyway
            self._ws = None

    def follow(self, prompt_id: str, deadline: float, cancel: threading.Event | None,
               progress: Callable[[int, int], None] | None,
               finished: Callable[[], bool]) -> Followed:
        """Read frames until the prompt ends, the socket breaks, the caller goes or time is up.

        After SILENCE seconds without a frame, `finished()` (a look at /history) is asked:
        a socket that lost the last frame must not hold the request until the deadline.
        """
        if self._ws is None:
            return Followed(Outcome.LOST)
        heard = time.monotonic()
        while True:
            if cancel is not None and cancel.is_set():
                return Followed(Outcome.CANCELLED)
            if time.monotonic() >= deadline:
                return Followed(Outcome.EXPIRED)
            try:
                frame = self._ws.recv()
                heard = time.monotonic()
            except websocket.WebSocketTimeoutException:
                if time.monotonic() - heard >= SILENCE:
                    heard = time.monotonic()
                    if finished():
                        return Followed(Outcome.DONE)
                continue
            except (OSError, websocket.WebSocketException) as exc:
                log.info("comfyui: the websocket broke (%s); polling /history", type(exc).__name__)
                self.close()
                return Followed(Outcome.LOST)
            if not isinstance(frame, str):
                continue                  # a preview image
            ended = self._read(frame, prompt_id, progress)
            if ended is not None:
                return ended

    @staticmethod
    def _read(frame: str, prompt_id: str,
              progress: Callable[[int, int], None] | None) -> Followed | None:
        try:
            message = json.loads(frame)
        except ValueError:
            return None
        if not isinstance(message, dict) or not isinstance(message.get("data"), dict):
            return None
        kind, data = message.get("type"), message["data"]
        if data.get("prompt_id") != prompt_id:
            return None                   # the queue's status, or another prompt's event
        if kind == "progress" and progress is not None:
            value, most = data.get("value"), data.get("max")
            if isinstance(value, int) and isinstance(most, int) and 0 < value <= most:
                progress(value, most)
        elif kind == "executing" and data.get("node") is None:
            return Followed(Outcome.DONE)
        elif kind == "execution_success":
            return Followed(Outcome.DONE)
        elif kind == "execution_error":
            return Followed(Outcome.FAILED, data)
        elif kind == "execution_interrupted":
            return Followed(Outcome.INTERRUPTED, data)
        return None
