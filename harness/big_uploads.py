"""Six edits at once, each of four plain 8000x5000 RGBA PNGs: the memory of the service's workers.

The probe of issue 20 (item 5): with full-size decoding these took 2.5 GB across two workers and
one kept 1.1 GB afterwards. `run(service)` sends them (after a few small edits, so every worker
has imported what it needs) and measures the summed RSS of the workers: idle, the peak while the
edits run, and each worker's RSS afterwards. Used by tests/e2e/test_big_uploads_e2e.py and
`python -m bench.abuse --only big-uploads`.
"""

from __future__ import annotations

import pathlib
import struct
import subprocess
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests

from harness.service import API_KEY, RssSampler, Service

MiB = 2**20
EDITS = 6
IMAGES_PER_EDIT = 4
SIDE = (8000, 5000)


def plain_png(width: int, height: int, rgba: tuple[int, int, int, int]) -> bytes:
    """A one-colour RGBA PNG, written row by row (the pixels are never all in memory here)."""
    packer = zlib.compressobj(9)
    row = b"\x00" + bytes(rgba) * width
    body = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind))))

    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", body) + chunk(b"IEND", b""))


ROOT = pathlib.Path(__file__).resolve().parents[1]
# Run in a fresh process, so that its peak resident size (VmHWM) is this decode's alone.
_MEASURE = """
import sys, time
from flux_worker.inputs import intake
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
data = open(sys.argv[1], "rb").read()
before, cpu = hwm(), time.process_time()
image = intake.decode(data, "image")
print(image.width, image.height, hwm() - before, time.process_time() - cpu)
"""


@dataclass(frozen=True)
class Decode:
    """One input decoded by the service's intake in a process of its own."""

    width: int
    height: int
    grown: int                      # peak RSS growth, bytes
    cpu: float                      # CPU seconds


def measure_decode(path: pathlib.Path, timeout: float = 300) -> Decode:
    """Decode the file at `path` as an upload is decoded, in a fresh process (Linux: /proc)."""
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, check=True)
    width, height, grown, cpu = done.stdout.split()
    return Decode(int(width), int(height), int(grown), float(cpu))


@dataclass
class Figures:
    """What one run measured (bytes and seconds)."""

    idle: int                       # summed worker RSS before
    peak: int                       # summed worker RSS at its highest during the edits
    after: int                      # summed worker RSS 2 s after the last answer
    worst_worker_growth: int        # the most one worker kept above its own idle RSS
    statuses: list[int | None]
    seconds: list[float]
    upload_bytes: int

    @property
    def p50(self) -> float:
        return sorted(self.seconds)[len(self.seconds) // 2]

    @property
    def p95(self) -> float:
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]

    def line(self) -> str:
        return (f"{EDITS} edits × {IMAGES_PER_EDIT} PNGs of {SIDE[0]}x{SIDE[1]} "
                f"({self.upload_bytes // 1024} KB each edit): statuses {self.statuses}; "
                f"peak {(self.peak - self.idle) / MiB:.0f} MiB above idle "
                f"({self.idle / MiB:.0f} MiB for the workers idle); "
                f"{(self.after - self.idle) / MiB:+.0f} MiB 2 s after, at most "
                f"{self.worst_worker_growth / MiB:+.0f} MiB in one worker; latency p50 "
                f"{self.p50:.1f} s, p95 {self.p95:.1f} s")


def _edit(service: Service, files: list[tuple[str, tuple[str, bytes, str]]]) -> requests.Response:
    return requests.post(service.api + "/images/edits", headers={
        "Authorization": f"Bearer {API_KEY}"}, data={"prompt": "make it blue"}, files=files,
        timeout=300)


def run(service: Service) -> Figures:
    """Warm the workers up, then send the six edits at once and measure."""
    small = [("image[]", ("small.png", plain_png(64, 64, (1, 2, 3, 255)), "image/png"))]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: _edit(service, small), range(8)))
    time.sleep(1)
    idle_each = service.worker_rss()
    idle = sum(idle_each.values())
    pictures = [plain_png(*SIDE, (200, 40 + 40 * i, 40, 255)) for i in range(IMAGES_PER_EDIT)]
    files = [("image[]", (f"big{i}.png", data, "image/png")) for i, data in enumerate(pictures)]
    statuses: list[int | None] = []
    seconds: list[float] = []

    def one(_: int) -> None:
        start = time.monotonic()
        try:
            statuses.append(_edit(service, files).status_code)
        except requests.RequestException:
            statuses.append(None)
        seconds.append(time.monotonic() - start)

    with RssSampler(service) as sampler, ThreadPoolExecutor(EDITS) as pool:
        list(pool.map(one, range(EDITS)))
    time.sleep(2)
    after_each = service.worker_rss()
    growth = max((after_each.get(pid, 0) - rss for pid, rss in idle_each.items()), default=0)
    return Figures(idle, max(sampler.peak, idle), sum(after_each.values()), growth,
                   sorted(statuses, key=str), seconds, sum(len(p) for p in pictures))
