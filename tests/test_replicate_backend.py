"""Replicate's backend: the input per model, the held create and the polls, both output shapes,
the error mapping and the cancel (`responses` at the HTTP edge), and every input it builds
passing the strict fake's schemas."""

from __future__ import annotations

import base64
import io
import json
import os
import threading

import pytest
import responses
from PIL import Image

from flux_worker.backends.replicate import ReplicateBackend
from flux_worker.backends.replicate.payloads import DATA_URL_MAX_BYTES, build_input
from flux_worker.catalog.replicate import REPLICATE_CATALOG
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
from harness.fakes.replicate.schemas import MODELS as FAKE_MODELS
from harness.fakes.replicate.schemas import validate

API = "https://api.replicate.com/v1"
TOKEN = "r8_SECRET-replicate-token-42"
MODELS = {spec.id: spec for spec in REPLICATE_CATALOG}
SCHNELL, DEV = "replicate:black-forest-labs/flux-schnell", "replicate:black-forest-labs/flux-dev"
PRO, KONTEXT = ("replicate:black-forest-labs/flux-1.1-pro",
                "replicate:black-forest-labs/flux-kontext-pro")
FLUX2 = "replicate:black-forest-labs/flux-2-pro"
FILE = "https://replicate.delivery/xezq/out-0.png"


def png(width=64, height=48, noise=False) -> bytes:
    img = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)) if noise \
        else Image.new("RGB", (width, height), (200, 30, 30))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def picture(width=64, height=48, noise=False) -> InputImage:
    return InputImage(png(width, height, noise), width, height, False, "image[0]")


def req(model_id, width=1024, height=1024, **kw) -> GenerationRequest:
    return GenerationRequest(prompt="a red fox", model=MODELS[model_id], width=width,
                             height=height, **kw)


class Files:
    """Stands in for ProviderFiles: records the links asked, answers a PNG."""

    def __init__(self):
        self.links: list[str] = []

    def download(self, url, label):
        self.links.append(url)
        return png(), "image/png"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def backend(files=None, clock=None, pause=None, timeout=120.0) -> ReplicateBackend:
    clock = clock or Clock()

    def waited(cancel, seconds):
        clock.now += seconds
        if pause is not None:
            pause(cancel, seconds)

    return ReplicateBackend(token=TOKEN, session=make_session(2), api_base=API,
                            timeout=timeout, files=files or Files(), pause=waited, clock=clock)


def prediction(status="succeeded", output=(FILE,), pid="p1", **more) -> dict:
    own = f"{API}/predictions/{pid}"
    return {"id": pid, "status": status, "output": list(output) if isinstance(output, tuple)
            else output, "error": None, "data_removed": False,
            "urls": {"get": own, "cancel": own + "/cancel"}, **more}


def create_url(model_id: str) -> str:
    return f"{API}/models/{model_id.removeprefix('replicate:')}/predictions"


# -- the input -------------------------------------------------------------------------------

def test_schnell_gets_the_nearest_ratio_one_output_clamped_steps_and_png():
    body = build_input(MODELS[SCHNELL], req(SCHNELL, 1024, 576, steps=9, seed=7))
    assert body == {"input": {"prompt": "a red fox", "aspect_ratio": "16:9", "num_outputs": 1,
                              "num_inference_steps": 4, "seed": 7, "output_format": "png"}}


def test_dev_takes_guidance_and_an_img2img_source_with_its_strength():
    fields = build_input(MODELS[DEV], req(DEV, guidance=30.0, images=(picture(),),
                                          strength=0.6))["input"]
    assert fields["guidance"] == 10.0
    assert fields["image"].startswith("data:image/png;base64,")
    assert fields["prompt_strength"] == 0.6


def test_pro_sends_a_listed_ratio_as_such_and_a_free_size_as_custom_multiples_of_32():
    assert build_input(MODELS[PRO], req(PRO, 1024, 768))["input"]["aspect_ratio"] == "4:3"
    fields = build_input(MODELS[PRO], req(PRO, 1000, 700))["input"]
    assert (fields["aspect_ratio"], fields["width"], fields["height"]) == ("custom", 992, 704)
    big = build_input(MODELS[PRO], req(PRO, 2000, 300))["input"]
    assert (big["width"], big["height"]) == (1440, 288)


def test_a_big_input_is_sent_as_a_jpeg_that_fits_a_data_url():
    image = picture(900, 700, noise=True)
    assert len(image.data) > DATA_URL_MAX_BYTES
    url = build_input(MODELS[KONTEXT], req(KONTEXT, images=(image,)))["input"]["input_image"]
    header, _, data = url.partition(",")
    raw = base64.b64decode(data)
    assert header == "data:image/jpeg;base64" and len(raw) <= DATA_URL_MAX_BYTES
    with Image.open(io.BytesIO(raw)) as img:
        assert img.width / img.height == pytest.approx(900 / 700, rel=0.01)


@pytest.mark.parametrize("model_id", sorted(MODELS))
@pytest.mark.parametrize("size", [(1024, 1024), (1280, 720), (600, 1000)])
def test_every_input_passes_the_strict_fake(model_id, size):
    model = MODELS[model_id]
    images = (picture(),) * model.max_images if model.max_images else ()
    body = build_input(model, req(model_id, *size, steps=3, seed=1, guidance=3.5,
                                  images=images, strength=0.5))
    validate(FAKE_MODELS[model_id.removeprefix("replicate:")], body["input"])


# -- the create, the polls, the output -------------------------------------------------------

@responses.activate
def test_a_held_create_that_succeeds_downloads_the_one_link_without_polling():
    responses.post(create_url(SCHNELL), json=prediction(), status=201)
    files = Files()
    image = backend(files).generate(req(SCHNELL))
    assert image.content_type == "image/png" and files.links == [FILE]
    sent = responses.calls[0].request
    assert sent.headers["Authorization"] == f"Bearer {TOKEN}"
    assert sent.headers["Prefer"] == "wait=60"
    assert json.loads(sent.body)["input"]["num_outputs"] == 1
    assert len(responses.calls) == 1


@responses.activate
def test_the_hold_is_shortened_to_the_time_left():
    responses.post(create_url(SCHNELL), json=prediction(), status=201)
    backend(timeout=20).generate(req(SCHNELL))
    assert responses.calls[0].request.headers["Prefer"] == "wait=18"


@responses.activate
def test_a_running_prediction_is_polled_until_it_succeeds_and_a_string_output_is_read():
    responses.post(create_url(PRO), json=prediction("starting", None), status=201)
    responses.get(f"{API}/predictions/p1", json=prediction("processing", None))
    responses.get(f"{API}/predictions/p1", status=503, json={"detail": "busy"})
    responses.get(f"{API}/predictions/p1", json=prediction(output=FILE))
    files = Files()
    backend(files).generate(req(PRO))
    assert files.links == [FILE]
    assert [c.request.method for c in responses.calls] == ["POST", "GET", "GET", "GET"]
    assert all(c.request.headers["Authorization"] == f"Bearer {TOKEN}"
               for c in responses.calls)


@responses.activate
def test_a_poll_link_on_another_host_is_not_followed_with_the_token():
    answer = prediction("processing", None)
    answer["urls"] = {"get": "https://evil.example/p1", "cancel": "https://evil.example/c"}
    responses.post(create_url(SCHNELL), json=answer, status=201)
    responses.get(f"{API}/predictions/p1", json=prediction())
    backend().generate(req(SCHNELL))
    assert responses.calls[1].request.url == f"{API}/predictions/p1"


@responses.activate
def test_a_caller_who_goes_cancels_the_prediction():
    responses.post(create_url(SCHNELL), json=prediction("processing", None), status=201)
    responses.post(f"{API}/predictions/p1/cancel", json=prediction("canceled", None))
    cancel = threading.Event()
    with pytest.raises(Cancelled):
        backend(pause=lambda event, seconds: cancel.set()).generate(req(SCHNELL, cancel=cancel))
    assert responses.calls[-1].request.url == f"{API}/predictions/p1/cancel"
    assert responses.calls[-1].request.headers["Authorization"] == f"Bearer {TOKEN}"


@responses.activate
def test_the_deadline_cancels_the_prediction_and_answers_a_timeout():
    responses.post(create_url(SCHNELL), json=prediction("processing", None), status=201)
    responses.get(f"{API}/predictions/p1", json=prediction("processing", None))
    responses.post(f"{API}/predictions/p1/cancel", json=prediction("canceled", None))
    with pytest.raises(UpstreamTimeout) as caught:
        backend(timeout=5).generate(req(SCHNELL))
    assert caught.value.fallback == "timeout"
    assert responses.calls[-1].request.url.endswith("/cancel")


@responses.activate
def test_an_output_already_removed_is_an_upstream_error():
    responses.post(create_url(SCHNELL), json=prediction(output=None, data_removed=True),
                   status=201)
    with pytest.raises(UpstreamError, match="data_removed"):
        backend().generate(req(SCHNELL))


# -- errors ----------------------------------------------------------------------------------

def problem(status, detail):
    return {"type": "about:blank", "title": "t", "status": status, "detail": detail}


@pytest.mark.parametrize("status,detail,error,fallback", [
    (401, "You did not pass a valid authentication token", UpstreamAuthFailed, None),
    (402, "You have insufficient credit", QuotaExceeded, "quota"),
    (422, "aspect_ratio: must be one of 1:1, 16:9", InvalidRequest, None),
    (500, "Something went wrong", UpstreamError, "upstream_error"),
])
@responses.activate
def test_http_errors_map_to_the_error_tree(status, detail, error, fallback):
    responses.post(create_url(SCHNELL), json=problem(status, detail + " " + TOKEN),
                   status=status)
    with pytest.raises(error) as caught:
        backend().generate(req(SCHNELL))
    assert type(caught.value) is error and caught.value.fallback == fallback
    assert TOKEN not in caught.value.message
    if status == 422:
        assert "aspect_ratio" in caught.value.message and caught.value.status == 400


@responses.activate
def test_a_throttled_create_keeps_retry_after():
    responses.post(create_url(SCHNELL), status=429, headers={"Retry-After": "7"},
                   json=problem(429, "Request was throttled. Expected available in 7 seconds."))
    with pytest.raises(RateLimited) as caught:
        backend().generate(req(SCHNELL))
    assert caught.value.retry_after == 7 and caught.value.fallback == "rate_limit"


@pytest.mark.parametrize("error,expected", [
    ("NSFW content detected. Try running it again, or try a different prompt.", ContentPolicy),
    ("Prediction failed: CUDA out of memory", UpstreamError),
])
@responses.activate
def test_a_failed_prediction_is_a_refusal_or_an_upstream_error(error, expected):
    responses.post(create_url(SCHNELL), json=prediction("failed", None, error=error),
                   status=201)
    with pytest.raises(expected) as caught:
        backend().generate(req(SCHNELL))
    assert type(caught.value) is expected
    assert (caught.value.fallback is None) == (expected is ContentPolicy)


def test_the_repr_never_shows_the_token():
    assert TOKEN not in repr(backend())


@responses.activate
def test_a_prediction_ending_in_an_unknown_status_is_an_upstream_error():
    responses.post(create_url(SCHNELL), json=prediction("aborted", None), status=201)
    with pytest.raises(UpstreamError, match="aborted"):
        backend().generate(req(SCHNELL))
