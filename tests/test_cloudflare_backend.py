"""Tests for the Cloudflare Workers AI backend and the shared HTTP session, at the HTTP edge."""

from __future__ import annotations

import base64
import email
import json
import logging
from datetime import datetime, timezone

import pytest
import requests
import responses
from hypothesis import given, settings
from hypothesis import strategies as st

from flux_worker.backends.cloudflare import CloudflareBackend
from flux_worker.backends.cloudflare.failures import seconds_until_utc_midnight
from flux_worker.backends.cloudflare.payloads import build_request
from flux_worker.catalog.workers_ai import CATALOG
from flux_worker.errors import (
    ContentPolicy,
    Overloaded,
    PromptTooLong,
    QuotaExceeded,
    RateLimited,
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
)
from flux_worker.generation.backend import GeneratedImage, GenerationRequest
from flux_worker.net.upstream import make_session

ACCOUNT = "0123456789abcdef0123456789abcdef"
TOKEN = "cfut_SECRET-api-token-4f9a"
GW_TOKEN = "cfgw_SECRET-gateway-token-77b1"
API = "https://api.cloudflare.com/client/v4"
GATEWAY = f"https://gateway.ai.cloudflare.com/v1/{ACCOUNT}/my-gateway"
MODELS = {m.id: m for m in CATALOG}
SCHNELL = MODELS["@cf/black-forest-labs/flux-1-schnell"]
PHOENIX = MODELS["@cf/leonardo/phoenix-1.0"]
SDXL = MODELS["@cf/bytedance/stable-diffusion-xl-lightning"]
JPEG = b"\xff\xd8\xff\xe0fake-jpeg-bytes"
PNG = b"\x89PNG\r\n\x1a\nfake-png-bytes"


def run_url(model_id: str) -> str:
    return f"{API}/accounts/{ACCOUNT}/ai/run/{model_id}"


def envelope_ok(data: bytes = JPEG, prefix: str = "") -> dict:
    return {"result": {"image": prefix + base64.b64encode(data).decode()}, "success": True,
            "errors": [], "messages": []}


def envelope_err(code: int | None, message: str) -> dict:
    error = {"message": message} if code is None else {"code": code, "message": message}
    return {"result": None, "success": False, "errors": [error], "messages": []}


def req(model, prompt="a cute cat", width=1024, height=1024, **kw) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, model=model, width=width, height=height, **kw)


class Recorder:
    """A fake sleep that records the waits instead of waiting."""

    def __init__(self):
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def rsps():
    with responses.RequestsMock() as mock:
        yield mock


@pytest.fixture
def sleep():
    return Recorder()


@pytest.fixture
def make(sleep):
    def factory(**kw) -> CloudflareBackend:
        kw.setdefault("retries", 2)
        return CloudflareBackend(account_id=ACCOUNT, api_token=TOKEN, session=make_session(2),
                                 sleep=sleep, rng=lambda: 1.0, **kw)
    return factory


def sent_json(call) -> dict:
    assert call.request.headers["Content-Type"] == "application/json"
    return json.loads(call.request.body)


def sent_form(call) -> dict[str, str]:
    """Parse a multipart/form-data body back into {name: value}."""
    ctype = call.request.headers["Content-Type"]
    assert ctype.startswith("multipart/form-data; boundary=")
    msg = email.message_from_bytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n"
                                   + call.request.body)
    assert msg.is_multipart()
    return {part.get_param("name", header="content-disposition"):
            part.get_payload(decode=True).decode() for part in msg.get_payload()}


def assert_no_secret(exc: BaseException) -> None:
    for text in (str(exc), getattr(exc, "message", ""), json.dumps(exc.body())):
        assert TOKEN not in text and GW_TOKEN not in text


# -- the exact request for every model ---------------------------------------------------------

FULL = dict(width=1001, height=3000, steps=30, seed=42, guidance=12.5, negative_prompt="blurry")
_SD_SENT = {"prompt": "a cat", "num_steps": 20, "width": 1000, "height": 2048, "seed": 42,
            "guidance": 12.5, "negative_prompt": "blurry"}
_KLEIN_SENT = {"prompt": "a cat", "width": "1000", "height": "1920", "seed": "42",
               "guidance": "12.5"}
EXPECTED = {
    # schnell takes only prompt and steps (max 8): width/height/num_steps/seed get 5006 (§0).
    "@cf/black-forest-labs/flux-1-schnell": ("json", {"prompt": "a cat", "steps": 8}),
    "@cf/black-forest-labs/flux-2-dev": ("multipart", {
        "prompt": "a cat", "steps": "30", "width": "1000", "height": "1920", "seed": "42",
        "guidance": "12.5"}),
    "@cf/black-forest-labs/flux-2-klein-4b": ("multipart", _KLEIN_SENT),
    "@cf/black-forest-labs/flux-2-klein-9b": ("multipart", _KLEIN_SENT),
    "@cf/leonardo/lucid-origin": ("json", {
        "prompt": "a cat", "steps": 30, "width": 1000, "height": 2496, "seed": 42,
        "guidance": 10.0}),
    "@cf/leonardo/phoenix-1.0": ("json", {
        "prompt": "a cat", "num_steps": 30, "width": 1000, "height": 2048, "seed": 42,
        "guidance": 10.0, "negative_prompt": "blurry"}),
    "@cf/bytedance/stable-diffusion-xl-lightning": ("json", _SD_SENT),
    "@cf/stabilityai/stable-diffusion-xl-base-1.0": ("json", _SD_SENT),
    "@cf/lykon/dreamshaper-8-lcm": ("json", _SD_SENT),
    # Image models: the text fields here; their images are tested in test_image_encoding.py.
    "@cf/runwayml/stable-diffusion-v1-5-img2img": ("json", _SD_SENT),
    "@cf/runwayml/stable-diffusion-v1-5-inpainting": ("json", _SD_SENT),
}


def test_expected_table_covers_the_whole_catalog():
    assert set(EXPECTED) == set(MODELS)


@pytest.mark.parametrize("model_id", sorted(MODELS))
def test_exact_request_for_every_model(rsps, make, model_id):
    model = MODELS[model_id]
    encoding, fields = EXPECTED[model_id]
    rsps.post(run_url(model_id), json=envelope_ok())
    # The request as the pipeline hands it over: steps and guidance clamped by the catalog.
    clamped = dict(FULL, steps=model.clamp_steps(FULL["steps"]),
                   guidance=model.clamp_guidance(FULL["guidance"]))
    make(timeout=77).generate(req(model, prompt="a cat", **clamped))
    call = rsps.calls[0]
    # The id's slashes and `@` stay literal in the path.
    assert call.request.url == f"{API}/accounts/{ACCOUNT}/ai/run/{model_id}"
    assert "/ai/run/@cf/" in call.request.url
    assert call.request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert "cf-aig-authorization" not in call.request.headers
    assert call.request.headers["User-Agent"].startswith("flux-worker/")
    assert call.request.req_kwargs["timeout"] == (10.0, 77.0)
    if encoding == "json":
        assert sent_json(call) == fields
    else:
        assert sent_form(call) == fields


def test_schnell_sends_no_size_seed_or_num_steps(rsps, make):
    rsps.post(run_url(SCHNELL.id), json=envelope_ok())
    rsps.post(run_url(SCHNELL.id), json=envelope_ok())
    backend = make()
    backend.generate(req(SCHNELL, width=1024, height=576, steps=8, seed=7, guidance=3.5))
    backend.generate(req(SCHNELL, steps=None))
    bodies = [sent_json(c) for c in rsps.calls]
    for body in bodies:
        assert not {"width", "height", "num_steps", "seed", "guidance",
                    "negative_prompt"} & set(body)
    assert [b.get("steps") for b in bodies] == [8, None]


def test_the_catalog_owns_the_clamps_the_pipeline_applies():
    assert [SCHNELL.clamp_steps(s) for s in (0, 4, 99)] == [1, 4, 8]
    assert SCHNELL.clamp_guidance(3.5) is None and PHOENIX.clamp_guidance(None) is None
    assert [PHOENIX.clamp_guidance(g) for g in (0.0, 5.0, 50.0)] == [2.0, 5.0, 10.0]


def test_sd_rounds_and_clamps_size_and_sends_its_fields(rsps, make):
    rsps.post(run_url(SDXL.id), body=PNG, content_type="image/png")
    make().generate(req(SDXL, width=100, height=1021, steps=4, seed=0, negative_prompt="text"))
    assert sent_json(rsps.calls[0]) == {"prompt": "a cute cat", "num_steps": 4, "width": 256,
                                        "height": 1024, "seed": 0, "negative_prompt": "text"}


def test_klein_never_sends_steps_and_uses_multipart():
    json_body, files = build_request(MODELS["@cf/black-forest-labs/flux-2-klein-4b"],
                                     req(MODELS["@cf/black-forest-labs/flux-2-klein-4b"],
                                         steps=8, width=1024, height=768))
    assert json_body is None
    assert files == {"prompt": (None, "a cute cat"), "width": (None, "1024"),
                     "height": (None, "768")}


def test_optional_fields_are_left_out_when_not_given():
    json_body, files = build_request(PHOENIX, req(PHOENIX, negative_prompt=""))
    assert files is None
    assert json_body == {"prompt": "a cute cat", "width": 1024, "height": 1024}


@settings(max_examples=200, deadline=None)
@given(model=st.sampled_from(CATALOG), width=st.integers(1, 5000), height=st.integers(1, 5000),
       steps=st.none() | st.integers(-5, 100), seed=st.none() | st.integers(0, 2**31),
       guidance=st.none() | st.floats(-50, 50), negative=st.none() | st.text(min_size=1))
def test_build_request_sends_only_accepted_fields_in_range(model, width, height, steps, seed,
                                                           guidance, negative):
    # What the pipeline hands a backend: steps and guidance clamped by the catalog.
    request = req(model, width=width, height=height, seed=seed, negative_prompt=negative,
                  steps=model.clamp_steps(steps) if steps is not None else None,
                  guidance=model.clamp_guidance(guidance))
    json_body, files = build_request(model, request)
    assert (json_body is None) == (model.encoding == "multipart") == (files is not None)
    fields = json_body if json_body is not None else {k: v[1] for k, v in files.items()}
    allowed = {"prompt"}
    allowed |= {model.steps_field} if model.steps_field else set()
    allowed |= {"width", "height"} if model.size else set()
    allowed |= {"seed"} if model.seed else set()
    allowed |= {"guidance"} if model.guidance else set()
    allowed |= {"negative_prompt"} if model.negative_prompt else set()
    assert set(fields) <= allowed
    if model.size:
        for side in (int(fields["width"]), int(fields["height"])):
            assert side % 8 == 0 and model.size.min <= side <= model.size.max
    if model.steps_field and steps is not None:
        assert 1 <= int(fields[model.steps_field]) <= model.steps_max
    if "guidance" in fields:
        lo, hi = model.guidance
        assert lo <= float(fields["guidance"]) <= hi


# -- response kinds ---------------------------------------------------------------------------

def test_json_base64_image(rsps, make):
    rsps.post(run_url(SCHNELL.id), json=envelope_ok(JPEG))
    assert make().generate(req(SCHNELL)) == GeneratedImage(JPEG, content_type=None,
                                                           account=ACCOUNT)


def test_json_base64_image_with_data_url_prefix(rsps, make):
    rsps.post(run_url(SCHNELL.id), json=envelope_ok(JPEG, prefix="data:image/jpeg;base64,"))
    assert make().generate(req(SCHNELL)) == GeneratedImage(JPEG, content_type="image/jpeg",
                                                           account=ACCOUNT)


@pytest.mark.parametrize("model,data,ctype", [(SDXL, PNG, "image/png"),
                                              (PHOENIX, JPEG, "image/jpeg")])
def test_raw_image_bytes(rsps, make, model, data, ctype):
    rsps.post(run_url(model.id), body=data, content_type=ctype)
    assert make().generate(req(model)) == GeneratedImage(data, content_type=ctype,
                                                      account=ACCOUNT)


def test_branches_on_content_type_not_on_model(rsps, make):
    # SDXL is declared binary, but a JSON envelope is still read as one.
    rsps.post(run_url(SDXL.id), json=envelope_ok(PNG))
    assert make().generate(req(SDXL)).data == PNG


def test_undeclared_binary_is_passed_on_for_the_pipeline_to_sniff(rsps, make):
    rsps.post(run_url(SDXL.id), body=PNG, content_type="application/octet-stream")
    assert make().generate(req(SDXL)) == GeneratedImage(PNG, content_type=None,
                                                        account=ACCOUNT)


@pytest.mark.parametrize("kwargs", [
    dict(body=b"{not json", content_type="application/json"),
    dict(json={"result": {}, "success": True, "errors": []}),
    dict(json={"result": {"image": ""}, "success": True}),
    dict(json={"result": {"image": 123}, "success": True}),
    dict(json={"result": {"image": "!!!not*base64!!!"}, "success": True}),
    dict(json={"result": {"image": "abc"}, "success": True}),  # bad padding
    dict(json={"result": {"image": base64.b64encode(JPEG).decode()}}),  # no success
    dict(json=["not", "an", "object"]),
    dict(body=b"", content_type="image/png"),
    dict(body=b"", content_type="application/json"),
    dict(body=b"<html>oops</html>", content_type="text/html"),
], ids=["bad-json", "no-image", "empty-image", "image-not-string", "bad-base64", "bad-padding",
        "no-success", "json-list", "empty-png", "empty-json", "html"])
def test_malformed_answers_are_upstream_errors(rsps, make, kwargs):
    rsps.post(run_url(SCHNELL.id), status=200, **kwargs)
    with pytest.raises(UpstreamError) as info:
        make().generate(req(SCHNELL))
    assert type(info.value) is UpstreamError
    assert info.value.status == 502 and info.value.code == "upstream_error"
    assert info.value.message.startswith(
        f"Cloudflare returned a malformed answer for {SCHNELL.id}: ")
    assert len(rsps.calls) == 1


# -- error mapping ----------------------------------------------------------------------------

FLAGGED = ("AiError: AiError: Your output has been flagged. Please choose another prompt / "
           "input image combination (e900ad1a)")
DAILY = ("AiError: AiError: you have used up your daily free allocation of 10,000 neurons, please "
         "upgrade to Cloudflare's Workers Paid plan if you would like to continue usage. "
         "(3b5c1a2e-0000-4000-8000-000000000000)")


@pytest.mark.parametrize("status,body", [
    (400, {"errors": [{"message": FLAGGED, "code": 3030}], "success": False, "result": {},
           "messages": []}),
    (400, envelope_err(None, "AiError: 3030: Input prompt contains NSFW content")),
    (200, envelope_err(3030, FLAGGED)),
])
def test_safety_filter_is_content_policy_and_not_retried(rsps, make, sleep, status, body):
    rsps.post(run_url(SCHNELL.id), status=status, json=body)
    with pytest.raises(ContentPolicy) as info:
        make().generate(req(SCHNELL))
    err = info.value
    assert (err.status, err.code, err.retry_after) == (400, "content_policy_violation", None)
    assert err.message == ("The image model's safety filter rejected this prompt or its output. "
                           "Rephrase the prompt and try again.")
    assert len(rsps.calls) == 1 and sleep.waits == []


@pytest.mark.parametrize("code,message", [
    (4006, DAILY), (3036, "Account limited: daily free allocation exceeded"),
    (None, DAILY), (9999, "you have used up your daily free allocation of 10,000 neurons"),
])
def test_daily_allocation_is_quota_exceeded_until_midnight_utc(rsps, make, sleep, code, message):
    rsps.post(run_url(SCHNELL.id), status=429, json=envelope_err(code, message))
    before = seconds_until_utc_midnight()
    with pytest.raises(QuotaExceeded) as info:
        make().generate(req(SCHNELL))
    after = seconds_until_utc_midnight()
    err = info.value
    assert (err.status, err.type, err.code) == (429, "insufficient_quota", "insufficient_quota")
    assert after <= err.retry_after <= before or after > before  # midnight may pass mid-test
    assert err.headers() == {"Retry-After": str(err.retry_after)}
    assert "daily free Workers AI allocation" in err.message
    assert "00:00 UTC" in err.message and "Workers Paid" in err.message
    assert len(rsps.calls) == 1 and sleep.waits == []
    assert_no_secret(err)


def test_seconds_until_utc_midnight():
    assert seconds_until_utc_midnight(datetime(2026, 9, 16, 23, 59, tzinfo=timezone.utc)) == 60
    assert seconds_until_utc_midnight(datetime(2026, 9, 16, 0, 0, tzinfo=timezone.utc)) == 86400
    assert seconds_until_utc_midnight(datetime(2026, 12, 31, 12, 0, tzinfo=timezone.utc)) == 43200


CAPACITY = {"success": False, "errors": [
    {"code": 3040, "message": "Capacity temporarily exceeded, please try again."}]}


@pytest.mark.parametrize("retries", [0, 1, 2, 4])
def test_capacity_is_retried_then_overloaded(rsps, make, sleep, retries):
    for _ in range(retries + 1):
        rsps.post(run_url(SCHNELL.id), status=429, json=CAPACITY)
    with pytest.raises(Overloaded) as info:
        make(retries=retries).generate(req(SCHNELL))
    err = info.value
    assert (err.status, err.code, err.retry_after) == (503, "rate_limit_exceeded", 10)
    assert len(rsps.calls) == retries + 1
    # Full jitter with rng() == 1.0: the upper bound of 0.5 s doubling per attempt.
    assert sleep.waits == [0.5, 1.0, 2.0, 4.0][:retries]


def test_capacity_honours_retry_after(rsps, make, sleep):
    for _ in range(3):
        rsps.post(run_url(SCHNELL.id), status=429, json=CAPACITY, headers={"Retry-After": "5"})
    with pytest.raises(Overloaded) as info:
        make().generate(req(SCHNELL))
    assert sleep.waits == [5.0, 5.0]
    assert info.value.retry_after == 5


def test_capacity_then_success(rsps, make, sleep):
    rsps.post(run_url(SCHNELL.id), status=429, json=CAPACITY)
    rsps.post(run_url(SCHNELL.id), json=envelope_ok())
    assert make().generate(req(SCHNELL)).data == JPEG
    assert len(rsps.calls) == 2 and sleep.waits == [0.5]


def test_backoff_is_capped_and_jittered(rsps, sleep):
    for _ in range(7):
        rsps.post(run_url(SCHNELL.id), status=503)
    backend = CloudflareBackend(account_id=ACCOUNT, api_token=TOKEN, session=make_session(1),
                                retries=6, sleep=sleep, rng=lambda: 0.5)
    with pytest.raises(UpstreamError):
        backend.generate(req(SCHNELL))
    assert sleep.waits == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0]


@pytest.mark.parametrize("headers,waits,retry_after", [
    ({}, [0.5, 1.0], 60),
    ({"Retry-After": "7"}, [7.0, 7.0], 7),
    ({"Retry-After": "30"}, [30.0, 30.0], 30),
])
def test_per_minute_rate_limit_is_retried_then_rate_limited(rsps, make, sleep, headers, waits,
                                                            retry_after):
    for _ in range(3):
        rsps.post(run_url(SCHNELL.id), status=429, headers=headers,
                  json=envelope_err(None, "Too many requests"))
    with pytest.raises(RateLimited) as info:
        make().generate(req(SCHNELL))
    err = info.value
    assert (err.status, err.code, err.retry_after) == (429, "rate_limit_exceeded", retry_after)
    assert err.headers() == {"Retry-After": str(retry_after)}
    assert len(rsps.calls) == 3 and sleep.waits == waits


def test_rate_limit_longer_than_the_cap_fails_at_once_with_upstream_retry_after(rsps, make, sleep):
    rsps.post(run_url(SCHNELL.id), status=429, headers={"Retry-After": "120"})
    with pytest.raises(RateLimited) as info:
        make().generate(req(SCHNELL))
    assert info.value.retry_after == 120
    assert len(rsps.calls) == 1 and sleep.waits == []


def test_retry_after_as_http_date(rsps, make, sleep):
    rsps.post(run_url(SCHNELL.id), status=429, json=CAPACITY,
              headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})  # in the past: 0 s
    rsps.post(run_url(SCHNELL.id), json=envelope_ok())
    make().generate(req(SCHNELL))
    assert sleep.waits == [0.0]


TOKEN_MESSAGE = ("Cloudflare rejected this server's API token (check CF_API_TOKEN / its Workers AI "
                 "permission); your API key was accepted.")


@pytest.mark.parametrize("status,kwargs", [
    (401, dict(json={"result": None, "success": False,
                     "errors": [{"code": 10000, "message": "Authentication error"}],
                     "messages": []})),
    (403, dict(json=envelope_err(10000, "Authentication error"))),
    (403, dict(body=b"Forbidden", content_type="text/plain")),
    (401, dict(body=b"")),
])
def test_rejected_token_is_upstream_auth_failed(rsps, make, sleep, status, kwargs):
    rsps.post(run_url(SCHNELL.id), status=status, **kwargs)
    with pytest.raises(UpstreamAuthFailed) as info:
        make().generate(req(SCHNELL))
    err = info.value
    assert (err.status, err.type, err.code) == (502, "upstream_error", "upstream_auth_failed")
    assert err.message == TOKEN_MESSAGE
    assert len(rsps.calls) == 1 and sleep.waits == []
    assert_no_secret(err)


def test_wrong_account_is_upstream_auth_failed_naming_cf_account_id(rsps, make):
    rsps.post(run_url(SCHNELL.id), status=404, json=envelope_err(
        7003, f"Could not route to /client/v4/accounts/{ACCOUNT}/ai/run/x, perhaps your object "
              "identifier is invalid?"))
    with pytest.raises(UpstreamAuthFailed) as info:
        make().generate(req(SCHNELL))
    assert info.value.status == 502 and "CF_ACCOUNT_ID" in info.value.message
    assert "7003" in info.value.message
    assert len(rsps.calls) == 1


def test_prompt_length_5006_is_prompt_too_long(rsps, make):
    rsps.post(run_url(SCHNELL.id), status=400, json=envelope_err(
        5006, "AiError: Bad input: Error: Length of '/prompt' must be <= 2048 (abcd1234)"))
    with pytest.raises(PromptTooLong) as info:
        make().generate(req(SCHNELL))
    err = info.value
    assert (err.status, err.code, err.param) == (400, "prompt_too_long", "prompt")
    assert "Length of '/prompt' must be <= 2048" in err.message
    assert len(rsps.calls) == 1


def test_schema_5006_is_our_bug_quoting_cloudflare(rsps, make, sleep):
    text = ("AiError: Bad input: Additional or unevaluated properties '/width, /height' at '/' "
            "not allowed")
    rsps.post(run_url(SCHNELL.id), status=400, json=envelope_err(5006, text))
    with pytest.raises(UpstreamError) as info:
        make().generate(req(SCHNELL))
    err = info.value
    # Refused as built: another model would be refused too, so no fallback.
    assert type(err) is UpstreamRejected and err.status == 502 and err.fallback is None
    assert text in err.message and "5006" in err.message
    assert len(rsps.calls) == 1 and sleep.waits == []


@pytest.mark.parametrize("status,code,text", [
    (400, 5007, "No such model @cf/black-forest-labs/flux-1-schnell or task"),
    (404, 3042, "The model name is invalid"),
])
def test_unknown_model_is_upstream_error(rsps, make, status, code, text):
    rsps.post(run_url(SCHNELL.id), status=status, json=envelope_err(code, text))
    with pytest.raises(UpstreamError) as info:
        make().generate(req(SCHNELL))
    assert type(info.value) is UpstreamError and info.value.status == 502
    assert "not available to this Cloudflare account" in info.value.message
    assert text in info.value.message
    assert len(rsps.calls) == 1


@pytest.mark.parametrize("status,code,text", [
    (413, 3006, "Request is too large"),
    (403, 5035, "This model requires the Workers Paid plan"),
    (405, 3023, "Method not allowed"),
])
def test_other_client_errors_are_upstream_errors_quoting_cloudflare(rsps, make, status, code,
                                                                    text):
    rsps.post(run_url(SCHNELL.id), status=status, json=envelope_err(code, text))
    with pytest.raises(UpstreamError) as info:
        make().generate(req(SCHNELL))
    assert type(info.value) is UpstreamRejected and info.value.status == 502
    assert info.value.fallback is None
    assert text in info.value.message and str(code) in info.value.message
    assert len(rsps.calls) == 1


@pytest.mark.parametrize("status,kwargs", [
    (500, {}), (502, dict(body=b"<html>Bad gateway</html>", content_type="text/html")),
    (503, {}), (504, {}),
    (400, dict(json=envelope_err(None, "AiError: 8008: Internal server error"))),
    (500, dict(json=envelope_err(8008, "Internal server error"))),
])
def test_server_faults_are_retried_then_upstream_error(rsps, make, sleep, status, kwargs):
    for _ in range(3):
        rsps.post(run_url(SCHNELL.id), status=status, **kwargs)
    with pytest.raises(UpstreamError) as info:
        make().generate(req(SCHNELL))
    assert type(info.value) is UpstreamError and info.value.status == 502
    assert "after 3 attempts" in info.value.message
    assert len(rsps.calls) == 3 and sleep.waits == [0.5, 1.0]


def test_server_fault_then_success(rsps, make, sleep):
    rsps.post(run_url(SCHNELL.id), status=502)
    rsps.post(run_url(SCHNELL.id), json=envelope_ok())
    assert make().generate(req(SCHNELL)).data == JPEG
    assert len(rsps.calls) == 2


def test_read_timeout_is_upstream_timeout_and_not_retried(rsps, make, sleep):
    rsps.post(run_url(SCHNELL.id), body=requests.ReadTimeout("read timed out"))
    with pytest.raises(UpstreamTimeout) as info:
        make(timeout=45).generate(req(SCHNELL))
    err = info.value
    assert (err.status, err.code) == (504, "upstream_error")
    assert "45 seconds" in err.message
    assert isinstance(err.__cause__, requests.ReadTimeout)
    assert len(rsps.calls) == 1 and sleep.waits == []


def test_connection_error_is_retried_then_upstream_error(rsps, make, sleep):
    for _ in range(3):
        rsps.post(run_url(SCHNELL.id), body=requests.ConnectionError(f"refused {TOKEN}"))
    with pytest.raises(UpstreamError) as info:
        make().generate(req(SCHNELL))
    err = info.value
    assert type(err) is UpstreamError and err.status == 502
    assert "could not reach cloudflare" in err.message.lower()
    assert isinstance(err.__cause__, requests.ConnectionError)
    assert len(rsps.calls) == 3 and sleep.waits == [0.5, 1.0]
    assert_no_secret(err)


def test_connection_error_then_success(rsps, make):
    rsps.post(run_url(SCHNELL.id), body=requests.ConnectionError("reset"))
    rsps.post(run_url(SCHNELL.id), json=envelope_ok())
    assert make().generate(req(SCHNELL)).data == JPEG


def test_connect_timeout_is_retried_because_nothing_ran(rsps, make, sleep):
    for _ in range(3):
        rsps.post(run_url(SCHNELL.id), body=requests.ConnectTimeout("connect timed out"))
    with pytest.raises(UpstreamTimeout) as info:
        make().generate(req(SCHNELL))
    assert info.value.status == 504
    assert isinstance(info.value.__cause__, requests.ConnectTimeout)
    assert len(rsps.calls) == 3


def test_malformed_answer_chains_the_decoding_error(rsps, make):
    rsps.post(run_url(SCHNELL.id), json={"result": {"image": "@@@"}, "success": True})
    with pytest.raises(UpstreamError) as info:
        make().generate(req(SCHNELL))
    assert info.value.__cause__ is not None


def test_tokens_echoed_by_upstream_are_redacted(rsps, make):
    rsps.post(run_url(SCHNELL.id), status=400,
              json=envelope_err(5006, f"Bad input: token {TOKEN} and {GW_TOKEN}"))
    with pytest.raises(UpstreamError) as info:
        make(gateway_url="", gateway_token=GW_TOKEN).generate(req(SCHNELL))
    assert_no_secret(info.value)
    assert "***" in info.value.message


def test_repr_has_no_token(make):
    backend = make(gateway_url=GATEWAY, gateway_token=GW_TOKEN)
    assert TOKEN not in repr(backend) and GW_TOKEN not in repr(backend)


# -- AI Gateway --------------------------------------------------------------------------------

def test_gateway_uses_documented_path_and_both_tokens(rsps, make):
    rsps.post(f"{GATEWAY}/workers-ai/{SCHNELL.id}", json=envelope_ok())
    make(gateway_url=GATEWAY + "/", gateway_token=GW_TOKEN).generate(req(SCHNELL))
    headers = rsps.calls[0].request.headers
    assert rsps.calls[0].request.url == f"{GATEWAY}/workers-ai/{SCHNELL.id}"
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["cf-aig-authorization"] == f"Bearer {GW_TOKEN}"


def test_gateway_without_token_sends_no_gateway_header(rsps, make):
    rsps.post(f"{GATEWAY}/workers-ai/{SCHNELL.id}", json=envelope_ok())
    make(gateway_url=GATEWAY).generate(req(SCHNELL))
    assert "cf-aig-authorization" not in rsps.calls[0].request.headers


def test_gateway_falls_back_to_run_path_on_7003_and_remembers_it(rsps, make, sleep):
    not_routed = envelope_err(7003, "Could not route to /v1/..., perhaps your object identifier "
                                    "is invalid?")
    rsps.post(f"{GATEWAY}/workers-ai/{SCHNELL.id}", status=404, json=not_routed)
    rsps.post(f"{GATEWAY}/workers-ai/run/{SCHNELL.id}", json=envelope_ok())
    rsps.post(f"{GATEWAY}/workers-ai/run/{SCHNELL.id}", json=envelope_ok())
    backend = make(gateway_url=GATEWAY, gateway_token=GW_TOKEN)
    assert backend.generate(req(SCHNELL)).data == JPEG
    assert backend.generate(req(SCHNELL)).data == JPEG
    assert [c.request.url for c in rsps.calls] == [
        f"{GATEWAY}/workers-ai/{SCHNELL.id}",
        f"{GATEWAY}/workers-ai/run/{SCHNELL.id}",
        f"{GATEWAY}/workers-ai/run/{SCHNELL.id}",
    ]
    assert sleep.waits == []
    assert rsps.calls[1].request.headers["cf-aig-authorization"] == f"Bearer {GW_TOKEN}"


def test_gateway_7003_on_both_paths_names_the_account(rsps, make):
    not_routed = envelope_err(7003, "Could not route")
    rsps.post(f"{GATEWAY}/workers-ai/{SCHNELL.id}", status=404, json=not_routed)
    rsps.post(f"{GATEWAY}/workers-ai/run/{SCHNELL.id}", status=404, json=not_routed)
    with pytest.raises(UpstreamAuthFailed) as info:
        make(gateway_url=GATEWAY).generate(req(SCHNELL))
    assert "CF_ACCOUNT_ID" in info.value.message
    assert len(rsps.calls) == 2


@pytest.mark.parametrize("kwargs", [
    dict(json=envelope_err(2009, "Unauthorized")),
    dict(body=b"Unauthorized", content_type="text/plain"),
])
def test_gateway_rejecting_its_token_names_cf_ai_gateway_token(rsps, make, kwargs):
    rsps.post(f"{GATEWAY}/workers-ai/{SCHNELL.id}", status=401, **kwargs)
    with pytest.raises(UpstreamAuthFailed) as info:
        make(gateway_url=GATEWAY, gateway_token=GW_TOKEN).generate(req(SCHNELL))
    assert info.value.status == 502 and "CF_AI_GATEWAY_TOKEN" in info.value.message
    assert len(rsps.calls) == 1
    assert_no_secret(info.value)


def test_workers_ai_token_rejected_through_gateway_names_cf_api_token(rsps, make):
    rsps.post(f"{GATEWAY}/workers-ai/{SCHNELL.id}", status=401,
              json=envelope_err(10000, "Authentication error"))
    with pytest.raises(UpstreamAuthFailed) as info:
        make(gateway_url=GATEWAY, gateway_token=GW_TOKEN).generate(req(SCHNELL))
    assert info.value.message == TOKEN_MESSAGE


def test_gateway_multipart_model(rsps, make):
    dev = MODELS["@cf/black-forest-labs/flux-2-dev"]
    rsps.post(f"{GATEWAY}/workers-ai/{dev.id}", json=envelope_ok(PNG))
    make(gateway_url=GATEWAY).generate(req(dev, steps=20))
    assert sent_form(rsps.calls[0])["steps"] == "20"


# -- logging ----------------------------------------------------------------------------------

def test_logs_one_line_per_attempt_without_secrets(rsps, make, caplog):
    caplog.set_level(logging.DEBUG, logger="flux_worker.backends.cloudflare")
    rsps.post(run_url(SCHNELL.id), status=429, json=CAPACITY)
    rsps.post(run_url(SCHNELL.id), body=requests.ConnectionError(f"boom {TOKEN}"))
    rsps.post(run_url(SCHNELL.id), json=envelope_ok())
    rsps.post(f"{GATEWAY}/workers-ai/{SCHNELL.id}", status=401,
              json=envelope_err(2009, f"bad gateway token {GW_TOKEN}"))
    make().generate(req(SCHNELL))
    with pytest.raises(UpstreamAuthFailed):
        make(gateway_url=GATEWAY, gateway_token=GW_TOKEN).generate(req(SCHNELL))
    lines = [r.getMessage() for r in caplog.records if r.name == "flux_worker.backends.cloudflare"]
    assert len(lines) == 4
    assert all(SCHNELL.id in line for line in lines)
    assert "attempt 1/3: HTTP 429 code 3040" in lines[0]
    assert "attempt 2/3: ConnectionError" in lines[1]
    assert "attempt 3/3: HTTP 200" in lines[2] and " ms" in lines[2]
    assert TOKEN not in caplog.text and GW_TOKEN not in caplog.text
    assert "Bearer" not in caplog.text and "Authorization" not in caplog.text


# -- the shared session -----------------------------------------------------------------------

def test_make_session_pools_connections_without_automatic_retries():
    session = make_session(12)
    adapter = session.get_adapter("https://api.cloudflare.com/")
    assert adapter._pool_connections == 12 and adapter._pool_maxsize == 12
    assert adapter.max_retries.total == 0 and adapter.max_retries.read is False
    assert session.get_adapter("http://localhost/") is adapter
    assert session.headers["User-Agent"].startswith("flux-worker/")


def test_make_session_rejects_an_empty_pool():
    with pytest.raises(ValueError):
        make_session(0)


@pytest.mark.parametrize("env,trusted,verify", [
    ({}, False, True), ({"HTTPS_PROXY": "http://proxy:3128"}, True, True),
    ({"https_proxy": "http://proxy:3128"}, True, True),
    ({"REQUESTS_CA_BUNDLE": "/etc/ssl/corp.pem"}, False, "/etc/ssl/corp.pem"),
    ({"CURL_CA_BUNDLE": "/etc/ssl/curl.pem"}, False, "/etc/ssl/curl.pem"),
    ({"REQUESTS_CA_BUNDLE": "/etc/ssl/corp.pem", "NO_PROXY": "*"}, True, "/etc/ssl/corp.pem")])
def test_session_reads_the_environment_only_for_proxies(monkeypatch, env, trusted, verify):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE",
                 "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    session = make_session(2)
    # A CA bundle is honoured (as requests does) without re-reading the environment per call.
    assert session.trust_env is trusted and session.verify == verify
