"""Run a slow generator in a thread of its own and keep its consumer busy with heartbeats.

A generation can take longer than a proxy's or a platform's idle timeout; a stream that sends
nothing for a minute gets cut. Callers turn HEARTBEAT into an empty content chunk rather than an
SSE comment, because hand-rolled client parsers choke on comment lines.

The thread starts at once and owns the generation until it really ends, whatever the consumer
does: a consumer that stops early (the client left) sets the `cancel` event, and the generation
stops at its next step. Whatever the source holds (an in-flight slot) is released by the source
itself, in the thread, when it ends, never earlier.
"""

from __future__ import annotations

import queue
import select
import socket
import threading
import time
from typing import Callable, Generic, Iterator, NamedTuple, TypeVar

T = TypeVar("T")
HEARTBEAT = object()
# Seconds of silence after which a stream gets a heartbeat, under common idle cut-offs (60 s).
HEARTBEAT_SECONDS = 15.0
_END = object()
# How often a waiting stream looks whether its client has closed the connection: the sooner it
# knows, the likelier the generation is abandoned before its image is stored (or paid for).
GONE_POLL = 0.5


class Progress(NamedTuple):
    """A step of the upstream's work (ComfyUI's sampler), slipped between a stream's pieces."""

    step: int
    total: int


class Background(Generic[T]):
    """Items of `source`, produced by a background thread, with HEARTBEAT after silences.

    `progress` (a GenerationRequest's callback) adds Progress items between them, from the
    same thread, while the source waits on its upstream. `start=False` leaves the thread to
    `start()`, so the callback can be handed out before anything runs.
    """

    def __init__(self, source: Iterator[T], interval: float, cancel: threading.Event,
                 gone: Callable[[], bool] | None = None, *, start: bool = True):
        self.interval = interval
        self.cancel = cancel
        self.gone = gone
        self._items: queue.SimpleQueue[tuple[object, BaseException | None]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._pump, args=(source,), name="generation",
                                        daemon=True)
        if start:
            self._thread.start()

    def start(self) -> None:
        """Start the source's thread (for a Background made with `start=False`)."""
        self._thread.start()

    def progress(self, step: int, total: int) -> None:
        """Pass on the upstream's progress: step `step` of `total`."""
        self._items.put((Progress(step, total), None))

    def _pump(self, source: Iterator[T]) -> None:
        try:
            for item in source:
                self._items.put((item, None))
        except BaseException as exc:  # handed to the consumer, which decides
            self._items.put((_END, exc))
            return
        self._items.put((_END, None))

    def __iter__(self) -> Iterator[object]:
        """Yield the items, and HEARTBEAT whenever `interval` seconds pass without one.

        Exceptions raised by the source are re-raised here, in the consumer's thread.
        """
        poll = min(self.interval, GONE_POLL) if self.gone is not None else self.interval
        last = time.monotonic()
        try:
            while True:
                try:
                    item, error = self._items.get(timeout=poll)
                except queue.Empty:
                    if self.gone is not None and self.gone():
                        return        # nobody reads on: the finally below cancels the source
                    if time.monotonic() - last >= self.interval:
                        last = time.monotonic()
                        yield HEARTBEAT
                    continue
                last = time.monotonic()
                if item is _END:
                    if error is not None:
                        raise error
                    return
                yield item
        finally:
            # Finished, failed or abandoned: either way nobody reads on, so the source may stop.
            self.cancel.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the generation to end; return whether it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()


def peer_closed(sock: socket.socket | None) -> Callable[[], bool] | None:
    """A check whether the client has closed its end of `sock`; None when there is no socket.

    A stream writes only every few seconds, and a write to a closed connection fails only on
    the second try, so a client that left is noticed here instead, without writing anything.
    """
    if sock is None:
        return None

    def closed() -> bool:
        try:
            poller = select.poll()        # not select(): no limit on descriptor numbers
            poller.register(sock, select.POLLIN)
            if not poller.poll(0):
                return False
            # Readable with nothing to read: the client closed (a reset raises instead).
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except (OSError, ValueError):
            return True

    return closed


class ClientWatch(threading.Event):
    """A cancel event that also counts as set once the client has closed its connection.

    Generations check their cancel event before every step that costs (a retry, the next
    account, storing the image); with this one, a client that gave up (a non-stream request
    whose caller timed out, a stream whose reader left) stops them without any write.
    """

    def __init__(self, gone: Callable[[], bool] | None):
        super().__init__()
        self._gone = gone

    @property
    def gone(self) -> Callable[[], bool] | None:
        """The check whether the client has closed its connection (None: no socket to watch)."""
        return self._gone

    def is_set(self) -> bool:
        """Whether the generation should stop: cancelled, or its client gone."""
        if not super().is_set() and self._gone is not None and self._gone():
            self.set()
        return super().is_set()
