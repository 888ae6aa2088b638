"""/metrics under real gunicorn with two workers: every scrape shows the sum over both.

Each worker counts only what it served, so a scrape answered by one worker alone would show its
share. The test checks, from the workers' own metric files, that both served generations and
neither holds the total; a scrape that still shows the total must have added them up.
"""

from __future__ import annotations

import os
import re

import pytest
import requests
from prometheus_client.multiprocess import MultiProcessCollector

from harness.service import start_service
from tests.support import metric_value as value

pytestmark = pytest.mark.e2e
KEY = "k-metrics-1234"
N = 10
# Which worker takes a fresh connection is up to the kernel; rarely one takes all ten, and then
# a few more requests (counted in the totals) let the other serve one.
EXTRA = 20


def worker_pids(service) -> list[int]:
    """The live workers' pids, from gunicorn's boot lines."""
    pids = [int(p) for p in re.findall(r"Booting worker with pid: (\d+)", service.log())]
    return [pid for pid in pids if os.path.exists(f"/proc/{pid}")]


def counter_file(pid: int) -> str | None:
    """The worker's counter file in the multiprocess folder gunicorn.conf.py made for it, or
    None while it has counted nothing (prometheus_client makes the file at the first count)."""
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if os.path.basename(target) == f"counter_{pid}.db":
            return target
    return None


def generations_per_worker(service, model: str) -> dict[int, float]:
    """Generations counted "ok" by each worker in its own file."""
    counts = {}
    for pid in worker_pids(service):
        path = counter_file(pid)
        counts[pid] = 0 if path is None else sum(
            s.value for m in MultiProcessCollector.merge([path]) for s in m.samples
            if s.name == "flux_worker_generations_total"
            and s.labels == {"model": model, "outcome": "ok"})
    return counts


def generate(service, i: int) -> str:
    # A fresh connection each time (no keep-alive), so either worker may accept it.
    resp = requests.post(service.api + "/chat/completions", timeout=30,
                         headers={"Authorization": f"Bearer {KEY}", "Connection": "close"},
                         json={"messages": [{"role": "user", "content": f"a cat number {i}"}]})
    assert resp.status_code == 200, resp.text
    return resp.json()["model"]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux /proc")
def test_metrics_add_up_over_worker_processes(tmp_path):
    service = start_service(tmp_path, {"API_KEY": KEY}, workers=2)
    try:
        models = {generate(service, i) for i in range(N)}
        assert len(models) == 1
        model = models.pop()
        made = N
        while made < N + EXTRA and min(generations_per_worker(service, model).values()) == 0:
            generate(service, made)
            made += 1
        per_worker = generations_per_worker(service, model)
        assert len(per_worker) == 2 and sum(per_worker.values()) == made
        assert all(0 < count < made for count in per_worker.values()), per_worker

        for _ in range(6):
            resp = requests.get(service.url + "/metrics", timeout=10,
                                headers={"Connection": "close"})
            assert resp.status_code == 200
            text = resp.text
            # Exact on every scrape, whichever worker answers it.
            assert value(text, "flux_worker_generations_total", model=model, outcome="ok") == made
            assert value(text, "flux_worker_images_stored_total") == made
            assert value(text, "flux_worker_upstream_latency_seconds_count", model=model) == made
            assert value(text, "flux_worker_http_requests_total", method="POST",
                         route="/v1/chat/completions", status="200") == made
            assert value(text, "flux_worker_generations_in_flight") == 0
            assert KEY not in text
    finally:
        service.stop()
    # Every request got its access-log line, with its request id, duration and model.
    lines = re.findall(r"flux_worker\.access: \S+ POST /v1/chat/completions 200 \d+ms model=\S+",
                       service.log())
    assert len(lines) == made
    assert KEY not in service.log()
