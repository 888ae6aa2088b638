"""Six edits at once of four 8000x5000 PNGs each, under gunicorn: the workers' memory stays bounded.

Decoded at full size these took 2.5 GB across the two workers and one kept 1.1 GB afterwards.
Now each input is decoded to 2500 px a side in bands, one big decode per core and process at a
time, and memory is given back afterwards. The bounds are on memory only (the machine may be
busy, so no timing is asserted): under 300 MiB above idle for all workers together during the
edits (the issue's target; measured 150-180), and each worker within 60 MiB of its idle RSS
afterwards (measured +10).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import big_uploads
from harness.service import cloudflare_env, start_service

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")]

MiB = 2**20


def test_six_edits_of_four_huge_pngs_stay_within_the_memory_bound(fake_cf, tmp_path):
    service = start_service(tmp_path, cloudflare_env(fake_cf), workers=2)
    try:
        figures = big_uploads.run(service)
    finally:
        service.stop()
    assert figures.statuses == [200] * big_uploads.EDITS, figures.line()
    assert figures.peak - figures.idle < 300 * MiB, figures.line()
    assert figures.worst_worker_growth < 60 * MiB, figures.line()
