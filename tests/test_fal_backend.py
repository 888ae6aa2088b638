"""fal's backend: the body per model, which path a generation takes (sync, or the queue), the
error mapping and the cancel (`responses` at the HTTP edge), and the result file's download from
a real file host on 127.0.0.1 (the strict fake's)."""

from __future__ import annotations

import base64
import io
import json
import threading

import pytest
import responses
from PIL import Image

from flux_worker.backends.fal import FalBackend
from flux_worker.backends.fal.payloads import build_body, endpoint_of
from flux_worker.catalog.fal import FAL_CATALOG
from flux_worker.errors import (
    Cancelled,
    ContentPolicy,
    InvalidRequest,
    QuotaExceeded,
    RateLimited,
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamTimeout,
)
from flux_worker.generation.backend import GenerationRequest
from flux_worker.inputs.image import InputImage
from flux_worker.net.upstream import make_session
from harness.fakes import fal

KEY = "fal-key-id:SECRET-fal-key-9x"
SYNC = "https://fal.run"
QUEUE = "https://queue.fal.run"
MODELS = {spec.id: spec for spec in FAL_CATALOG}
SCHNELL = "fal:fal-ai/flux/schnell"
KONTEXT = "fal:fal-ai/flux-pro/kontext"
FLEX_EDIT = "fal:fal-ai/flux-2-flex/edit"


def png(width=64, height=48) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def output(url: str, nsfw: bool = False) -> dict:
    return {"images": [{"url": url, "width": 64, "height": 48, "content_type": "image/png"}],
            "seed": 1, "has_nsfw_concepts": [nsfw], "timings": {"inference": 0.1},
            "prompt": "a red fox"}


def req(model_id=SCHNELL, width=1024, height=1024, **kw) -> GenerationRequest:
    return GenerationRequest(prompt="a red fox", model=MODELS[model_id], width=width,
                             height=height, **kw)


def image(width=64, height=48) -> InputImage:
    return InputImage(png(width, height), width, height, False, "image[0]")


class Cost:
    """Counts what the backend books as billed (the ImageCost interface it uses)."""

    def __init__(self) -> None:
        self.booked = 0

    def billed(self, neurons, account=None, usd=None):
        self.booked += 1
        return None


def backend(host=None, **kw) -> FalBackend:
    hosts = (f"127.0.0.1:{host.port}",) if host else ()
    return FalBackend(key=KEY, session=make_session(2), api_base=SYNC, queue_base=QUEUE,
                      timeout=kw.pop("timeout", 10), file_hosts=hosts, **kw)


@pytest.fixture(scope="module")
def host():
    """The strict fake, for its file host and its validation."""
    server = fal.start()
    yield server
    server.stop()


@pytest.fixture
def rsps():
    with responses.RequestsMock() as mock:
        yield mock


def queued(rsps, app="fal-ai/flux", rid="r-1", states=("IN_QUEUE", "COMPLETED"),
           result: dict | None = None) -> str:
    """Mock a queue job of `app` (the URLs fal answers, without the subpath)."""
    base = f"{QUEUE}/{app}/requests/{rid}"
    for state in states:
        rsps.get(base + "/status", json={"status": state, "request_id": rid})
    if result is not None:
        rsps.get(base, json=result)
    return base


def submitted(rsps, endpoint: str, base: str) -> None:
    rsps.post(f"{QUEUE}/{endpoint}", json={
        "request_id": "r-1", "status_url": base + "/status", "response_url": base,
        "cancel_url": base + "/cancel"})


# -- the body per model ----------------------------------------------------------------------

def test_schnell_gets_the_exact_size_steps_guidance_seed_and_the_checker_on():
    body = build_body(MODELS[SCHNELL], req(width=1000, height=600, steps=30, guidance=50.0,
                                           seed=7))
    assert body == {"prompt": "a red fox", "image_size": {"width": 1000, "height": 600},
                    "num_inference_steps": 12, "guidance_scale": 20.0, "seed": 7,
                    "enable_safety_checker": True, "output_format": "png"}


def test_kontext_gets_a_ratio_and_its_one_image_as_a_data_url():
    body = build_body(MODELS[KONTEXT], req(KONTEXT, 1920, 1080, images=(image(),)))
    assert body["aspect_ratio"] == "16:9" and "image_size" not in body
    assert body["image_url"].startswith("data:image/png;base64,iVBOR")
    assert "enable_safety_checker" not in body and "num_images" not in body


def test_the_flux_2_edit_gets_its_images_as_a_list():
    body = build_body(MODELS[FLEX_EDIT], req(FLEX_EDIT, images=(image(), image(32, 32))))
    assert len(body["image_urls"]) == 2 and "image_url" not in body


def test_every_body_passes_the_strict_fake_and_never_turns_the_checker_off():
    client = fal.make_app(key=KEY).test_client()
    for spec in FAL_CATALOG:
        images = (image(),) if spec.max_images else ()
        body = build_body(spec, req(spec.id, 1280, 720, steps=20, guidance=5.0, seed=1,
                                    images=images))
        assert body.get("enable_safety_checker", True) is True
        answer = client.post(f"/sync/{endpoint_of(spec)}", json=body,
                             headers={"Authorization": f"Key {KEY}"})
        assert answer.status_code == 200, (spec.id, answer.json)


# -- which path -----------------------------------------------------------------------------

def test_the_sync_call_sends_the_key_and_fals_timeout(rsps):
    rsps.post(f"{SYNC}/fal-ai/flux/schnell", json=output(data_uri(png())))
    made = backend(clock=lambda: 0.0).generate(req())
    assert made.data == png() and made.content_type == "image/png"
    sent = rsps.calls[0].request
    assert sent.headers["Authorization"] == f"Key {KEY}"
    assert sent.headers["X-Fal-Request-Timeout"] == "10"       # the deadline is the nearer


def test_a_sync_request_timeout_moves_to_the_queue_and_uses_its_urls(rsps):
    rsps.post(f"{SYNC}/fal-ai/flux/schnell", status=504,
              json={"detail": "Request timed out", "error_type": "request_timeout"})
    base = queued(rsps, result=output(data_uri(png())))
    submitted(rsps, "fal-ai/flux/schnell", base)
    assert backend().generate(req()).data == png()
    urls = [call.request.url for call in rsps.calls]
    assert urls[1] == f"{QUEUE}/fal-ai/flux/schnell"
    assert urls[2:] == [base + "/status", base + "/status", base]    # no subpath
    assert all(c.request.headers["Authorization"] == f"Key {KEY}" for c in rsps.calls)


def test_a_slow_model_is_queued_at_once(rsps):
    base = queued(rsps, app="fal-ai/flux-2-flex", result=output(data_uri(png())))
    submitted(rsps, "fal-ai/flux-2-flex/edit", base)
    backend().generate(req(FLEX_EDIT, images=(image(),)))
    assert rsps.calls[0].request.url == f"{QUEUE}/fal-ai/flux-2-flex/edit"


def test_queue_urls_on_another_host_are_not_followed(rsps):
    rsps.post(f"{SYNC}/fal-ai/flux/schnell", status=504, json={"detail": "timeout"},
              headers={"X-Fal-Error-Type": "request_timeout"})
    submitted(rsps, "fal-ai/flux/schnell", "https://elsewhere.example/requests/r-1")
    with pytest.raises(UpstreamError, match="not on FAL_QUEUE_BASE's host"):
        backend().generate(req())
    assert len(rsps.calls) == 2                  # the key never went to elsewhere.example


# -- errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize("status, body, error, words", [
    (401, {"detail": "Unauthorized"}, UpstreamAuthFailed, "FAL_KEY"),
    (403, {"detail": "User is locked. Reason: Exhausted balance."}, QuotaExceeded,
     "no credit"),
    (422, {"detail": [{"loc": ["body", "image_size", "width"], "msg": "too large",
                       "type": "less_than_equal"}]}, InvalidRequest, "`image_size.width`"),
    (422, {"detail": "The prompt could not be processed"}, InvalidRequest,
     "could not be processed"),
    (422, {"detail": [{"loc": ["body", "prompt"], "msg": "flagged",
                       "type": "content_policy_violation"}]}, ContentPolicy, "Rephrase"),
    (503, {"detail": "No runner", "error_type": "runner_unavailable"}, UpstreamError,
     "runner_unavailable"),
    (500, {"detail": f"boom with {KEY}", "error_type": "internal_error"}, UpstreamError,
     "internal_error"),
])
def test_errors_map_to_the_error_tree(rsps, status, body, error, words):
    rsps.post(f"{SYNC}/fal-ai/flux/schnell", json=body, status=status)
    with pytest.raises(error) as info:
        backend().generate(req())
    assert type(info.value) is error and words in info.value.message
    assert "SECRET" not in info.value.message
    assert len(rsps.calls) == 1                  # no retry, no queue


def test_a_rate_limit_passes_the_retry_after_on_and_may_fall_back(rsps):
    rsps.post(f"{SYNC}/fal-ai/flux/schnell", json={"detail": "limit"}, status=429,
              headers={"Retry-After": "12"})
    with pytest.raises(RateLimited) as info:
        backend().generate(req())
    assert info.value.retry_after == 12 and info.value.fallback == "rate_limit"


def test_a_failed_queue_job_maps_its_error_type(rsps):
    rsps.post(f"{SYNC}/fal-ai/flux/schnell", status=504, json={"error_type": "startup_timeout"})
    base = f"{QUEUE}/fal-ai/flux/requests/r-1"
    rsps.get(base + "/status", json={"status": "COMPLETED", "error": "runner died",
                                     "error_type": "runner_disconnected"})
    submitted(rsps, "fal-ai/flux/schnell", base)
    with pytest.raises(UpstreamError) as info:
        backend().generate(req())
    assert "runner_disconnected" in info.value.message and info.value.status == 502


def test_a_flagged_picture_is_refused_and_booked(rsps):
    rsps.post(f"{SYNC}/fal-ai/flux/schnell", json=output(data_uri(png()), nsfw=True))
    cost = Cost()
    with pytest.raises(ContentPolicy) as info:
        backend().generate(req(cost=cost))          # type: ignore[arg-type]
    assert info.value.code == "content_policy_violation" and cost.booked == 1


# -- cancel and the deadline -----------------------------------------------------------------

def test_a_client_gone_while_queued_cancels_the_job(rsps):
    gone = threading.Event()
    rsps.post(f"{SYNC}/fal-ai/flux/schnell", status=504, json={"error_type": "request_timeout"})
    base = f"{QUEUE}/fal-ai/flux/requests/r-1"

    def still_queued(request):
        gone.set()                                   # the client leaves during the poll
        return 200, {}, json.dumps({"status": "IN_QUEUE", "queue_position": 3})

    rsps.add_callback(responses.GET, base + "/status", callback=still_queued)
    rsps.put(base + "/cancel", status=202, json={"status": "CANCELLATION_REQUESTED"})
    submitted(rsps, "fal-ai/flux/schnell", base)
    cost = Cost()
    with pytest.raises(Cancelled):
        backend().generate(req(cancel=gone, cost=cost))     # type: ignore[arg-type]
    assert rsps.calls[-1].request.method == "PUT" and cost.booked == 0


def test_a_job_already_running_is_booked_when_the_cancel_is_refused(rsps):
    gone = threading.Event()
    base = f"{QUEUE}/fal-ai/flux-2-flex/requests/r-1"

    def running(request):
        gone.set()
        return 200, {}, json.dumps({"status": "IN_PROGRESS"})

    rsps.add_callback(responses.GET, base + "/status", callback=running)
    rsps.put(base + "/cancel", status=400, json={"status": "IN_PROGRESS"})
    submitted(rsps, "fal-ai/flux-2-flex/edit", base)
    cost = Cost()
    with pytest.raises(Cancelled):
        backend().generate(req(FLEX_EDIT, images=(image(),), cancel=gone,
                               cost=cost))                    # type: ignore[arg-type]
    assert cost.booked == 1


def test_the_deadline_ends_the_wait_and_cancels(rsps):
    now = [0.0]
    base = f"{QUEUE}/fal-ai/flux-2-flex/requests/r-1"

    def queued_forever(request):
        now[0] += 4.0                                # each poll costs four fake seconds
        return 200, {}, json.dumps({"status": "IN_QUEUE"})

    rsps.add_callback(responses.GET, base + "/status", callback=queued_forever)
    rsps.put(base + "/cancel", status=202, json={"status": "CANCELLATION_REQUESTED"})
    submitted(rsps, "fal-ai/flux-2-flex/edit", base)
    with pytest.raises(UpstreamTimeout, match="UPSTREAM_TIMEOUT"):
        backend(timeout=10, clock=lambda: now[0]).generate(req(FLEX_EDIT, images=(image(),)))
    assert rsps.calls[-1].request.method == "PUT"


def test_a_client_gone_before_the_call_calls_nothing(rsps):
    gone = threading.Event()
    gone.set()
    with pytest.raises(Cancelled):
        backend().generate(req(cancel=gone))
    assert not rsps.calls


# -- the result file ---------------------------------------------------------------------------

def test_the_file_is_downloaded_without_the_key(host):
    host.reset()
    made = FalBackend(key=host.key, session=make_session(2), api_base=host.api_base,
                      queue_base=host.queue_base, timeout=10,
                      file_hosts=(f"127.0.0.1:{host.port}",)).generate(req(width=640, height=480))
    with Image.open(io.BytesIO(made.data)) as picture:
        assert picture.size == (640, 480)
    (fetched,) = host.requests("file")
    assert fetched["authorization_present"] is False


def test_a_file_on_a_host_not_allowed_is_refused(rsps):
    rsps.post(f"{SYNC}/fal-ai/flux/schnell", json=output("https://files.example/x.png"))
    cost = Cost()
    with pytest.raises(UpstreamError, match="PROVIDER_FILE_HOSTS"):
        backend().generate(req(cost=cost))                    # type: ignore[arg-type]
    assert cost.booked == 1                                   # fal drew and billed it


def test_fals_media_domain_is_allowed_over_https_only():
    from urllib.parse import urlsplit
    hosts = backend().files.hosts
    assert hosts.documented(urlsplit("https://v3.fal.media/files/x.jpg"))
    assert not hosts.documented(urlsplit("http://v3.fal.media/files/x.jpg"))
    assert not hosts.documented(urlsplit("https://fal.media.evil.example/x.jpg"))
