"""The scale-out proof, small: three instances behind nginx, Redis counters, S3 (moto) images,
one instance killed with SIGKILL and started again (bench/scaleout.py; full run in
docs/scale-out.md). Without nginx it is skipped, unless FLUX_REQUIRE_NGINX=1 (set in CI).
"""

from __future__ import annotations

import asyncio
import os
import shutil

import pytest

from bench import scaleout

pytestmark = pytest.mark.e2e


@pytest.fixture
def nginx():
    if shutil.which("nginx") or os.access(scaleout.NGINX, os.X_OK):
        return
    message = "nginx is not installed (Debian: apt-get install -y nginx)"
    if os.environ.get("FLUX_REQUIRE_NGINX") == "1":
        pytest.fail(f"FLUX_REQUIRE_NGINX=1 but {message}", pytrace=False)
    pytest.skip(message)


def test_three_instances_share_counts_and_images_and_survive_a_kill(nginx, tmp_path):
    report = asyncio.run(scaleout.run(clients=8, duration=20, down=2, hang=30,
                                      work=tmp_path, log=lambda *_: None))
    assert report.problems() == [], scaleout.markdown(report)
    assert report.images > 20 and report.images_lost == report.images_lost_at_end == 0
    assert report.hangs == 0 and report.errors_elsewhere == 0
    # Exactly the limit got through, spread over three instances: the counts are shared.
    assert report.probe["accepted"] == scaleout.RATE_PER_MINUTE
    assert report.probe["refused_429"] == scaleout.PROBE_EXTRA
    # Links were served by instances other than the one that made the image.
    assert report.images_from_other_instance > 0.2
    assert report.throughput["before"] > 0 and report.throughput["after"] > 0
