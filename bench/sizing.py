"""Measure what a setting of the service holds at full occupancy, for docs/sizing.md.

    .venv/bin/python -m bench.sizing 1x256 2x256 3x256 [--latency 2] [--window 15]
    .venv/bin/python -m bench.sizing 1x128:MAX_INFLIGHT=100 --clients 160

A setting is WORKERSxTHREADS (WEB_CONCURRENCY x GUNICORN_THREADS) plus optional
`:NAME=VALUE,...` service variables. For each, a fresh service (gunicorn.conf.py, disk storage)
runs against the lenient fake upstream (bench/upstream.py, 150 KB 1024x1024 JPEG, 2 s) and gets
as many clients as it has threads (or `--clients`), half of them streaming (`--streaming`).
Reported: req/s, p99, the streams' first byte p99, errors (a 503 of MAX_INFLIGHT counts), and
the peak of the sum of RSS (and of PSS) of the master and every worker, sampled every 100 ms.
RSS counts pages that the processes share once per process, so it is the conservative figure to
size an instance with.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import cast

from . import run as matrix
from .compare import Upstream, chat
from .loadgen import run_load
from .run import MemorySampler, MiB


def parse_setting(text: str) -> tuple[str, dict[str, str]]:
    """'2x256:MAX_INFLIGHT=200' -> ('2x256 MAX_INFLIGHT=200', {...env...})."""
    shape, _, extra = text.partition(":")
    workers, _, threads = shape.partition("x")
    if not (workers.isdigit() and threads.isdigit()):
        raise argparse.ArgumentTypeError(f"want WORKERSxTHREADS[:NAME=VALUE,...], not {text!r}")
    env = {"WEB_CONCURRENCY": workers, "GUNICORN_THREADS": threads}
    for item in filter(None, extra.split(",")):
        name, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"want NAME=VALUE, not {item!r}")
        env[name] = value
    return text, env


async def measure_setting(work: Path, upstream: Upstream, env: dict[str, str], clients: int,
                          latency: float, window: float, streaming: float = 0.5) -> dict:
    store = Path(tempfile.mkdtemp(prefix="store-", dir=work))
    svc = await matrix.start_service(work, cast(matrix.Server, upstream), store, env)
    try:
        await svc.wait_quiet()
        idle = sum(matrix.rss_pss(pid)[0] for pid in svc.pids()) / MiB
        half = round(clients * streaming)
        budget = window + latency + 80
        loads = []
        for count, stream in ((clients - half, False), (half, True)):
            if count:
                loads.append(run_load(svc.url, chat(matrix.API_KEY, stream=stream),
                                      clients=count, duration=window, ramp=latency, warmup=1.0,
                                      timeout=latency + 60, expect=b"/image/",
                                      max_seconds=budget))
        with MemorySampler(svc) as mem:
            summaries = [result.summary() for result in await asyncio.gather(*loads)]
        kinds: Counter = Counter()
        for one in summaries:
            kinds.update(one["error_kinds"])
        return {"clients": clients, "idle_rss": idle, "rss": mem.peak_rss / MiB,
                "pss": None if mem.peak_pss is None else mem.peak_pss / MiB,
                "rps": sum(one["throughput"] for one in summaries),
                "p99": max(one["latency"]["p99"] for one in summaries),
                "ttfb_p99": summaries[-1]["ttfb"]["p99"] if half else None,
                "errors": sum(one["errors"] for one in summaries),
                "requests": sum(one["requests"] for one in summaries),
                "error_kinds": dict(kinds)}
    finally:
        svc.stop()
        shutil.rmtree(store, ignore_errors=True)


def table(results: list[tuple[str, dict]], latency: float) -> str:
    lines = ["| setting | clients | idle RSS MiB | peak RSS (PSS) MiB | req/s "
             f"(ideal: clients / {latency:g} s) | p99 s | streams' first byte p99 ms | errors |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in results:
        pss = "–" if r["pss"] is None else f"{r['pss']:.0f}"
        kinds = f" {r['error_kinds']}" if r["error_kinds"] else ""
        ttfb = "–" if r["ttfb_p99"] is None else f"{r['ttfb_p99'] * 1000:.0f}"
        lines.append(f"| {name} | {r['clients']} | {r['idle_rss']:.0f} | {r['rss']:.0f} ({pss}) "
                     f"| {r['rps']:.1f} ({r['clients'] / latency:.0f}) | {r['p99']:.2f} | "
                     f"{ttfb} | {r['errors']}/{r['requests']}{kinds} |")
    return "\n".join(lines)


async def amain(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="flux-sizing-"))
    upstream = Upstream(work)
    results = []
    started = time.time()
    try:
        await upstream.ready()
        await upstream.configure(latency=args.latency, image="large")
        for name, env in args.settings:
            clients = args.clients or int(env["WEB_CONCURRENCY"]) * int(env["GUNICORN_THREADS"])
            print(f"{name}: {clients} clients", flush=True)
            r = await measure_setting(work, upstream, env, clients, args.latency, args.window,
                                      args.streaming)
            print(f"  {r}", flush=True)
            results.append((name, r))
    finally:
        upstream.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nRun {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}, "
          f"{time.time() - started:.0f} s; {matrix.machine_info()}; code {matrix.code_version()}\n")
    print(table(results, args.latency))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="what a service setting holds at full load")
    parser.add_argument("settings", nargs="+", type=parse_setting,
                        help="WORKERSxTHREADS[:NAME=VALUE,...], e.g. 2x256:MAX_INFLIGHT=200")
    parser.add_argument("--clients", type=int, default=0,
                        help="clients per setting (default: workers x threads)")
    parser.add_argument("--latency", type=float, default=2.0, help="upstream seconds (2)")
    parser.add_argument("--window", type=float, default=15.0, help="measured seconds (15)")
    parser.add_argument("--streaming", type=float, default=0.5,
                        help="share of the clients that stream (0.5)")
    asyncio.run(amain(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
