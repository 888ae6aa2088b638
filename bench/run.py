"""The benchmark matrix of flux-worker (issue 5), in one command.

    .venv/bin/python -m bench.run [--quick] [--out docs/benchmarks-latest.md] [--profile DIR]

Starts the strict fake Cloudflare (harness/fakes/cloudflare/) under its own small gunicorn at a
set upstream latency, answering a 150 KB JPEG, and a fresh service for every case exactly as
deployed: `gunicorn -c gunicorn.conf.py -b 127.0.0.1:PORT app:app`, with CF_* pointing at the
fake, disk storage in a temporary directory and LOG_LEVEL=WARNING. WEB_CONCURRENCY,
GUNICORN_THREADS and the other service variables pass through from the environment (or
`--env NAME=VALUE`), so a tuning can be measured without editing anything.

Cases: (1) 2 s upstream, 256 clients, non-stream; (2) the same streamed (TTFB = the role chunk);
(3) 0 s upstream, server CPU per chat request, 1:1; (4) the same at 16:9 (and 3:2), the
difference being the crop/scale cost; (5) GET /image/<key> (150 KB) at 16 clients, and
conditional GETs (304); (6) peak memory (sum of RSS, and of PSS, of the master and every worker,
sampled every 100 ms) in every load case; (7) scaling with concurrency (16/64/256/512 at 2 s) and
latency (0/2/10 s at 64 clients). Server CPU comes from /proc/<pid>/stat (utime+stime of every
server process, plus reaped children) before and after, divided by the requests answered.

Throughput is measured in a steady-state window: clients start spread over one upstream latency
(so they do not move in lock-step), warm up, and only completions inside the window count.
Everything runs on 127.0.0.1, every wait is bounded, and the whole matrix takes 5-6 minutes
(`--quick`: about 1 minute, shorter windows and fewer scaling points; budgets of 15 and 3 minutes
stop a run that hangs). `--only`, `--env` and `--app` make tuning runs; `--profile DIR` samples
the service with py-spy (GIL holders only) during one more run of each CPU case.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from harness.ports import free_port

from . import loadgen
from .loadgen import Request, fetch, json_post, run_load

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
MiB = 1 << 20

API_KEY = "sk-bench-0001"
CF_ACCOUNT = "test-account"
CF_TOKEN = "test-cf-token"
IMAGE_KB = 150
MODEL = "flux-1-schnell"
PROMPT = "a lighthouse at dusk, dramatic clouds"
IMAGE_LINK = re.compile(rb"/image/([A-Za-z0-9_-]{22,64})")
# Variables of the service that may be passed through from the environment to tune it.
PASS_THROUGH = ("WEB_CONCURRENCY", "GUNICORN_THREADS", "MAX_INFLIGHT", "UPSTREAM_TIMEOUT",
                "UPSTREAM_RETRIES", "STORAGE_MAX_BYTES", "IMAGE_EXPIRATION", "RATE_LIMIT")

# The issue's figures for the original Worker (workerd, 2 cores, 150 KB JPEG upstream).
REF = {
    "nonstream": {"rps": 114.0, "p99": 2.6},
    "stream": {"rps": 85.0, "p99": 3.2, "ttfb": 2.0},
    "cpu_ms": 3.3,
    "get_rps": 2750.0,
    "mem_mib": 350.0,
}
IDEAL_SHARE = 0.94
P99_TARGET = 2.2
TTFB_TARGET = 0.050
MEM_TARGET_MIB = 300.0


# -------------------------------------------------------------------------------------------
# Processes: the fake upstream, the service, and what /proc says about them.
# -------------------------------------------------------------------------------------------

def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("latin-1")
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    return raw[raw.rindex(")") + 2:].split()


def children_of(pid: int) -> list[int]:
    """Direct children of `pid` (scanning /proc: no /proc/<pid>/task/*/children here)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields and int(fields[1]) == pid:
                found.append(int(entry))
    return found


def cpu_times(pids: list[int], master: int) -> tuple[float, float]:
    """(user, system) seconds of `pids`, plus the reaped children's of the master (a worker
    that died and was replaced)."""
    user = system = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields:
            # Fields 14-17 of stat (utime stime cutime cstime) are 11-14 after pid and comm.
            user += int(fields[11])
            system += int(fields[12])
            if pid == master:
                user += int(fields[13])
                system += int(fields[14])
    return user / CLK_TCK, system / CLK_TCK


def rss_pss(pid: int) -> tuple[int, int | None]:
    """Resident and proportional set size in bytes (PSS None when smaps_rollup is unreadable)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            rss = int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0, None
    pss = None
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    pss = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    return rss, pss


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    with open("/proc/stat", "rb") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    return total - idle, total


class Server:
    """A gunicorn we started: its master, its workers, and stopping it for good."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path,
                 url: str):
        self.name, self.url, self.log_path = name, url, log_path
        with open(log_path, "wb") as out:
            self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self._workers: list[int] = []

    @property
    def pid(self) -> int:
        return self.proc.pid

    def pids(self, refresh: bool = True) -> list[int]:
        if refresh or not self._workers:
            self._workers = children_of(self.pid)
        return [self.pid, *self._workers]

    def cpu(self) -> float:
        return sum(self.cpu_split())

    def cpu_split(self) -> tuple[float, float]:
        return cpu_times(self.pids(), self.pid)

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    async def wait_ready(self, path: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n"
                                   f"{self.log()[-3000:]}")
            try:
                if (await fetch(self.url + path, timeout=2.0)).status == 200:
                    return
            except (OSError, TimeoutError, loadgen.ProtocolError):
                pass
            await asyncio.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not become ready in {timeout:.0f} s:\n"
                           f"{self.log()[-3000:]}")

    async def wait_quiet(self, settle: float = 0.3, timeout: float = 10.0) -> None:
        """Wait until the server's CPU time stops moving (workers booted, warm-up done)."""
        deadline = time.monotonic() + timeout
        last = self.cpu()
        while time.monotonic() < deadline:
            await asyncio.sleep(settle)
            now = self.cpu()
            if now - last < 0.011:
                return
            last = now

    def stop(self) -> None:
        """Quick shutdown (SIGQUIT: nothing in flight needs to finish), then SIGKILL."""
        workers = children_of(self.pid) if self.proc.poll() is None else []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for pid in workers:                       # only the workers this master had
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _base_env(home: Path) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
            "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}


async def start_fake(work: Path, latency: float, threads: int) -> Server:
    """The fake Cloudflare under its own small gunicorn config (not the project's)."""
    port = free_port()
    conf = work / f"fake-gunicorn-{port}.conf.py"
    conf.write_text(
        f"bind = ['127.0.0.1:{port}']\nworkers = 1\nworker_class = 'gthread'\n"
        f"threads = {threads}\nbacklog = 2048\nkeepalive = 75\ntimeout = 120\n"
        "accesslog = None\nerrorlog = '-'\nloglevel = 'warning'\n"
        "control_socket_disable = True\n")
    app = f"harness.fakes.cloudflare:make_app(latency={latency!r}, image_kb={IMAGE_KB})"
    fake = Server(f"fake cloudflare (latency {latency:g} s)",
                  [PYTHON, "-m", "gunicorn", "-c", str(conf), app], _base_env(work),
                  work / f"fake-{port}.log", f"http://127.0.0.1:{port}")
    await fake.wait_ready("/_fake/health")
    return fake


async def warm_fake(fake: Server) -> None:
    """Draw and cache the fake's 150 KB image once (a bisection of JPEG encodes)."""
    req = json_post(f"/client/v4/accounts/{CF_ACCOUNT}/ai/run/@cf/black-forest-labs/"
                    "flux-1-schnell", {"prompt": "warm up"}, token=CF_TOKEN)
    resp = await fetch(fake.url, req, timeout=60)
    if resp.status != 200:
        raise RuntimeError(f"the fake answered {resp.status} to a warm-up: {resp.body[:300]!r}")


def service_env(home: Path, fake: Server, store: Path, extra: dict[str, str]) -> dict[str, str]:
    env = _base_env(home)
    env.update({"API_KEY": API_KEY, "CF_ACCOUNT_ID": CF_ACCOUNT, "CF_API_TOKEN": CF_TOKEN,
                "CF_API_BASE": fake.url + "/client/v4", "STORAGE_URL": f"disk://{store}",
                "LOG_LEVEL": "WARNING"})
    env.update({k: os.environ[k] for k in PASS_THROUGH if k in os.environ})
    env.update(extra)
    return env


async def start_service(work: Path, fake: Server, store: Path, extra: dict[str, str],
                        app: str = "app:app") -> Server:
    port = free_port()
    home = work / f"home-{port}"
    home.mkdir()
    svc = Server("flux-worker", [PYTHON, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-b",
                                 f"127.0.0.1:{port}", app],
                 service_env(home, fake, store, extra), work / f"service-{port}.log",
                 f"http://127.0.0.1:{port}")
    await svc.wait_ready("/healthz")
    return svc


class MemorySampler:
    """Every 100 ms: the sum of RSS (and PSS) over the server's processes; keeps the peak."""

    def __init__(self, server: Server, interval: float = 0.1):
        self.server, self.interval = server, interval
        self.peak_rss = 0
        self.peak_pss: int | None = None
        self.samples = 0
        self._task: asyncio.Task | None = None

    def sample(self, refresh: bool) -> None:
        rss_sum, pss_sum = 0, 0
        for pid in self.server.pids(refresh):
            rss, pss = rss_pss(pid)
            rss_sum += rss
            pss_sum = None if pss is None or pss_sum is None else pss_sum + pss
        self.peak_rss = max(self.peak_rss, rss_sum)
        if pss_sum is not None:
            self.peak_pss = max(self.peak_pss or 0, pss_sum)
        self.samples += 1

    async def _run(self) -> None:
        tick = 0
        while True:
            self.sample(refresh=tick % 10 == 0)    # the process list once a second
            tick += 1
            await asyncio.sleep(self.interval)

    def __enter__(self) -> "MemorySampler":
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc) -> None:
        if self._task is not None:
            self._task.cancel()
        self.sample(refresh=True)


# -------------------------------------------------------------------------------------------
# Cases.
# -------------------------------------------------------------------------------------------

@dataclass
class Row:
    """One line of the results table."""

    key: str
    label: str
    summary: dict
    cpu_ms: float | None = None          # server CPU per answered request
    cores: float | None = None           # server CPU seconds per wall second
    machine: float | None = None         # whole machine busy share (0..1) during the run
    rss_mib: float | None = None
    pss_mib: float | None = None
    ideal: float | None = None           # clients / upstream latency, for chat at latency > 0
    notes: list[str] = field(default_factory=list)


def chat_request(ratio: str = "", stream: bool = False) -> Request:
    content = f"{PROMPT} {ratio}".strip()
    body: dict = {"model": MODEL, "messages": [{"role": "user", "content": content}]}
    if stream:
        body["stream"] = True
    return json_post("/v1/chat/completions", body, token=API_KEY)


async def measure(svc: Server, label: str, key: str, requests, *, clients: int,
                  duration: float | None = None, total: int | None = None, warmup: float = 0.0,
                  ramp: float = 0.0, timeout: float = 60.0, ok_status=(200,),
                  expect: bytes | None = None, keep_bodies: int = 0) -> tuple[Row, list[bytes]]:
    """Run one load against `svc` while sampling its memory and CPU."""
    await svc.wait_quiet()
    (user0, sys0), busy0 = svc.cpu_split(), machine_busy()
    with MemorySampler(svc) as mem:
        result = await run_load(svc.url, requests, clients=clients, duration=duration,
                                total=total, warmup=warmup, ramp=ramp, timeout=timeout,
                                ok_status=ok_status, expect=expect, keep_bodies=keep_bodies,
                                max_seconds=(ramp + warmup + (duration or 0) + timeout + 5
                                             if duration else 300))
    user1, sys1 = svc.cpu_split()
    user, system = user1 - user0, sys1 - sys0
    cpu = user + system
    busy1 = machine_busy()
    summary = result.summary()
    answered = len(result.records)
    row = Row(key, label, summary,
              cpu_ms=cpu / answered * 1000 if answered else None,
              cores=cpu / result.wall if result.wall else None,
              machine=(busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]),
              rss_mib=mem.peak_rss / MiB,
              pss_mib=mem.peak_pss / MiB if mem.peak_pss is not None else None)
    if answered:
        row.notes.append(f"server CPU user {user / answered * 1000:.2f} + system "
                         f"{system / answered * 1000:.2f} ms/req")
    row.notes.append(f"loadgen CPU {summary['loadgen_cpu_s'] / result.wall * 100:.0f}% of a core")
    errors = _log_errors(svc)
    if errors:
        row.notes.append(f"service log: {errors}")
    print(f"  {label}: {loadgen.format_summary(summary)}\n    server CPU {cpu:.2f} s "
          f"({row.cpu_ms or 0:.2f} ms/req, {row.cores or 0:.2f} cores), machine "
          f"{row.machine * 100:.0f}% busy, peak RSS {row.rss_mib:.0f} MiB"
          + (f", PSS {row.pss_mib:.0f} MiB" if row.pss_mib is not None else ""), flush=True)
    return row, result.bodies


def _log_errors(svc: Server) -> str:
    text = svc.log()
    counts = collections.Counter()
    for line in text.splitlines():
        for level in ("CRITICAL", "ERROR", "Traceback"):
            if level in line:
                counts[level] += 1
    return ", ".join(f"{n} {k}" for k, n in counts.items())


@dataclass
class Plan:
    """Durations of one matrix (full or --quick)."""

    quick: bool
    window: float            # seconds measured at 2 s upstream latency
    scale_window: float      # the scaling points at 2 s
    cpu_requests: int        # requests of a CPU-per-request case
    get_window: float
    concurrencies: tuple[int, ...]
    latencies: tuple[float, ...]


FULL = Plan(False, 30.0, 15.0, 1500, 12.0, (16, 64, 256, 512), (0.0, 2.0, 10.0))
QUICK = Plan(True, 5.0, 4.0, 200, 3.0, (16, 256), (0.0, 2.0))


class Bench:
    """Runs the matrix, owning every process it starts."""

    def __init__(self, plan: Plan, work: Path, extra_env: dict[str, str],
                 profile_dir: Path | None, only: set[str] | None = None):
        self.plan, self.work, self.extra_env, self.only = plan, work, extra_env, only
        self.app = "app:app"
        self.profile_dir = profile_dir
        self.rows: dict[str, Row] = {}
        self.fake: Server | None = None
        self.service: Server | None = None
        self.profiles: dict[str, str] = {}
        self._store_keys: list[str] = []            # images made by case 3, served in case 5
        self._store: Path | None = None

    # -- process management -------------------------------------------------------------------

    async def use_fake(self, latency: float) -> None:
        if self.fake is not None:
            self.fake.stop()
        self.fake = await start_fake(self.work, latency, threads=640)
        if latency <= 2:              # at 10 s the ramp absorbs the first draw
            await warm_fake(self.fake)

    async def fresh_service(self, store: Path | None = None) -> Path:
        if self.service is not None:
            self.service.stop()
            self.service = None
        if store is None:
            store = Path(tempfile.mkdtemp(prefix="store-", dir=self.work))
        self.service = await start_service(self.work, self.fake, store, self.extra_env, self.app)
        return store

    def close(self) -> None:
        for server in (self.service, self.fake):
            if server is not None:
                server.stop()

    # -- the matrix ---------------------------------------------------------------------------

    async def chat_load(self, key: str, label: str, *, clients: int, latency: float,
                        window: float, stream: bool = False) -> Row:
        store = await self.fresh_service()
        ramp = latency if latency > 0 else 0.0
        warm = 1.0 if latency > 0 else 2.0
        row, _ = await measure(self.service, label, key, chat_request(stream=stream),
                               clients=clients, duration=window, ramp=ramp, warmup=warm,
                               timeout=latency + 60, expect=b"/image/")
        row.ideal = clients / latency if latency > 0 else None
        shutil.rmtree(store, ignore_errors=True)
        self.rows[key] = row
        return row

    async def cpu_case(self, key: str, label: str, ratio: str, clients: int = 8) -> Row:
        """Server CPU per chat request at 0 s upstream latency (warm service, exact count)."""
        store = await self.fresh_service()
        request = chat_request(ratio)
        await run_load(self.service.url, request, clients=clients, total=max(50, clients * 8))
        row, bodies = await measure(self.service, label, key, request, clients=clients,
                                    total=self.plan.cpu_requests, expect=b"/image/",
                                    keep_bodies=200)
        self.rows[key] = row
        if self.profile_dir is not None:
            await self.profile(key, request, clients)
        self._store_keys = [m.group(1).decode() for b in bodies if (m := IMAGE_LINK.search(b))]
        self._store = store
        return row

    async def profile(self, key: str, request: Request, clients: int) -> None:
        """Sample every server process with py-spy during one more run of the same load."""
        py_spy = shutil.which("py-spy") or str(Path(PYTHON).with_name("py-spy"))
        if not Path(py_spy).exists():
            print("  (py-spy not found: no profile)")
            return
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        out = self.profile_dir / f"{key}.txt"
        spy = subprocess.Popen([py_spy, "record", "--pid", str(self.service.pid),
                                "--subprocesses", "--nonblocking", "--gil", "--rate", "200",
                                "--format", "raw", "--output", str(out), "--duration", "30"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        await asyncio.sleep(1.0)
        await run_load(self.service.url, request, clients=clients, duration=8.0)
        spy.send_signal(signal.SIGINT)
        try:
            _, err = await asyncio.to_thread(spy.communicate, timeout=30)
        except subprocess.TimeoutExpired:
            spy.kill()
            err = b""
        if out.exists():
            self.profiles[key] = str(out)
            print(f"  profile: {out}")
        else:
            print(f"  py-spy failed: {err.decode(errors='replace')[-500:]}")

    async def get_cases(self) -> None:
        keys = self._store_keys
        if not keys or self._store is None:
            raise RuntimeError("no stored images to serve (case 3 made none)")
        await self.fresh_service(self._store)
        url = self.service.url
        first = await fetch(url, Request("GET", f"/image/{keys[0]}"))
        etag = first.headers.get("etag", "")
        cond = await fetch(url, Request("GET", f"/image/{keys[0]}", (("If-None-Match", etag),)))
        gets = [Request("GET", f"/image/{k}") for k in keys]
        row, _ = await measure(self.service, "5. GET /image/<key> 150 KB, 16 clients", "get",
                               lambda i: gets[i % len(gets)], clients=16,
                               duration=self.plan.get_window, warmup=1.0, timeout=10)
        row.notes.append(f"image {len(first.body) / 1024:.0f} KB "
                         f"{first.headers.get('content-type')}, ETag {etag or 'missing'}, "
                         f"conditional GET -> {cond.status}")
        self.rows["get"] = row
        conds = [Request("GET", f"/image/{k}", (("If-None-Match", f'"{k}"'),)) for k in keys]
        row, _ = await measure(self.service, "5b. conditional GET (If-None-Match), 16 clients",
                               "get304", lambda i: conds[i % len(conds)], clients=16,
                               duration=self.plan.get_window / 2, warmup=0.5, timeout=10,
                               ok_status=(304,))
        self.rows["get304"] = row
        self.conditional_status = cond.status
        shutil.rmtree(self._store, ignore_errors=True)

    def wanted(self, key: str) -> bool:
        return self.only is None or key in self.only

    async def run(self) -> None:
        p, want = self.plan, self.wanted
        scale = [(f"c{c}", c) for c in p.concurrencies if c != 256]
        if want("nonstream") or want("stream") or any(want(k) for k, _ in scale):
            print("fake upstream latency 2 s", flush=True)
            await self.use_fake(2.0)
        if want("nonstream"):
            await self.chat_load("nonstream", "1. 2 s upstream, 256 clients, non-stream",
                                 clients=256, latency=2.0, window=p.window)
        if want("stream"):
            await self.chat_load("stream", "2. 2 s upstream, 256 clients, stream",
                                 clients=256, latency=2.0, window=p.window, stream=True)
        for key, c in scale:
            if want(key):
                await self.chat_load(key, f"7. 2 s upstream, {c} clients", clients=c,
                                     latency=2.0, window=p.scale_window)
        zero = ["cpu11", "cpu169", "get", "get304", "l0"] + ([] if p.quick else ["cpu32"])
        if any(want(k) for k in zero):
            print("fake upstream latency 0 s", flush=True)
            await self.use_fake(0.0)
        if want("cpu11") or want("get") or want("get304"):   # case 5 serves case 3's images
            await self.cpu_case("cpu11", "3. 0 s upstream, CPU per chat request, 1:1", "")
        keys, store = self._store_keys, self._store
        for key, label, ratio in (
                ("cpu169", "4. same, 16:9 (crop 1024x1024 -> 1024x576)", "16:9"),
                ("cpu32", "4b. same, 3:2 (crop + scale -> 768x512)", "3:2")):
            if want(key) and not (p.quick and key == "cpu32"):
                await self.cpu_case(key, label, ratio)
                shutil.rmtree(self._store, ignore_errors=True)
        self._store_keys, self._store = keys, store
        if want("get") or want("get304"):
            await self.get_cases()
        if 0.0 in p.latencies and want("l0"):
            await self.chat_load("l0", "7. 0 s upstream, 64 clients", clients=64, latency=0.0,
                                 window=p.scale_window)
        if 10.0 in p.latencies and want("l10"):
            print("fake upstream latency 10 s", flush=True)
            await self.use_fake(10.0)
            await self.chat_load("l10", "7. 10 s upstream, 64 clients", clients=64,
                                 latency=10.0, window=30.0)


# -------------------------------------------------------------------------------------------
# Report.
# -------------------------------------------------------------------------------------------

def _ms(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v * 1000:.0f}" if v >= 0.1 else f"{v * 1000:.1f}"


def _num(v: float | None, fmt: str = ".1f") -> str:
    return "–" if v is None else format(v, fmt)


def judge(rows: dict[str, Row]) -> list[tuple[str, str, str, bool | None]]:
    """(target, measured, reference, met) for every target of the issue."""
    ideal = 256 / 2.0
    out = []

    def add(target, measured, ref, met):
        out.append((target, measured, ref, met))

    for key, name in (("nonstream", "non-stream"), ("stream", "stream")):
        r = rows.get(key)
        if r is None:
            continue
        s = r.summary
        add(f"{name}: throughput ≥ {IDEAL_SHARE:.0%} of ideal {ideal:.0f} req/s "
            f"(≥ {ideal * IDEAL_SHARE:.1f})",
            f"{s['throughput']:.1f} req/s ({s['throughput'] / ideal:.1%} of ideal)",
            f"{REF[key]['rps']:.0f} req/s", s["throughput"] >= ideal * IDEAL_SHARE)
        add(f"{name}: p99 < {P99_TARGET} s", f"{s['latency']['p99']:.3f} s",
            f"{REF[key]['p99']} s", s["latency"]["p99"] < P99_TARGET)
        add(f"{name}: zero errors", f"{s['errors']} of {s['requests']}", "–", s["errors"] == 0)
        if key == "stream":
            add(f"stream: TTFB p99 < {TTFB_TARGET * 1000:.0f} ms",
                f"{s['ttfb']['p99'] * 1000:.1f} ms", "≈ 2 s (first byte with the image)",
                s["ttfb"]["p99"] < TTFB_TARGET)
    r = rows.get("cpu11")
    if r is not None and r.cpu_ms is not None:
        add(f"server CPU per generation (0 s, 1:1) ≤ {REF['cpu_ms']} ms",
            f"{r.cpu_ms:.2f} ms", f"{REF['cpu_ms']} ms", r.cpu_ms <= REF["cpu_ms"])
    r = rows.get("get")
    if r is not None:
        rps = r.summary["throughput"]
        add(f"GET /image 150 KB, 16 clients ≥ {REF['get_rps']:.0f} req/s",
            f"{rps:.0f} req/s", f"{REF['get_rps']:.0f} req/s", rps >= REF["get_rps"])
    r304 = rows.get("get304")
    if r304 is not None:
        add("conditional GET answers 304",
            f"{'304' if r304.summary['errors'] == 0 and r304.summary['requests'] else 'not 304'}"
            f" ({r304.summary['throughput']:.0f} req/s)", "–",
            r304.summary["errors"] == 0 and r304.summary["requests"] > 0)
    r = rows.get("nonstream")
    if r is not None:
        add(f"peak memory at 256 clients < {MEM_TARGET_MIB:.0f} MiB (RSS sum, case 1)",
            f"RSS {r.rss_mib:.0f} MiB, PSS {_num(r.pss_mib, '.0f')} MiB",
            f"{REF['mem_mib']:.0f} MiB", r.rss_mib < MEM_TARGET_MIB)
    r, r169 = rows.get("cpu11"), rows.get("cpu169")
    if r is not None and r169 is not None and r.cpu_ms and r169.cpu_ms:
        extra = ""
        r32 = rows.get("cpu32")
        if r32 is not None and r32.cpu_ms:
            extra = f"; 3:2 (crop + scale) {r32.cpu_ms - r.cpu_ms:+.2f} ms"
        add("CPU of cropping/scaling to a non-square size",
            f"16:9 {r169.cpu_ms - r.cpu_ms:+.2f} ms per image{extra}", "–", None)
    return out


def _ref_for(row: Row) -> tuple[str, str]:
    """(original Worker's figure, ratio) for the table."""
    s = row.summary
    ref, ratio = "", ""
    if row.key in ("nonstream", "stream"):
        r = REF[row.key]
        ref = f"{r['rps']:.0f} req/s, p99 {r['p99']} s"
        ratio = (f"{s['throughput'] / r['rps']:.2f}× req/s, "
                 f"p99 {s['latency']['p99'] / r['p99']:.2f}×")
        if row.key == "nonstream" and row.rss_mib:
            ref += f"; {REF['mem_mib']:.0f} MiB"
            ratio += f"; mem {row.rss_mib / REF['mem_mib']:.2f}×"
        if row.key == "stream":
            ref += ", TTFB ≈ 2 s"
    elif row.key == "cpu11" and row.cpu_ms:
        ref, ratio = f"{REF['cpu_ms']} ms CPU", f"{row.cpu_ms / REF['cpu_ms']:.2f}× CPU"
    elif row.key == "get":
        ref, ratio = f"{REF['get_rps']:.0f} req/s", f"{s['throughput'] / REF['get_rps']:.2f}×"
    if row.ideal:
        ratio += ("; " if ratio else "") + (f"{s['throughput'] / row.ideal:.0%} of ideal "
                                           f"{row.ideal:.1f} req/s")
    return ref, ratio


def markdown(rows: dict[str, Row], plan: Plan, header: dict) -> str:
    lines = [f"Command: `{header['command']}`  ",
             f"Run: {header['date']}, {header['duration']:.0f} s; machine: {header['machine']}  ",
             f"Service: {header['service']}; code at commit {header['code']}  ",
             f"Upstream: fake Cloudflare (harness/fakes/cloudflare/) under gunicorn, 1 gthread "
             f"worker, {IMAGE_KB} KB JPEG 1024x1024 from flux-1-schnell; storage disk:// (tmp)."
             + (" **--quick run: short windows, not for comparison.**" if plan.quick else ""),
             "",
             "| case | req/s | p50 ms | p90 ms | p99 ms | TTFB p99 ms | errors | server CPU "
             "ms/req | server cores | machine busy | peak RSS (PSS) MiB | original Worker | "
             "ratio |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    order = ["nonstream", "stream", "cpu11", "cpu169", "cpu32", "get", "get304", "c16", "c64",
             "c512", "l0", "l10"]
    for row in sorted(rows.values(), key=lambda r: order.index(r.key) if r.key in order else 99):
        s = row.summary
        lat, ttfb = s["latency"], s["ttfb"]
        ref, ratio = _ref_for(row)
        mem = f"{row.rss_mib:.0f} ({_num(row.pss_mib, '.0f')})" if row.rss_mib else "–"
        lines.append(
            f"| {row.label} | {s['throughput']:.1f} | {_ms(lat['p50'])} | {_ms(lat['p90'])} | "
            f"{_ms(lat['p99'])} | {_ms(ttfb['p99'])} | {s['errors']}/{s['requests']} | "
            f"{_num(row.cpu_ms, '.2f')} | {_num(row.cores, '.2f')} | "
            f"{_num(row.machine * 100 if row.machine is not None else None, '.0f')}% | {mem} | "
            f"{ref} | {ratio} |")
    lines += ["", "Server CPU is utime+stime of the master and every worker (/proc/<pid>/stat) "
              "per answered request: exact in cases 3-4 (a fixed request count on a warm "
              "service), approximate in windowed cases (requests cut at the window's end are "
              "not counted). Percentiles and req/s count only completions inside the "
              "steady-state window; errors count every request.", "", "Targets:", ""]
    for target, measured, ref, met in judge(rows):
        mark = "report" if met is None else ("**met**" if met else "**MISSED**")
        lines.append(f"- {mark}: {target} — measured {measured}"
                     + (f" (original Worker: {ref})" if ref != "–" else ""))
    notes = [f"- {row.label}: {'; '.join(row.notes)}" for row in rows.values() if row.notes]
    if notes:
        lines += ["", "Notes:", ""] + notes
    return "\n".join(lines) + "\n"


def machine_info() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / (1 << 20):.1f} GiB"
    except OSError:
        pass
    versions = []
    for dist in ("gunicorn", "Flask", "Pillow", "requests", "diskcache"):
        try:
            versions.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pass
    return (f"{model}, {len(os.sched_getaffinity(0))} CPUs (nproc), {mem} RAM, Linux "
            f"{platform.release()}, Python {platform.python_version()}, {', '.join(versions)}")


def code_version() -> str:
    """The commit of the service code measured (read-only git), and whether it is modified."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, timeout=10,
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "flux_worker", "app.py",
                                "gunicorn.conf.py"], cwd=ROOT, timeout=10, capture_output=True,
                               text=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + (" with uncommitted changes to the service" if dirty else "")


def _conf_default(name: str) -> str:
    """The default gunicorn.conf.py gives a variable (read from its text: importing it has
    side effects), so the report never states a stale setting."""
    from flux_worker.config import VARIABLES  # owns GUNICORN_THREADS (and its default)

    owned = {v.name: v.default for v in VARIABLES}
    if owned.get(name):
        return owned[name]
    text = (ROOT / "gunicorn.conf.py").read_text(encoding="utf-8")
    found = re.search(rf'"{name}",\s*(?:"1" if \w+ else )?"(\d+)"', text)
    return found.group(1) if found else "?"


def service_settings(extra: dict[str, str], app: str = "app:app") -> str:
    env = {k: os.environ[k] for k in PASS_THROUGH if k in os.environ}
    env.update(extra)
    workers = env.get("WEB_CONCURRENCY", _conf_default("WEB_CONCURRENCY") + " (default)")
    threads = env.get("GUNICORN_THREADS", _conf_default("GUNICORN_THREADS") + " (default)")
    others = ", ".join(f"{k}={v}" for k, v in env.items()
                       if k not in ("WEB_CONCURRENCY", "GUNICORN_THREADS"))
    return (f"`gunicorn -c gunicorn.conf.py -b 127.0.0.1:PORT {app}`, WEB_CONCURRENCY="
            f"{workers}, GUNICORN_THREADS={threads}, LOG_LEVEL=WARNING"
            + (f", {others}" if others else ""))


def summarize_profile(path: str, top: int = 25) -> str:
    """Self and inclusive sample shares per function from py-spy's raw (collapsed) output."""
    self_counts: collections.Counter = collections.Counter()
    incl: collections.Counter = collections.Counter()
    total = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            frames = [fr for fr in stack.split(";") if not fr.startswith("process ")
                      and not fr.startswith("thread ")]
            if not frames:
                continue
            total += n
            names = [re.sub(r":\d+\)$", ")", fr) for fr in frames]
            self_counts[names[-1]] += n
            for name in set(names):
                incl[name] += n
    out = [f"{path}: {total} samples", "self:"]
    out += [f"  {c / total:6.1%}  {name}" for name, c in self_counts.most_common(top)]
    out.append("inclusive:")
    out += [f"  {c / total:6.1%}  {name}" for name, c in incl.most_common(top * 2)]
    return "\n".join(out)


async def amain(args) -> int:
    plan = QUICK if args.quick else FULL
    extra = dict(e.split("=", 1) for e in args.env)
    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="flux-bench-"))
    only = set(args.only.split(",")) if args.only else None
    bench = Bench(plan, work, extra, Path(args.profile) if args.profile else None, only)
    bench.app = args.app
    budget = 180 if plan.quick else 900
    try:
        async with asyncio.timeout(budget):
            await bench.run()
    except TimeoutError:
        print(f"the matrix exceeded its {budget} s budget; reporting what was measured",
              file=sys.stderr)
    finally:
        bench.close()
    header = {"command": "python -m bench.run" + (" " + " ".join(args.argv) if args.argv else ""),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
              "duration": time.time() - started, "machine": machine_info(),
              "service": service_settings(extra, args.app), "code": code_version()}
    report = markdown(bench.rows, plan, header)
    print()
    print(report)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report, encoding="utf-8")
        print(f"written to {out}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"header": header, "rows": [row.__dict__ for row in bench.rows.values()]},
            indent=1, default=str), encoding="utf-8")
    for path in bench.profiles.values():
        print(summarize_profile(path))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"work directory kept: {work}")
    return 0 if bench.rows else 1


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description="flux-worker benchmark matrix (issue 5)")
    parser.add_argument("--quick", action="store_true", help="short smoke run (~1.5 min)")
    parser.add_argument("--out", default=None, help="also write the Markdown report here")
    parser.add_argument("--json", default=None, help="write the raw results as JSON here")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra service variable (e.g. GUNICORN_THREADS=64); repeatable")
    parser.add_argument("--profile", default=None, metavar="DIR",
                        help="after each CPU case, profile one more run with py-spy into DIR")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument("--app", default="app:app",
                        help="WSGI app gunicorn loads (an experiment's wrapper module, with "
                             "--env PYTHONPATH=...); default app:app")
    parser.add_argument("--only", default=None, metavar="CASES",
                        help="comma-separated subset: nonstream,stream,cpu11,cpu169,cpu32,get,"
                             "get304,c16,c64,c512,l0,l10 (for tuning runs)")
    args = parser.parse_args(argv)
    args.argv = argv
    for item in args.env:
        if "=" not in item:
            parser.error(f"--env wants NAME=VALUE, got {item!r}")
    sys.exit(asyncio.run(amain(args)))


if __name__ == "__main__":
    main()
