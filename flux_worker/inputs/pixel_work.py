"""How many pixels one process decodes, resamples and encodes at once (Pillow work; no Flask).

Input decoding (`intake.py`) and output fitting (`generation/fitting.py`) share one budget per
process. Pillow releases the GIL while it works, so gunicorn's threads would otherwise each hold
their own image: six edits of four 8000x5000 PNGs once took 2.5 GB across two workers.

- Each job holds the pixels it will keep in memory at once, but at least one core's share: the
  work is pure CPU, and more jobs at once than cores only queue in the kernel while each holds
  its pixels (a burst of enlargements once took the service to 900 MB). So at most one job per
  core runs, and fewer when they are big.
- Callers wait in arrival order; a job larger than the whole budget waits for all of it.
- A full-size decode larger than the whole budget (a 40 MP WebP, GIF, interlaced or 16-bit PNG)
  also takes a lock shared by every process of the machine (`machine_wide`), so two workers never
  hold one each: that is what a small instance cannot afford.
- `give_back()` returns freed memory to the system after a big job (glibc keeps it otherwise).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import os
import tempfile
import threading
from collections import deque
from typing import Iterator

from PIL import Image

# No image model makes or takes more than this many pixels a side (lucid-origin's 2500 is the
# largest output; FLUX.2 references are scaled to 511, SD inpainting fits its source to the
# output, upstream Images APIs scale down themselves). Inputs are decoded to at most this side;
# upstream answers declaring more are refused (generation/fitting.py).
LARGEST_SIDE = 2500
# One core's share: an image of the largest side. Two cores: 12.5 MP (50 MB of RGBA) at once.
SHARE_PIXELS = LARGEST_SIDE * LARGEST_SIDE
LOCK_PATH = os.path.join(tempfile.gettempdir(), "flux-worker-pixel-work.lock")


def _cores() -> int:
    """Return how many cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:                  # macOS has no sched_getaffinity
        return max(1, os.cpu_count() or 1)


CORES = _cores()


class PixelBudget:
    """A first-come, first-served budget of pixels held by the jobs running in this process."""

    def __init__(self, total: int, share: int):
        self.total = total
        self.share = min(share, total)
        self._free = total
        self._queue: deque[object] = deque()
        self._changed = threading.Condition()

    def cost(self, pixels: int) -> int:
        """What a job of `pixels` holds: at least one share, at most the whole budget."""
        return max(self.share, min(int(pixels), self.total))

    @contextlib.contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        """Hold `pixels` of the budget while the block runs, waiting in turn for them."""
        need = self.cost(pixels)
        turn = object()
        with self._changed:
            self._queue.append(turn)
            try:
                while self._queue[0] is not turn or self._free < need:
                    self._changed.wait()
            finally:
                self._queue.remove(turn)
                self._changed.notify_all()      # the next in line may now fit too
            self._free -= need
        try:
            yield
        finally:
            with self._changed:
                self._free += need
                self._changed.notify_all()

    @property
    def free(self) -> int:
        """Pixels not held right now (for tests and metrics)."""
        return self._free


BUDGET = PixelBudget(CORES * SHARE_PIXELS, SHARE_PIXELS)


@contextlib.contextmanager
def held(pixels: int) -> Iterator[None]:
    """Hold `pixels` of this process's budget; give memory back afterwards if that is big."""
    with BUDGET.hold(pixels):
        try:
            yield
        finally:
            if pixels > SHARE_PIXELS:
                give_back()


@contextlib.contextmanager
def machine_wide(path: str = LOCK_PATH) -> Iterator[None]:
    """Hold the lock every process of this machine takes for a full-size decode of a big image.

    Without a writable temporary directory the lock is skipped: the per-process budget still
    holds.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)                        # closing releases the lock


def _glibc(name: str, *argtypes):
    """A glibc function, or None elsewhere (musl, macOS)."""
    try:
        function = getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None
    function.argtypes = list(argtypes)
    function.restype = ctypes.c_int
    return function


_TRIM = _glibc("malloc_trim", ctypes.c_size_t)
_MALLOPT = _glibc("mallopt", ctypes.c_int, ctypes.c_int)
_M_MMAP_THRESHOLD = -3
# glibc serves a block above its mmap threshold with its own mapping, unmapped when freed; but
# each free of such a block raises the threshold (up to 32 MB), after which Pillow's 16 MB blocks
# come from the heaps of the threads that asked, and stay there, fragmented, per thread. A fixed
# threshold keeps every image block a mapping of its own; Pillow's block cache (set by fitting)
# still spares the page faults of the small, frequent ones.
MMAP_THRESHOLD = 4 << 20
if _MALLOPT is not None and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
    _MALLOPT(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def give_back() -> None:
    """Return freed image memory to the system after a big job.

    Pillow keeps a few freed blocks for reuse (fitting sets how many) and glibc keeps freed heap:
    once its mmap threshold has grown past Pillow's 16 MB blocks, those come from the heap and a
    worker would keep the peak of its biggest decode for ever.
    """
    Image.core.clear_cache()
    if _TRIM is not None:
        _TRIM(0)
