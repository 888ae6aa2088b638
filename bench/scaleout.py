"""Scale-out proof: three instances behind nginx, sharing Redis counters and S3 images, one killed.

    python -m bench.scaleout          # 256 clients, 60 s, kill at 30 s (docs/scale-out.md)
    python -m bench.scaleout --clients 8 --duration 20 --json out.json   # the CI variant

Everything runs on 127.0.0.1 on free ports, in a temporary directory, and is stopped at the end:

- redis-server (rate-limit counters, COUNTERS_URL), moto's S3 server (images, STORAGE_URL=s3://),
- the fake Cloudflare at `--latency` seconds per image (its `latency` knob), under gunicorn,
- three flux-worker instances (gunicorn, one worker process each) and nginx in front of them
  (round robin, SSE unbuffered, `X-Upstream` naming the instance that answered).

Half of the clients stream (`stream: true`), half do not; each asks for an image through nginx,
then fetches the image link through nginx (so usually from another instance). Halfway, one
instance's whole process group gets SIGKILL; it is started again `--down` seconds later.
A probe key sends a burst straight to the three instances in turn: a shared limit lets exactly
RATE_LIMIT through in total, where per-instance counts would let three times as many.

Figures: requests, errors (each tied to the killed instance and to the moment of the kill, or
not), hangs (a request that did not end within --hang seconds: must be 0), images lost (a link
from a 200 answer that does not serve its image, now or at the end: must be 0), throughput before,
during and after the outage. Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.ports import free_port
from harness.redis_server import RedisServer
from harness.s3_server import MotoServer

from . import loadgen
from .loadgen import Request, json_post
from .run import CF_ACCOUNT, CF_TOKEN, PYTHON, ROOT, Server, _base_env, machine_info

INSTANCES = 3
PROBE_KEY = "sk-scaleout-probe"
LOAD_KEYS = 1024          # load requests rotate over these, each far below the limit
RATE_PER_MINUTE = 30      # RATE_LIMIT of every key; the probe sends PROBE_EXTRA more than this
PROBE_EXTRA = 12
MIN_AFTER = 5.0           # seconds of load after the restart, however late it comes
LINK = re.compile(rb"\]\((https?://[^)\s]+/image/[A-Za-z0-9_-]{22,64})\)")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


@dataclass
class Outcome:
    """One generation through the balancer, and the fetch of its image link."""

    client: int
    stream: bool
    start: float
    end: float
    status: int = 0
    upstream: str = ""
    error: str | None = None        # None: a complete answer (200 with a link, or an API error)
    link: str = ""
    image_status: int = 0
    image_upstream: str = ""


@dataclass
class Report:
    """The figures of one run."""

    clients: int
    duration: float
    latency: float
    kill_at: float = 0.0
    back_at: float = 0.0
    killed: str = ""
    requests: int = 0
    ok: int = 0
    statuses: dict = field(default_factory=dict)
    errors: list = field(default_factory=list)
    errors_elsewhere: int = 0       # errors not explained by the kill: must be 0
    hangs: int = 0
    retried: int = 0                # answered after nginx passed them on from a dead instance
    images: int = 0
    images_lost: int = 0
    images_lost_at_end: int = 0
    images_from_other_instance: float = 0.0
    throughput: dict = field(default_factory=dict)
    probe: dict = field(default_factory=dict)
    nginx_upstream_errors: dict = field(default_factory=dict)  # upstream -> error log lines
    machine: str = ""

    def problems(self) -> list[str]:
        """The checks that failed."""
        found = []
        if self.hangs:
            found.append(f"{self.hangs} requests hung")
        if self.errors_elsewhere:
            found.append(f"{self.errors_elsewhere} errors not explained by the kill")
        if self.images_lost or self.images_lost_at_end:
            found.append(f"images lost: {self.images_lost} at once, "
                         f"{self.images_lost_at_end} at the end")
        if self.probe.get("accepted") != RATE_PER_MINUTE:
            found.append(f"shared rate limit let {self.probe.get('accepted')} through, "
                         f"not {RATE_PER_MINUTE}")
        if set(self.nginx_upstream_errors) - {self.killed}:
            found.append(f"nginx saw errors from live instances: {self.nginx_upstream_errors}")
        if not self.throughput.get("after"):
            found.append("no throughput after the restart")
        return found


# -------------------------------------------------------------------------------------------
# The set-up: fake, Redis, S3, three instances, nginx.
# -------------------------------------------------------------------------------------------

def nginx_conf(work: Path, port: int, upstreams: list[str]) -> Path:
    """An nginx configuration for a non-daemon nginx whose files all live in `work`."""
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (work / "nginx" / name).mkdir(parents=True, exist_ok=True)
    servers = "\n".join(f"        server {u} max_fails=1 fail_timeout=2s;" for u in upstreams)
    conf = work / "nginx" / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
pid {work}/nginx/nginx.pid;
error_log {work}/nginx/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {work}/nginx/body;
    proxy_temp_path {work}/nginx/proxy;
    fastcgi_temp_path {work}/nginx/fastcgi;
    uwsgi_temp_path {work}/nginx/uwsgi;
    scgi_temp_path {work}/nginx/scgi;
    upstream flux {{
{servers}
        keepalive 128;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://flux;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            # Chat streams pass through as they are written.
            proxy_buffering off;
            proxy_connect_timeout 2s;
            proxy_read_timeout 120s;
            # A refused or broken connection (an instance that died, even after the request
            # was sent: non_idempotent) goes to the next instance. Not on a timeout: a slow
            # generation is not retried, so only a dead instance's work is ever done twice.
            proxy_next_upstream error non_idempotent;
            add_header X-Upstream $upstream_addr always;
        }}
    }}
}}
""")
    return conf


class Cluster:
    """The processes of one run; `close()` stops every one of them."""

    def __init__(self, work: Path, latency: float, image_kb: int, threads: int):
        self.work, self.latency, self.image_kb, self.threads = work, latency, image_kb, threads
        self.redis = RedisServer()
        self.s3 = MotoServer()
        self.fake: Server | None = None
        self.instances: list[Server | None] = [None] * INSTANCES
        self.ports = [free_port() for _ in range(INSTANCES)]
        self.nginx: subprocess.Popen | None = None
        self.port = free_port()
        self.bucket = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def instance_url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.ports[i]}"

    async def start(self) -> None:
        self.redis.start()
        self.s3.start()
        self.bucket = self.s3.create_bucket("flux-scaleout")
        self.fake = await start_fake(self.work, self.latency, self.image_kb)
        await asyncio.gather(*(self.start_instance(i) for i in range(INSTANCES)))
        conf = nginx_conf(self.work, self.port,
                          [f"127.0.0.1:{p}" for p in self.ports])
        self.nginx = subprocess.Popen(
            [NGINX, "-c", str(conf), "-p", str(self.work / "nginx"), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=open(self.work / "nginx" / "stderr.log", "wb"),
            start_new_session=True)
        await wait_for(self.url + "/healthz", "nginx", self.nginx)

    def env(self, home: Path) -> dict[str, str]:
        env = _base_env(home)
        keys = [PROBE_KEY] + [f"sk-scaleout-{n:04d}" for n in range(LOAD_KEYS)]
        env.update({
            "API_KEY": ",".join(keys), "CF_ACCOUNT_ID": CF_ACCOUNT, "CF_API_TOKEN": CF_TOKEN,
            "CF_API_BASE": self.fake.url + "/client/v4",  # type: ignore[union-attr]
            "STORAGE_URL": f"s3://{self.bucket}/images", "COUNTERS_URL": self.redis.url,
            "RATE_LIMIT": f"{RATE_PER_MINUTE}/minute", "IMAGE_EXPIRATION": "3600",
            "WEB_CONCURRENCY": "1", "GUNICORN_THREADS": str(self.threads),
            "UPSTREAM_TIMEOUT": "30", "LOG_LEVEL": "WARNING", **self.s3.env()})
        return env

    async def start_instance(self, i: int) -> None:
        port = self.ports[i]
        home = self.work / f"instance-{i}-{int(time.time() * 1000)}"
        home.mkdir()
        server = Server(f"instance {i}", [PYTHON, "-m", "gunicorn", "-c", "gunicorn.conf.py",
                                           "-b", f"127.0.0.1:{port}", "app:app"],
                        self.env(home), home / "gunicorn.log", self.instance_url(i))
        self.instances[i] = server
        await server.wait_ready("/readyz", timeout=60)

    def kill(self, i: int) -> None:
        """SIGKILL the instance's master and workers at once, as when its host dies."""
        server = self.instances[i]
        if server is not None:
            os.killpg(server.pid, signal.SIGKILL)
            server.proc.wait(10)

    def close(self) -> None:
        if self.nginx is not None and self.nginx.poll() is None:
            self.nginx.send_signal(signal.SIGQUIT)
            try:
                self.nginx.wait(10)
            except subprocess.TimeoutExpired:
                self.nginx.kill()
        for server in self.instances:
            if server is not None:
                server.stop()
        if self.fake is not None:
            self.fake.stop()
        self.s3.stop()
        self.redis.close()


async def start_fake(work: Path, latency: float, image_kb: int) -> Server:
    """The fake Cloudflare, `latency` seconds per image, under a small gunicorn of its own."""
    port = free_port()
    conf = work / "fake.conf.py"
    conf.write_text(f"bind = ['127.0.0.1:{port}']\nworkers = 1\nworker_class = 'gthread'\n"
                    "threads = 512\nbacklog = 2048\nkeepalive = 75\ntimeout = 120\n"
                    "accesslog = None\nerrorlog = '-'\nloglevel = 'warning'\n"
                    "control_socket_disable = True\n")
    app = f"harness.fakes.cloudflare:make_app(latency={latency!r}, image_kb={image_kb})"
    fake = Server("fake cloudflare", [PYTHON, "-m", "gunicorn", "-c", str(conf), app],
                  _base_env(work), work / "fake.log", f"http://127.0.0.1:{port}")
    await fake.wait_ready("/_fake/health")
    return fake


async def wait_for(url: str, name: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    """Wait until `url` answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}")
        try:
            if (await loadgen.fetch(url, timeout=2)).status == 200:
                return
        except (OSError, TimeoutError, loadgen.ProtocolError):
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{name} did not answer at {url}")


# -------------------------------------------------------------------------------------------
# The clients.
# -------------------------------------------------------------------------------------------

def chat(token: str, stream: bool) -> Request:
    body: dict = {"model": "flux-schnell",
                  "messages": [{"role": "user", "content": "a lighthouse at dusk"}]}
    if stream:
        body["stream"] = True
    return json_post("/v1/chat/completions", body, token=token)


class Connection:
    """One keep-alive connection to the balancer that reconnects after a failure."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, request: Request) -> loadgen.Response:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(
                self.host, self.port, limit=loadgen.READ_LIMIT)
        try:
            resp = await loadgen.exchange(self.reader, self.writer,  # type: ignore[arg-type]
                                          request.encode(f"{self.host}:{self.port}"),
                                          request.method)
        except BaseException:
            self.close()
            raise
        if resp.closes:
            self.close()
        return resp

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def client(cid: int, cluster: Cluster, keys, until: list[float], hang: float, t0: float,
                 outcomes: list[Outcome]) -> None:
    """Generate, then fetch the link, until `until[0]`; every step bounded by `hang` seconds."""
    stream = cid % 2 == 1
    conn = Connection("127.0.0.1", cluster.port)
    try:
        while time.perf_counter() < until[0]:
            out = Outcome(cid, stream, time.perf_counter() - t0, 0.0)
            outcomes.append(out)
            try:
                async with asyncio.timeout(hang):
                    resp = await conn.send(chat(next(keys), stream))
                out.status, out.upstream = resp.status, resp.headers.get("x-upstream", "")
                found = LINK.search(resp.body)
                if resp.status != 200:
                    out.error = None if resp.status in (429, 503) else f"HTTP {resp.status}"
                elif stream and not resp.done_seen:
                    out.error = "stream without [DONE]"
                elif not found:
                    out.error = "200 without an image link"
                else:
                    out.link = found.group(1).decode()
            except TimeoutError:
                out.error = "hang"
            except (OSError, asyncio.IncompleteReadError, loadgen.ProtocolError) as exc:
                out.error = f"cut ({type(exc).__name__})"
            out.end = time.perf_counter() - t0
            if out.link:
                await fetch_image(conn, out, hang)
            if out.error and out.error != "hang":
                await asyncio.sleep(0.2)  # a failing client does not spin
    finally:
        conn.close()


async def fetch_image(conn: Connection, out: Outcome, hang: float) -> None:
    """Fetch an answer's image through the balancer; record what came back."""
    path = out.link.split("/", 3)[3]
    try:
        async with asyncio.timeout(hang):
            got = await conn.send(Request("GET", "/" + path))
        out.image_upstream = got.headers.get("x-upstream", "")
        jpeg = got.body[:3] == b"\xff\xd8\xff"
        out.image_status = got.status if (got.status != 200 or jpeg) else -1
    except (OSError, TimeoutError, asyncio.IncompleteReadError, loadgen.ProtocolError):
        out.image_status = 0


async def probe_rate_limit(cluster: Cluster) -> dict:
    """A burst on one key, sent straight to the three instances in turn: count what got through."""
    request = chat(PROBE_KEY, stream=False)

    async def one(i: int) -> int:
        try:
            return (await loadgen.fetch(cluster.instance_url(i % INSTANCES), request,
                                        timeout=60)).status
        except (OSError, TimeoutError, loadgen.ProtocolError):
            return 0

    statuses = await asyncio.gather(*(one(i) for i in range(RATE_PER_MINUTE + PROBE_EXTRA)))
    counts = collections.Counter(statuses)
    return {"sent": len(statuses), "accepted": counts.get(200, 0),
            "refused_429": counts.get(429, 0), "other": len(statuses) - counts.get(200, 0)
            - counts.get(429, 0), "limit": RATE_PER_MINUTE, "instances": INSTANCES}


async def recheck(cluster: Cluster, links: list[str], concurrency: int = 16) -> int:
    """Fetch every link again through the balancer at the end; return how many fail."""
    queue = list(links)
    lost = 0

    async def worker() -> None:
        nonlocal lost
        conn = Connection("127.0.0.1", cluster.port)
        try:
            while queue:
                path = "/" + queue.pop().split("/", 3)[3]
                try:
                    async with asyncio.timeout(30):
                        got = await conn.send(Request("HEAD", path))
                    lost += got.status != 200
                except (OSError, TimeoutError, asyncio.IncompleteReadError,
                        loadgen.ProtocolError):
                    lost += 1
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return lost


# -------------------------------------------------------------------------------------------
# The run.
# -------------------------------------------------------------------------------------------

async def run(*, clients: int = 256, duration: float = 60.0, latency: float = 1.0,
              down: float = 5.0, hang: float = 45.0, image_kb: int = 30, threads: int = 128,
              work: Path | None = None, log=print) -> Report:
    """Run the whole scale-out proof and return its figures."""
    own = work is None
    work = Path(tempfile.mkdtemp(prefix="flux-scaleout-")) if own else work
    cluster = Cluster(work, latency, image_kb, threads)
    report = Report(clients, duration, latency, machine=machine_info())
    try:
        log(f"starting redis, moto S3, the fake Cloudflare ({latency:g} s), "
            f"{INSTANCES} instances and nginx in {work}")
        await cluster.start()
        outcomes: list[Outcome] = []
        keys = itertools.cycle([f"sk-scaleout-{n:04d}" for n in range(LOAD_KEYS)])
        t0 = time.perf_counter()
        until = [t0 + duration]  # moved on when the restart ends late: "after" must be seen
        log(f"{clients} clients for {duration:g} s through {cluster.url}")
        tasks = [asyncio.create_task(client(c, cluster, keys, until, hang, t0, outcomes))
                 for c in range(clients)]
        await asyncio.sleep(min(5.0, duration / 6))
        report.probe = await probe_rate_limit(cluster)
        log(f"rate-limit probe: {report.probe}")
        await asyncio.sleep(max(0.0, t0 + duration / 2 - time.perf_counter()))
        victim = 1
        report.killed = f"127.0.0.1:{cluster.ports[victim]}"
        report.kill_at = time.perf_counter() - t0
        cluster.kill(victim)
        log(f"SIGKILL instance {victim} ({report.killed}) at {report.kill_at:.1f} s")
        await asyncio.sleep(down)
        await cluster.start_instance(victim)
        report.back_at = time.perf_counter() - t0
        log(f"instance {victim} ready again at {report.back_at:.1f} s")
        until[0] = max(until[0], t0 + report.back_at + MIN_AFTER)
        report.duration = until[0] - t0
        done, pending = await asyncio.wait(tasks, timeout=duration + hang + 30)
        for task in pending:
            task.cancel()
        for task in done:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        judge(report, outcomes)
        report.nginx_upstream_errors = upstream_errors(work / "nginx" / "error.log")
        links = [o.link for o in outcomes if o.link]
        log(f"re-checking {len(links)} image links through the balancer")
        report.images_lost_at_end = await recheck(cluster, links)
        return report
    finally:
        cluster.close()
        if own:
            shutil.rmtree(work, ignore_errors=True)


def judge(report: Report, outcomes: list[Outcome]) -> None:
    """Fill in the figures from the outcomes."""
    report.requests = len(outcomes)
    report.ok = sum(1 for o in outcomes if o.link and o.image_status == 200)
    report.statuses = dict(collections.Counter(str(o.status) for o in outcomes))
    killed = report.killed
    report.retried = sum(1 for o in outcomes if o.error is None and "," in o.upstream)
    for o in outcomes:
        if o.error is None:
            continue
        if o.error == "hang":
            report.hangs += 1
        # Explained by the kill: answered by the killed instance (or cut before any header)
        # while the kill happened.
        in_flight = o.start <= report.kill_at <= o.end + 0.5
        explained = in_flight and (o.upstream in ("", killed) or killed in o.upstream)
        if not explained:
            report.errors_elsewhere += 1
        report.errors.append({"error": o.error, "status": o.status, "stream": o.stream,
                              "upstream": o.upstream, "start": round(o.start, 2),
                              "end": round(o.end, 2), "explained_by_kill": explained})
    fetched = [o for o in outcomes if o.link]
    report.images = len(fetched)
    report.images_lost = sum(1 for o in fetched if o.image_status != 200)
    other = [o for o in fetched if o.image_upstream and o.image_upstream != o.upstream]
    report.images_from_other_instance = round(len(other) / len(fetched), 3) if fetched else 0.0
    phases = {"before": (0.0, report.kill_at), "during": (report.kill_at, report.back_at),
              "after": (report.back_at, report.duration)}
    for name, (lo, hi) in phases.items():
        done = sum(1 for o in outcomes if o.link and o.image_status == 200 and lo <= o.end < hi)
        report.throughput[name] = round(done / (hi - lo), 1) if hi > lo else 0.0


def upstream_errors(log_path: Path) -> dict[str, int]:
    """How many of nginx's error lines name each upstream (a cut stream, a refused connect)."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return {}
    found = re.findall(r'upstream: "http://([0-9.]+:[0-9]+)/', text)
    return dict(collections.Counter(found))


def markdown(report: Report) -> str:
    """The figures as the table docs/scale-out.md shows."""
    cut = sum(1 for e in report.errors if e["error"].startswith("cut"))
    fivexx = sum(1 for e in report.errors if str(e["status"]).startswith("5"))
    lines = [
        "| figure | value |", "|---|---|",
        f"| clients (half streaming) | {report.clients} |",
        f"| duration | {report.duration:.0f} s, fake Cloudflare latency {report.latency:g} s |",
        f"| instance killed (SIGKILL) / ready again | {report.kill_at:.1f} s / "
        f"{report.back_at:.1f} s |",
        f"| requests | {report.requests} |",
        f"| complete answers with a served image | {report.ok} |",
        f"| statuses | {', '.join(f'{k}: {v}' for k, v in sorted(report.statuses.items()))} |",
        f"| errors | {len(report.errors)} ({cut} streams cut, {fivexx} 5xx) |",
        f"| errors not in flight on the killed instance | {report.errors_elsewhere} |",
        f"| hangs | {report.hangs} |",
        f"| requests nginx passed on from the dead instance, then answered | {report.retried} |",
        f"| nginx error-log lines per upstream | {report.nginx_upstream_errors} "
        f"(killed: {report.killed}) |",
        f"| images fetched through nginx / lost | {report.images} / {report.images_lost} "
        f"(at the end: {report.images_lost_at_end}) |",
        f"| images served by another instance than the one that made them | "
        f"{report.images_from_other_instance * 100:.0f}% |",
        f"| throughput before / during / after (images/s) | {report.throughput.get('before')} / "
        f"{report.throughput.get('during')} / {report.throughput.get('after')} |",
        f"| shared rate limit: probe burst accepted / sent (limit {report.probe.get('limit')} "
        f"per minute, {INSTANCES} instances) | {report.probe.get('accepted')} / "
        f"{report.probe.get('sent')} |",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clients", type=int, default=256)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--latency", type=float, default=1.0, help="fake Cloudflare seconds")
    parser.add_argument("--down", type=float, default=5.0, help="seconds the instance stays dead")
    parser.add_argument("--hang", type=float, default=45.0, help="a request longer than this hangs")
    parser.add_argument("--image-kb", type=int, default=30)
    parser.add_argument("--threads", type=int, default=128, help="gunicorn threads per instance")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    if not os.access(NGINX, os.X_OK):
        sys.exit("nginx is not installed (Debian: apt-get install -y nginx)")
    report = asyncio.run(run(clients=args.clients, duration=args.duration, latency=args.latency,
                             down=args.down, hang=args.hang, image_kb=args.image_kb,
                             threads=args.threads))
    print(markdown(report))
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2))
    problems = report.problems()
    for problem in problems:
        print("FAILED:", problem)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
