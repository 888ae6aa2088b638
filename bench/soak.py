"""A bounded soak test: minutes of load with injected upstream failures, judged answer by answer.

    python -m bench.soak [--minutes 3] [--clients 64] [--fail-rate 0.05] [--latency 0.5]

It starts the fake Cloudflare (answering `--fail-rate` of the generations with one of its real
failures: 3030, 3040, 4006, 500, a per-minute 429, malformed JSON, bytes that are no image) and
the service under `gunicorn -c gunicorn.conf.py`, runs `--clients` keep-alive clients for
`--minutes`, then checks that:

- every answer is a documented one: a chat completion, or an OpenAI error whose status and code
  are in the contract's error table;
- every 200 carries an image link, and every link serves an image;
- memory stays flat: the servers' RSS in the last fifth of the run is within 15% of the second
  (the first is the ramp and warm-up).

Loopback only; every loop is bounded. Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from harness.ports import free_port

from . import loadgen
from .run import (
    API_KEY,
    IMAGE_KB,
    PYTHON,
    Server,
    _base_env,
    machine_info,
    rss_pss,
    start_service,
)

DOCUMENTED = {  # status -> codes the contract allows for an upstream failure
    400: {"content_policy_violation", "prompt_too_long"},
    429: {"rate_limit_exceeded", "insufficient_quota"},
    502: {"upstream_error", "upstream_auth_failed"},
    503: {"rate_limit_exceeded", "storage_error"},
    504: {"upstream_error"},
}
LINK = re.compile(rb"\]\((http[^)]+/image/[A-Za-z0-9_-]+)\)")


async def start_failing_fake(work: Path, latency: float, fail_rate: float) -> Server:
    """The fake Cloudflare with a failure rate, under its own small gunicorn config."""
    port = free_port()
    conf = work / "fake.conf.py"
    conf.write_text(f"bind = ['127.0.0.1:{port}']\nworkers = 1\nworker_class = 'gthread'\n"
                    "threads = 256\nbacklog = 2048\nkeepalive = 75\naccesslog = None\n"
                    "errorlog = '-'\nloglevel = 'warning'\ncontrol_socket_disable = True\n")
    app = (f"harness.fakes.cloudflare:make_app(latency={latency!r}, image_kb={IMAGE_KB}, "
           f"fail_rate={fail_rate!r})")
    fake = Server("fake cloudflare", [PYTHON, "-m", "gunicorn", "-c", str(conf), app],
                  _base_env(work), work / "fake.log", f"http://127.0.0.1:{port}")
    await fake.wait_ready("/_fake/health")
    return fake


def judge_body(status: int, body: bytes) -> tuple[str | None, bytes | None]:
    """(problem or None, image link or None) for one answer."""
    try:
        data = json.loads(body)
    except ValueError:
        return f"HTTP {status}: body is not JSON", None
    if status == 200:
        match = LINK.search(body)
        if not data.get("choices") or not match:
            return "200 without an image link", None
        return None, match.group(1)
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict) or set(error) != {"message", "type", "param", "code"}:
        return f"HTTP {status}: not an OpenAI error body", None
    if error["code"] not in DOCUMENTED.get(status, set()):
        return f"HTTP {status} with undocumented code {error['code']!r}", None
    return None, None


async def check_links(links: list[bytes], concurrency: int = 16) -> list[str]:
    """Fetch every link; return the problems."""
    problems: list[str] = []
    queue = list(dict.fromkeys(links))

    async def worker():
        while queue:
            url = queue.pop().decode()
            resp = await loadgen.fetch(url, timeout=30)
            if resp.status != 200 or not resp.headers.get("content-type", "").startswith("image/"):
                problems.append(f"{url} -> {resp.status}")

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return problems


async def soak(args) -> int:
    work = Path(tempfile.mkdtemp(prefix="flux-soak-"))
    fake = await start_failing_fake(work, args.latency, args.fail_rate)
    # Room for every image of the run (about 150 KB each), so that every link must still serve:
    # with the default bound the oldest images are evicted by design.
    svc = await start_service(work, fake, work / "images", {"STORAGE_MAX_BYTES": str(16 << 30)})
    memory: list[tuple[float, int]] = []
    try:
        async def sample():
            while True:
                memory.append((time.monotonic(), sum(rss_pss(p)[0] for p in svc.pids())))
                await asyncio.sleep(2)

        sampler = asyncio.create_task(sample())
        body = {"model": "flux-1-schnell", "messages": [{"role": "user", "content": "a cat 1:1"}]}
        request = loadgen.json_post("/v1/chat/completions", body, token=API_KEY)
        result = await loadgen.run_load(
            svc.url, request, clients=args.clients, duration=args.minutes * 60, ramp=2,
            timeout=60, ok_status=(200, *DOCUMENTED), keep_bodies=10**7,
            max_seconds=args.minutes * 60 + 120)
        sampler.cancel()
        records = result.records
        statuses: dict[int, int] = {}
        for rec in records:
            statuses[rec.status] = statuses.get(rec.status, 0) + 1
        problems = [f"{rec.status}: {rec.error}" for rec in records
                    if rec.error and not rec.error.startswith("HTTP ")]
        problems += [f"undocumented status {s}" for s in statuses
                     if s != 200 and s not in DOCUMENTED]
        links = []
        for status, rec_body in zip(result.body_statuses, result.bodies, strict=False):
            problem, link = judge_body(status, rec_body)
            if problem:
                problems.append(problem)
            if link:
                links.append(link)
        problems += await check_links(links)
        # Warmed up (the second fifth of the run: ramp, thread pools and caches are filled)
        # against the end: a leak shows as growth between the two.
        fifth = max(1, len(memory) // 5)
        first = sum(m for _, m in memory[fifth:2 * fifth]) / fifth
        last = sum(m for _, m in memory[-fifth:]) / fifth
        growth = (last - first) / first if first else 0.0
        if growth > 0.15:
            problems.append(f"memory grew {growth:.0%} ({first / 2**20:.0f} -> "
                            f"{last / 2**20:.0f} MiB)")
        report = render(args, records, statuses, links, first, last, max(m for _, m in memory),
                        problems)
        print(report)
        if args.out:
            Path(args.out).write_text(report, encoding="utf-8")
        return 1 if problems else 0
    finally:
        svc.stop()
        fake.stop()
        shutil.rmtree(work, ignore_errors=True)


def render(args, records, statuses, links, first, last, peak, problems) -> str:
    ok = statuses.get(200, 0)
    lines = [
        f"Command: `python -m bench.soak --minutes {args.minutes:g} --clients {args.clients} "
        f"--fail-rate {args.fail_rate:g} --latency {args.latency:g}`  ",
        f"Machine: {machine_info()}  ",
        "",
        "| requests | 200 with image | other answers (status: count) | links served | "
        "RSS 2nd fifth → last fifth (peak), MiB | problems |",
        "|---:|---:|---|---:|---|---:|",
        f"| {len(records)} | {ok} | "
        + ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items()) if s != 200)
        + f" | {len(set(links))} | {first / 2**20:.0f} → {last / 2**20:.0f} ({peak / 2**20:.0f})"
        f" | {len(problems)} |",
        "",
    ]
    counted = collections.Counter(problems)
    lines += [f"- {p} (×{n})" for p, n in counted.most_common(20)] or [
        "Every answer was a documented one, every image link served, memory stayed flat."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--fail-rate", type=float, default=0.05)
    parser.add_argument("--latency", type=float, default=0.5, help="fake upstream seconds")
    parser.add_argument("--out", default=None, help="also write the report here")
    args = parser.parse_args(argv)
    if not (0 < args.minutes <= 15 and 1 <= args.clients <= 512):
        parser.error("--minutes must be in (0, 15] and --clients in [1, 512]")
    sys.exit(asyncio.run(soak(args)))


if __name__ == "__main__":
    main()
