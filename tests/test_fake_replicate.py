"""The fake Replicate itself: it must refuse what Replicate refuses (reference §3 and §5)."""

from __future__ import annotations

import base64
import io
import os

import pytest
import requests
from PIL import Image

from harness.fakes import replicate

AUTH = {"Authorization": f"Bearer {replicate.TOKEN}"}
SCHNELL = "black-forest-labs/flux-schnell"
KONTEXT = "black-forest-labs/flux-kontext-pro"


@pytest.fixture(scope="module")
def server():
    srv = replicate.start(duration=0.4)
    yield srv
    srv.stop()


@pytest.fixture
def fake(server):
    server.reset()
    yield server
    server.reset()


def create(fake, model=SCHNELL, fields=None, headers=None, prefer="wait=10"):
    extra = {"Prefer": prefer} if prefer else {}
    return requests.post(f"{fake.api}/models/{model}/predictions",
                         json={"input": {"prompt": "a fox", **(fields or {})}},
                         headers={**AUTH, **extra, **(headers or {})}, timeout=30)


def data_url(width=32, height=32, noise=False) -> str:
    img = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)) if noise \
        else Image.new("RGB", (width, height), "red")
    out = io.BytesIO()
    img.save(out, "PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def test_a_bearer_token_is_required_and_errors_are_rfc_7807(fake):
    resp = create(fake, headers={"Authorization": "Bearer wrong"})
    assert resp.status_code == 401
    assert resp.headers["Content-Type"] == "application/problem+json"
    assert set(resp.json()) >= {"type", "title", "status", "detail"}


def test_an_unknown_model_is_a_404(fake):
    assert create(fake, model="someone/nothing").status_code == 404


@pytest.mark.parametrize("fields,field", [
    ({"aspect_ratio": "16:10"}, "aspect_ratio"), ({"num_outputs": 5}, "num_outputs"),
    ({"num_inference_steps": 5}, "num_inference_steps"), ({"seed": True}, "seed"),
    ({"guidance": 3}, "guidance"), ({"output_format": "gif"}, "output_format"),
])
def test_enums_ranges_types_and_unknown_fields_are_refused(fake, fields, field):
    resp = create(fake, fields=fields)
    assert resp.status_code == 422 and resp.json()["detail"].startswith(field)


def test_a_held_create_answers_the_finished_prediction_with_a_list_for_schnell(fake):
    body = create(fake, fields={"aspect_ratio": "16:9", "num_outputs": 2}).json()
    assert body["status"] == "succeeded" and len(body["output"]) == 2
    with Image.open(io.BytesIO(requests.get(body["output"][0], timeout=10).content)) as img:
        assert img.size == (1344, 768) and img.format == "WEBP"


def test_without_prefer_it_starts_and_polling_sees_it_progress(fake):
    fake.add_faults({"kind": "slow", "seconds": 30})
    first = create(fake, prefer=None)
    assert first.status_code == 201 and first.json()["status"] == "starting"
    polled = [requests.get(first.json()["urls"]["get"], headers=AUTH, timeout=10).json()
              for _ in range(2)]
    assert [p["status"] for p in polled] == ["starting", "processing"]
    assert polled[1]["output"] is None


def test_a_hold_ends_early_with_processing_and_a_bad_prefer_is_refused(fake):
    fake.hold_at_most(0.1)
    fake.add_faults({"kind": "slow", "seconds": 5})
    assert create(fake).json()["status"] in ("starting", "processing")
    assert create(fake, prefer="wait=61").status_code == 400


def test_cancel_stops_a_running_prediction_and_is_logged(fake):
    fake.add_faults({"kind": "slow", "seconds": 5})
    body = create(fake, prefer=None).json()
    canceled = requests.post(body["urls"]["cancel"], headers=AUTH, timeout=10).json()
    assert canceled["status"] == "canceled" and canceled["output"] is None
    assert [r["prediction"] for r in fake.requests("cancel")] == [body["id"]]


def test_files_and_outputs_vanish_after_an_hour(fake):
    body = create(fake).json()
    fake.advance_clock(replicate.FILE_LIFETIME)
    assert requests.get(body["output"][0], timeout=10).status_code == 404
    later = requests.get(body["urls"]["get"], headers=AUTH, timeout=10).json()
    assert later["data_removed"] is True and later["output"] is None


def test_kontext_takes_small_data_urls_and_safety_tolerance_at_most_2_with_an_image(fake):
    ok = create(fake, model=KONTEXT, fields={"input_image": data_url(64, 32)}).json()
    assert isinstance(ok["output"], str)                 # one link, not a list
    with Image.open(io.BytesIO(requests.get(ok["output"], timeout=10).content)) as img:
        assert img.width / img.height == pytest.approx(2, rel=0.05)   # match_input_image
    refused = create(fake, model=KONTEXT, fields={"input_image": data_url(),
                                                  "safety_tolerance": 3})
    assert refused.status_code == 422
    big = create(fake, model=KONTEXT, fields={"input_image": data_url(320, 320, noise=True)})
    assert big.status_code == 422 and "256 KB" in big.json()["detail"]


@pytest.mark.parametrize("fault,status", [("402", 402), ("422", 422), ("500", 500)])
def test_injected_http_faults(fake, fault, status):
    fake.add_faults(fault)
    assert create(fake).status_code == status


def test_a_throttled_create_says_when_to_retry(fake):
    fake.add_faults({"kind": "429", "retry_after": 3})
    resp = create(fake)
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "3"


def test_failed_and_nsfw_predictions_carry_an_error_string(fake):
    fake.add_faults("failed", "nsfw")
    failed, nsfw = create(fake).json(), create(fake).json()
    assert failed["status"] == nsfw["status"] == "failed"
    assert nsfw["error"] == replicate.NSFW_ERROR and failed["output"] is None
