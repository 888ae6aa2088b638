"""Keep a slow generator's consumer busy: run it in a thread and report heartbeats meanwhile.

A generation can take longer than a proxy's or a platform's idle timeout; a stream that sends
nothing for a minute gets cut. Callers turn HEARTBEAT into an empty content chunk rather than an
SSE comment, because hand-rolled client parsers choke on comment lines.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterator, TypeVar

T = TypeVar("T")
HEARTBEAT = object()
_END = object()


def with_heartbeat(source: Iterator[T], interval: float) -> Iterator[object]:
    """Yield the items of `source`, and HEARTBEAT whenever `interval` seconds pass without one.

    Exceptions raised by `source` are re-raised here, in the consumer's thread.
    """
    items: queue.Queue = queue.Queue()

    def pump():
        try:
            for item in source:
                items.put((item, None))
        except BaseException as exc:  # handed to the consumer, which decides
            items.put((_END, exc))
            return
        items.put((_END, None))

    threading.Thread(target=pump, name="generation", daemon=True).start()
    while True:
        try:
            item, error = items.get(timeout=interval)
        except queue.Empty:
            yield HEARTBEAT
            continue
        if item is _END:
            if error is not None:
                raise error
            return
        yield item
