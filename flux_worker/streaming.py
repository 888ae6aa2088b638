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
import threading
import time
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")
HEARTBEAT = object()
_END = object()
# How often a waiting consumer asks whether its client is still there.
GONE_CHECK_SECONDS = 0.25


class Background(Generic[T]):
    """Items of `source`, produced by a background thread, with HEARTBEAT after silences."""

    def __init__(self, source: Iterator[T], interval: float, cancel: threading.Event,
                 gone: Callable[[], bool] | None = None):
        self.interval = interval
        self.cancel = cancel
        # Asked while nothing is to be written: a stream learns that its client hung up only
        # when a write fails, which may be after the image was made and stored for nobody.
        self.gone = gone
        self._items: queue.SimpleQueue[tuple[object, BaseException | None]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._pump, args=(source,), name="generation",
                                        daemon=True)
        self._thread.start()

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
        try:
            quiet_since = time.monotonic()
            while True:
                wait = self.interval if self.gone is None else GONE_CHECK_SECONDS
                try:
                    item, error = self._items.get(timeout=wait)
                except queue.Empty:
                    if self.gone is not None and self.gone():
                        return      # the finally below cancels the generation
                    if time.monotonic() - quiet_since >= self.interval:
                        quiet_since = time.monotonic()
                        yield HEARTBEAT
                    continue
                quiet_since = time.monotonic()
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
