"""The service beside the original Worker, in one run, against one fake upstream (issue 16).

    .venv/bin/python -m bench.compare --worker-src GIT_DIR [--quick] [--out FILE] [--json FILE]

GIT_DIR is a git directory (or a checkout) of snakeying/flux-api-worker; its
`src/flux-api-worker_en.js` is run unmodified in workerd under Miniflare 4 by the runner in
`--peer-dir` (default ../shared/peer beside this repository: setup.sh, start.sh, worker.mjs).
npm installs Miniflare into `--scratch` (default $TMPDIR/flux-bench-peer), never into this
repository, and the Worker's code is only ever read from GIT_DIR into that scratch directory.
Without `--worker-src` only the service's cases run (its targets that need no Worker figure are
still judged).

Both answer chat requests against the same lenient fake upstream (bench/upstream.py, the strict
fake's 150 KB 1024x1024 JPEG), driven by the same load generator (bench/loadgen.py), one after
the other in every case, each freshly started. Cases:

- cpu: 0 s upstream, 8 clients, three rounds of a fixed number of chats (the median round
  counts); server CPU per generation from /proc
  (service: gunicorn master + workers; Worker: the workerd process, which serves every request;
  Miniflare's node process is not on the request path and is reported apart). The service also
  answers 16:9, 3:2 and, with the fake answering 512x512, a 1:1 that must be enlarged.
- get: GET /image/<key> of the images the cpu case stored, 16 clients.
- nonstream / stream: 2 s upstream, 256 clients, a steady-state window; req/s, p99, errors,
  first byte, peak memory (service: sum of RSS of its processes; Worker: workerd's RSS).
- mixed: the service with both loads at once, 128 non-stream + 128 streaming clients (256 in
  all, the same rate as the 256-client cases); the streams' first byte.
- enlarge-mem: 256 clients at 2 s with the fake answering 512x512, the service's peak memory.

Every target of issue 16 is printed as met or missed with its figures. The machine is shared
with whatever else runs on it: the ratios (both sides measured in the same run under the same
load) are what the targets are about; CPU per request is the figure least moved by contention.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from harness.ports import free_port

from . import run as matrix
from .loadgen import Request, fetch, json_post, run_load
from .run import CLK_TCK, MemorySampler, MiB, Row, measure

ROOT = matrix.ROOT
# ../shared/peer beside the checkout (a worktree may sit one level deeper).
PEER_DIR = next((p / "shared" / "peer" for p in ROOT.parents
                 if (p / "shared" / "peer" / "setup.sh").exists()), ROOT.parent / "shared" / "peer")
WORKER_KEY = "sk-test"                     # the API_KEY binding the peer runner gives the Worker
IMAGE_KEY = re.compile(rb"/image/([A-Za-z0-9_.-]{8,80})")
PROMPT = "a lighthouse at dusk, dramatic clouds"

# Targets of issue 16: (key, text). Judged in judge().
CPU_RATIO = 0.5
SHAPE_RATIO = 1.5
ENLARGE_RATIO = 2.0
NONSTREAM_RATIO = 1.2
STREAM_RATIO = 1.5
P99_LIMIT = 2.3
TTFB_LIMIT = 0.050
GET_RATIO = 1.5
RSS_RATIO = 0.7
CPU_ROUNDS = 3        # rounds of each CPU case; the median counts (see Bench.cpu_case)


@dataclass(frozen=True)
class Plan:
    quick: bool
    cpu_requests: int
    window: float            # seconds measured in each 2 s case
    get_window: float


FULL = Plan(False, 1000, 20.0, 10.0)
QUICK = Plan(True, 120, 4.0, 3.0)


def chat(token: str, ratio: str = "", stream: bool = False, model: str = matrix.MODEL) -> Request:
    body: dict = {"model": model,
                  "messages": [{"role": "user", "content": f"{PROMPT} {ratio}".strip()}]}
    if stream:
        body["stream"] = True
    return json_post("/v1/chat/completions", body, token=token)


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes().decode("latin-1")
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Upstream:
    """bench/upstream.py in its own process."""

    def __init__(self, work: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = work / "upstream.log"
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bench.upstream", "--port", str(self.port)],
                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    async def ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the fake upstream exited:\n{self.log_path.read_text()}")
            try:
                if (await fetch(self.url + "/_bench/stats", timeout=2)).status == 200:
                    return
            except OSError:
                pass
            await asyncio.sleep(0.2)
        raise RuntimeError("the fake upstream did not start")

    async def configure(self, **change) -> None:
        resp = await fetch(self.url, json_post("/_bench/config", change))
        if resp.status != 200:
            raise RuntimeError(f"upstream config {change}: {resp.status}")

    async def stats(self) -> dict:
        return json.loads((await fetch(self.url + "/_bench/stats")).body)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def setup_worker(peer_dir: Path, worker_src: Path, scratch: Path) -> dict[str, str]:
    """Install Miniflare into scratch and extract the Worker there (peer setup.sh); its facts."""
    git_dir = worker_src / ".git" if (worker_src / ".git").is_dir() else worker_src
    env = dict(os.environ, PEER_SCRATCH=str(scratch))
    done = subprocess.run([str(peer_dir / "setup.sh"), str(git_dir)], env=env, cwd=scratch.parent,
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"peer setup.sh failed ({done.returncode}):\n{done.stderr[-3000:]}")
    facts = {}
    for line in done.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            facts[key] = value.strip("'")
    return facts


class Worker:
    """The original Worker in workerd, started by the peer runner; quacks like run.Server."""

    name = "original Worker"

    def __init__(self, peer_dir: Path, scratch: Path, upstream_port: int, work: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = work / f"worker-{self.port}.log"
        env = dict(os.environ, PEER_SCRATCH=str(scratch))
        with open(self.log_path, "wb") as err:
            self.proc = subprocess.Popen([str(peer_dir / "start.sh"), str(upstream_port),
                                          str(self.port)], env=env, stdout=subprocess.PIPE,
                                         stderr=err, start_new_session=True)
        self.workerd = 0

    @property
    def pid(self) -> int:
        return self.workerd

    async def ready(self) -> None:
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), 60)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"the Worker did not start:\n{self.log()[-3000:]}") from None
        found = re.match(rb"ready (\S+) pid=(\d+)", line)
        if not found:
            self.stop()
            raise RuntimeError(f"the Worker runner said {line!r}:\n{self.log()[-3000:]}")
        self.workerd = int(found.group(2))

    def pids(self, refresh: bool = True) -> list[int]:
        return [self.workerd]

    def cpu_split(self) -> tuple[float, float]:
        fields = _stat(self.workerd)
        if not fields:
            return 0.0, 0.0
        return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK

    def cpu(self) -> float:
        return sum(self.cpu_split())

    def node_cpu(self) -> float:
        fields = _stat(self.proc.pid)
        return (int(fields[11]) + int(fields[12])) / CLK_TCK if fields else 0.0

    def node_rss_mib(self) -> float:
        return _status_kib(self.proc.pid, "VmRSS") / 1024

    def peak_mib(self) -> float:
        return _status_kib(self.workerd, "VmHWM") / 1024

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    async def wait_quiet(self, settle: float = 0.3, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        last = self.cpu()
        while time.monotonic() < deadline:
            await asyncio.sleep(settle)
            now = self.cpu()
            if now - last < 0.011:
                return
            last = now

    def stop(self) -> None:
        """SIGTERM to node: Miniflare stops workerd and deletes its KV directory."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class Compare:
    """Runs the cases, owning every process it starts."""

    def __init__(self, plan: Plan, work: Path, extra_env: dict[str, str],
                 peer: tuple[Path, Path] | None, only: set[str] | None = None):
        self.plan, self.work, self.extra_env, self.peer = plan, work, extra_env, peer
        self.only = only
        self.rows: dict[str, Row] = {}
        self.notes: list[str] = []
        self.upstream: Upstream | None = None
        self.service: matrix.Server | None = None
        self.worker: Worker | None = None

    # -- processes ------------------------------------------------------------------------------

    async def fresh_service(self) -> matrix.Server:
        self.stop_service()
        assert self.upstream is not None
        store = Path(tempfile.mkdtemp(prefix="store-", dir=self.work))
        # start_service only reads the upstream's url.
        self.service = await matrix.start_service(self.work, cast(matrix.Server, self.upstream),
                                                  store, self.extra_env)
        return self.service

    def stop_service(self) -> None:
        if self.service is not None:
            self.service.stop()
            self.service = None

    async def fresh_worker(self) -> Worker:
        self.stop_worker()
        assert self.peer is not None and self.upstream is not None
        self.worker = Worker(self.peer[0], self.peer[1], self.upstream.port, self.work)
        await self.worker.ready()
        return self.worker

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def close(self) -> None:
        self.stop_service()
        self.stop_worker()
        if self.upstream is not None:
            self.upstream.stop()

    # -- cases ----------------------------------------------------------------------------------

    async def cpu_case(self, key: str, label: str, server, token: str, ratio: str = "",
                       model: str = matrix.MODEL) -> list[str]:
        """CPU per generation: the median of CPU_ROUNDS rounds on the same server.

        One round's figure moved by ±25% on this 2-core VM from one run to the next (how busy
        the other core was, whether thread wake-ups found it idle); the median of three keeps
        one unlucky round from deciding a ratio.
        """
        request = chat(token, ratio, model=model)
        await run_load(server.url, request, clients=8, total=64, expect=b"/image/")   # warm up
        rounds = []
        for _ in range(CPU_ROUNDS):
            rounds.append(await measure(server, label, key, request, clients=8,
                                        total=self.plan.cpu_requests, expect=b"/image/",
                                        keep_bodies=200))
        by_cpu = sorted(rounds, key=lambda done: done[0].cpu_ms or 0.0)
        row, bodies = by_cpu[len(by_cpu) // 2]
        row.notes.append("median of " + ", ".join(f"{done[0].cpu_ms or 0:.2f}" for done in rounds)
                         + " ms (rounds in order)")
        self.rows[key] = row
        return [m.group(1).decode() for b in bodies if (m := IMAGE_KEY.search(b))]

    async def get_case(self, key: str, label: str, server, keys: list[str]) -> None:
        if not keys:
            raise RuntimeError(f"{label}: no stored images to serve")
        gets = [Request("GET", f"/image/{k}") for k in keys]
        row, _ = await measure(server, label, key, lambda i: gets[i % len(gets)], clients=16,
                               duration=self.plan.get_window, warmup=1.0, timeout=10)
        self.rows[key] = row

    async def load_case(self, key: str, label: str, server, token: str, stream: bool,
                        model: str = matrix.MODEL) -> Row:
        row, _ = await measure(server, label, key, chat(token, stream=stream, model=model),
                               clients=256, duration=self.plan.window, ramp=2.0, warmup=1.0,
                               timeout=62.0, expect=b"/image/")
        row.ideal = 256 / 2.0
        self.rows[key] = row
        return row

    async def mixed_case(self, server: matrix.Server) -> None:
        """Both loads at once at the same level, 256 clients (128 plain + 128 streaming); the
        figures are the streams'."""
        label = "service: 128 non-stream + 128 stream clients at once, 2 s upstream"
        await server.wait_quiet()
        cpu0 = server.cpu()
        window, budget = self.plan.window, self.plan.window + 80
        with MemorySampler(server) as mem:
            plain, streams = await asyncio.gather(
                run_load(server.url, chat(matrix.API_KEY), clients=128, duration=window,
                         ramp=2.0, warmup=1.0, timeout=62, expect=b"/image/",
                         max_seconds=budget),
                run_load(server.url, chat(matrix.API_KEY, stream=True), clients=128,
                         duration=window, ramp=2.0, warmup=1.0, timeout=62, expect=b"/image/",
                         max_seconds=budget))
        cpu = server.cpu() - cpu0
        summary = streams.summary()
        other = plain.summary()
        answered = len(plain.records) + len(streams.records)
        row = Row("mixed", label, summary, cpu_ms=cpu / answered * 1000 if answered else None,
                  rss_mib=mem.peak_rss / MiB,
                  pss_mib=mem.peak_pss / MiB if mem.peak_pss is not None else None)
        row.ideal = 128 / 2.0
        row.notes.append(f"non-stream side: {other['throughput']:.1f} req/s, p99 "
                         f"{other['latency']['p99']:.3f} s, {other['errors']} errors of "
                         f"{other['requests']}")
        print(f"  {label}: streams {summary['throughput']:.1f} req/s, TTFB p99 "
              f"{summary['ttfb']['p99'] * 1000:.1f} ms, errors {summary['errors']}; "
              f"{row.notes[-1]}", flush=True)
        self.rows["mixed"] = row

    def wanted(self, *keys: str) -> bool:
        return self.only is None or any(key in self.only for key in keys)

    async def run(self) -> None:
        self.upstream = Upstream(self.work)
        await self.upstream.ready()
        with_worker, want = self.peer is not None, self.wanted

        print("upstream 0 s, 1024x1024 JPEG", flush=True)
        await self.upstream.configure(latency=0.0, image="large")
        if want("cpu11", "get"):
            svc = await self.fresh_service()
            keys = await self.cpu_case("cpu11", "service: CPU per generation, 0 s, 1:1", svc,
                                       matrix.API_KEY)
            if want("get"):
                await self.get_case("get", "service: GET /image/<key>, 16 clients", svc, keys)
        if with_worker and want("cpu11", "get"):
            worker = await self.fresh_worker()
            node0 = worker.node_cpu()
            keys = await self.cpu_case("w_cpu11", "Worker: CPU per generation, 0 s, 1:1",
                                       worker, WORKER_KEY, model="flux")
            self.notes.append(f"Miniflare's node process used {worker.node_cpu() - node0:.2f} s "
                              "of CPU during the Worker's CPU case (not counted: not on the "
                              f"request path); its RSS {worker.node_rss_mib():.0f} MiB")
            if want("get"):
                await self.get_case("w_get", "Worker: GET /image/<key>, 16 clients", worker,
                                    keys)
            self.stop_worker()
        for key, ratio, label in (("cpu169", "16:9", "service: same, 16:9 (1024x576)"),
                                  ("cpu32", "3:2", "service: same, 3:2 (768x512)")):
            if want(key):
                svc = await self.fresh_service()
                await self.cpu_case(key, label, svc, matrix.API_KEY, ratio)
        if want("cpuup"):
            await self.upstream.configure(image="small")
            svc = await self.fresh_service()
            await self.cpu_case("cpuup", "service: same, 1:1 from a 512x512 output (enlarge)",
                                svc, matrix.API_KEY)
            await self.upstream.configure(image="large")
        self.stop_service()

        print("upstream 2 s, 1024x1024 JPEG", flush=True)
        await self.upstream.configure(latency=2.0, image="large")
        for key, stream in (("nonstream", False), ("stream", True)):
            if not want(key):
                continue
            kind = "stream" if stream else "non-stream"
            svc = await self.fresh_service()
            await self.load_case(key, f"service: 256 clients, 2 s upstream, {kind}", svc,
                                 matrix.API_KEY, stream)
            self.stop_service()
            if with_worker:
                worker = await self.fresh_worker()
                row = await self.load_case(f"w_{key}", f"Worker: 256 clients, 2 s upstream, "
                                           f"{kind}", worker, WORKER_KEY, stream, model="flux")
                row.notes.append(f"workerd VmHWM {worker.peak_mib():.0f} MiB; node RSS "
                                 f"{worker.node_rss_mib():.0f} MiB (not counted)")
                self.stop_worker()
        if want("mixed"):
            svc = await self.fresh_service()
            await self.mixed_case(svc)
        if want("upmem"):
            await self.upstream.configure(image="small")
            svc = await self.fresh_service()
            await self.load_case("upmem", "service: 256 clients, 2 s, non-stream, 512x512 output "
                                 "enlarged to 1:1", svc, matrix.API_KEY, False)
        self.stop_service()
        await self.upstream.configure(image="large", latency=0.0)
        stats = await self.upstream.stats()
        self.notes.append(f"fake upstream counters: {stats}")


# -------------------------------------------------------------------------------------------
# Report.
# -------------------------------------------------------------------------------------------

def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def judge(rows: dict[str, Row]) -> list[tuple[str, str, bool | None]]:
    """(target, figures, met) for every target of issue 16; met None = not measured."""
    out: list[tuple[str, str, bool | None]] = []

    def value(key: str, what: str) -> float | None:
        row = rows.get(key)
        if row is None:
            return None
        if what == "cpu":
            return row.cpu_ms
        if what == "rss":
            return row.rss_mib
        if what == "rps":
            return float(row.summary["throughput"])
        if what == "p99":
            return float(row.summary["latency"]["p99"])
        if what == "ttfb":
            return float(row.summary["ttfb"]["p99"])
        return float(row.summary["errors"])

    def ratio(target: str, a: float | None, b: float | None, unit: str, limit: float,
              at_most: bool = True) -> None:
        if a is None or not b:
            out.append((target, "not measured", None))
            return
        r = a / b
        out.append((target, f"{a:.{2 if unit == 'ms' else 1}f} vs {b:.{2 if unit == 'ms' else 1}f}"
                    f" {unit} = {r:.2f}x", r <= limit if at_most else r >= limit))

    ratio(f"CPU per generation (0 s, 1:1) ≤ {CPU_RATIO}x the Worker's",
          value("cpu11", "cpu"), value("w_cpu11", "cpu"), "ms", CPU_RATIO)
    for key, name in (("cpu169", "16:9"), ("cpu32", "3:2")):
        ratio(f"{name} answer ≤ {SHAPE_RATIO}x the CPU of a 1:1 answer",
              value(key, "cpu"), value("cpu11", "cpu"), "ms", SHAPE_RATIO)
    ratio(f"enlarged answer (512x512 output, 1:1 asked) ≤ {ENLARGE_RATIO}x the CPU of a 1:1 "
          "answer", value("cpuup", "cpu"), value("cpu11", "cpu"), "ms", ENLARGE_RATIO)
    ratio("enlarging: peak memory at 256 clients no higher than the 1:1 case's (sum of RSS)",
          value("upmem", "rss"), value("nonstream", "rss"), "MiB", 1.0)
    for key, name, want in (("nonstream", "non-stream", NONSTREAM_RATIO),
                            ("stream", "stream", STREAM_RATIO)):
        ratio(f"256 clients, 2 s, {name}: ≥ {want}x the Worker's req/s",
              value(key, "rps"), value(f"w_{key}", "rps"), "req/s", want, at_most=False)
        errors, p99, row = value(key, "errors"), value(key, "p99"), rows.get(key)
        if row is not None and errors is not None and p99 is not None:
            out.append((f"256 clients, 2 s, {name}: zero errors",
                        f"{errors:.0f} of {row.summary['requests']}", errors == 0))
            out.append((f"256 clients, 2 s, {name}: p99 < {P99_LIMIT} s", f"{p99:.3f} s",
                        p99 < P99_LIMIT))
    ttfb, alone = value("mixed", "ttfb"), value("stream", "ttfb")
    target = f"stream first byte p99 ≤ {TTFB_LIMIT * 1000:.0f} ms with both loads running"
    if ttfb is None:
        out.append((target, "not measured", None))
    else:
        out.append((target, f"{ttfb * 1000:.1f} ms (streams alone: "
                    f"{'–' if alone is None else f'{alone * 1000:.1f}'} ms)", ttfb <= TTFB_LIMIT))
    ratio(f"GET /image, 16 clients: ≥ {GET_RATIO}x the Worker's req/s",
          value("get", "rps"), value("w_get", "rps"), "req/s", GET_RATIO, at_most=False)
    ratio(f"peak RSS at 256 clients ≤ {RSS_RATIO}x the Worker's workerd (service: sum of RSS)",
          value("nonstream", "rss"), value("w_nonstream", "rss"), "MiB", RSS_RATIO)
    return out


def _ms(v: float) -> str:
    return f"{v * 1000:.0f}" if v >= 0.1 else f"{v * 1000:.1f}"


def markdown(rows: dict[str, Row], header: dict, notes: list[str]) -> str:
    lines = [f"Command: `{header['command']}`  ",
             f"Run: {header['date']}, {header['duration']:.0f} s; machine: {header['machine']}  ",
             f"Load average (1, 5, 15 min) before the run: {header['loadavg']}; after: "
             f"{header['loadavg_after']}  ",
             f"Service: {header['service']}; code at commit {header['code']}  ",
             f"Worker: {header['worker']}  ",
             "Upstream: bench/upstream.py (lenient fake Workers AI, 1024x1024 JPEG of 150 KB) for "
             "both." + (" **--quick run: short windows, not for comparison.**"
                        if header["quick"] else ""),
             "",
             "| case | service | Worker | ratio |", "|---|---|---|---:|"]
    r = rows.get

    def pair(name: str, key: str, fmt, value) -> None:
        sv, wk = r(key), r(f"w_{key}")
        if sv is None:
            return
        a = value(sv)
        b = value(wk) if wk else None
        ratio = f"{a / b:.2f}x" if b else "–"
        lines.append(f"| {name} | {fmt(a, sv)} | {fmt(b, wk) if b is not None else '–'} | "
                     f"{ratio} |")

    pair("CPU per generation, 0 s, 1:1 (ms)", "cpu11", lambda v, row: f"{v:.2f}",
         lambda row: row.cpu_ms)
    for key, name in (("nonstream", "non-stream"), ("stream", "stream")):
        pair(f"256 clients, 2 s, {name}: req/s", key,
             lambda v, row: (f"{v:.1f} (p99 {_ms(row.summary['latency']['p99'])} ms, first byte "
                             f"p99 {_ms(row.summary['ttfb']['p99'])} ms, "
                             f"{row.summary['errors']} errors)"),
             lambda row: row.summary["throughput"])
    pair("GET /image, 16 clients: req/s", "get",
         lambda v, row: f"{v:.0f} (p99 {_ms(row.summary['latency']['p99'])} ms)",
         lambda row: row.summary["throughput"])
    pair("peak RSS at 256 clients, non-stream (MiB)", "nonstream",
         lambda v, row: f"{v:.0f}" + (f" (PSS {row.pss_mib:.0f})" if row.pss_mib else ""),
         lambda row: row.rss_mib)
    base = r("cpu11")
    if base and base.cpu_ms:
        for key, name in (("cpu169", "16:9 answer"), ("cpu32", "3:2 answer"),
                          ("cpuup", "1:1 answer enlarged from 512x512")):
            row = r(key)
            if row and row.cpu_ms:
                lines.append(f"| CPU per generation, {name} (ms; ratio to the 1:1 answer) | "
                             f"{row.cpu_ms:.2f} | – | {row.cpu_ms / base.cpu_ms:.2f}x |")
    mixed, upmem, plain = r("mixed"), r("upmem"), r("nonstream")
    if mixed is not None:
        m = mixed.summary
        lines.append(f"| 128 non-stream + 128 stream clients at once: streams' first byte p99 "
                     f"| {_ms(m['ttfb']['p99'])} ms ({m['errors']} errors) | – | – |")
    if upmem is not None and plain is not None and upmem.rss_mib and plain.rss_mib:
        lines.append(f"| peak RSS at 256 clients, enlarging 512x512 outputs (MiB; ratio to 1:1) "
                     f"| {upmem.rss_mib:.0f} | – | {upmem.rss_mib / plain.rss_mib:.2f}x |")
    lines += ["", "Targets (issue 16):", ""]
    for target, figures, met in judge(rows):
        mark = "not measured" if met is None else ("**met**" if met else "**MISSED**")
        lines.append(f"- {mark}: {target}: {figures}")
    lines += ["", "All cases:", "",
              "| case | req/s | p50 ms | p99 ms | first byte p99 ms | errors | CPU ms/req | "
              "peak RSS MiB | machine busy | notes |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for row in rows.values():
        s = row.summary
        lines.append(f"| {row.label} | {s['throughput']:.1f} | {_ms(s['latency']['p50'])} | "
                     f"{_ms(s['latency']['p99'])} | {_ms(s['ttfb']['p99'])} | "
                     f"{s['errors']}/{s['requests']} | "
                     f"{'–' if row.cpu_ms is None else f'{row.cpu_ms:.2f}'} | "
                     f"{'–' if row.rss_mib is None else f'{row.rss_mib:.0f}'} | "
                     f"{'–' if row.machine is None else f'{row.machine:.0%}'} | "
                     f"{'; '.join(row.notes)} |")
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


async def amain(args: argparse.Namespace) -> int:
    plan = QUICK if args.quick else FULL
    extra = dict(e.split("=", 1) for e in args.env)
    started = time.time()
    loadavg = _loadavg().split()
    work = Path(tempfile.mkdtemp(prefix="flux-compare-"))
    peer = None
    worker_facts = "not run (no --worker-src)"
    if args.worker_src:
        scratch = Path(args.scratch)
        scratch.mkdir(parents=True, exist_ok=True)
        facts = setup_worker(Path(args.peer_dir), Path(args.worker_src), scratch)
        peer = (Path(args.peer_dir), scratch)
        worker_facts = (f"flux-api-worker {facts.get('PEER_WORKER_COMMIT', '?')[:12]} "
                        f"(src/flux-api-worker_en.js sha256 "
                        f"{facts.get('PEER_WORKER_SHA256', '?')[:16]}…), unmodified, "
                        f"Miniflare {facts.get('PEER_MINIFLARE_VERSION', '?')}, "
                        f"{facts.get('PEER_WORKERD_VERSION', '?')}, node "
                        f"{facts.get('PEER_NODE_VERSION', '?')}; figures are workerd's")
    bench = Compare(plan, work, extra, peer, set(args.only.split(",")) if args.only else None)
    try:
        async with asyncio.timeout(180 if plan.quick else 900):
            await bench.run()
    except TimeoutError:
        print("the run exceeded its budget; reporting what was measured", file=sys.stderr)
    finally:
        bench.close()
    header = {"command": "python -m bench.compare " + " ".join(args.argv),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
              "duration": time.time() - started, "machine": matrix.machine_info(),
              "loadavg": " ".join(loadavg), "loadavg_after": _loadavg(),
              "service": matrix.service_settings(extra), "code": matrix.code_version(),
              "worker": worker_facts, "quick": plan.quick}
    report = markdown(bench.rows, header, bench.notes)
    print()
    print(report)
    if args.out:
        Path(args.out).write_text(report, encoding="utf-8")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"header": header, "rows": [row.__dict__ for row in bench.rows.values()],
             "targets": judge(bench.rows)}, indent=1, default=str), encoding="utf-8")
    if args.keep:
        print(f"work directory kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if bench.rows else 1


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description="the service beside the original Worker")
    parser.add_argument("--worker-src", default=None, metavar="GIT_DIR",
                        help="git dir or checkout of snakeying/flux-api-worker (outside this repo)")
    parser.add_argument("--peer-dir", default=str(PEER_DIR),
                        help="the Miniflare runner (setup.sh, start.sh); default ../shared/peer")
    parser.add_argument("--scratch",
                        default=os.path.join(tempfile.gettempdir(), "flux-bench-peer"),
                        help="where npm installs Miniflare and the Worker is extracted")
    parser.add_argument("--quick", action="store_true", help="short windows (smoke run)")
    parser.add_argument("--out", default=None, help="also write the Markdown report here")
    parser.add_argument("--json", default=None, help="write the raw figures as JSON here")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra service variable (e.g. WEB_CONCURRENCY=1); repeatable")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument("--only", default=None, metavar="CASES",
                        help="comma-separated subset: cpu11,get,cpu169,cpu32,cpuup,nonstream,"
                             "stream,mixed,upmem (for tuning runs)")
    args = parser.parse_args(argv)
    args.argv = argv
    if args.worker_src and ROOT in Path(args.scratch).resolve().parents:
        parser.error("--scratch must be outside the repository")
    sys.exit(asyncio.run(amain(args)))


if __name__ == "__main__":
    main()
