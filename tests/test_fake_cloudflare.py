"""The Cloudflare fake behaves as /work/shared/reference/cloudflare-workers-ai.md describes.

These tests pin the fake itself: if it drifted from the reference, the e2e tests built on it
would pass against a Cloudflare that does not exist.
"""

from __future__ import annotations

import base64
import io
import json as json_module
import time

import pytest
import requests
from PIL import Image

from harness.fakes import cloudflare
from harness.fakes.cloudflare import make_app, start

TOKEN = {"Authorization": "Bearer test-cf-token"}
LLM = {"Authorization": "Bearer test-llm-key"}
BASE = "/client/v4/accounts/test-account/ai/run/"
SCHNELL = "@cf/black-forest-labs/flux-1-schnell"


@pytest.fixture
def app():
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


def run(client, model, *, json=None, data=None, headers=TOKEN, prefix=BASE):
    """POST like the service does: JSON in the caller's key order, or real multipart."""
    if json is not None:       # the test client's json= would sort the keys
        return client.post(prefix + model, data=json_module.dumps(json), headers=headers,
                           content_type="application/json")
    return client.post(prefix + model, data=data, headers=headers,
                       content_type="multipart/form-data" if data is not None else None)


def error(resp):
    body = resp.get_json()
    assert body["success"] is False
    return body["errors"][0]["code"], body["errors"][0]["message"]


def envelope_image(resp):
    body = resp.get_json()
    assert body["success"] is True and body["errors"] == [] and body["messages"] == []
    raw = base64.b64decode(body["result"]["image"], validate=True)
    img = Image.open(io.BytesIO(raw))
    return img.format, img.size


def raw_image(resp):
    img = Image.open(io.BytesIO(resp.data))
    return img.format, img.size


# -- flux-1-schnell (§0) ----------------------------------------------------------------------

def test_original_worker_request_is_rejected_naming_the_fields(client):
    resp = run(client, SCHNELL, json={"prompt": "a cat", "num_steps": 4, "width": 1024,
                                      "height": 576})
    assert resp.status_code == 400
    code, message = error(resp)
    assert code == 5006
    assert message == ("AiError: Bad input: Additional or unevaluated properties "
                       "'/num_steps, /width, /height' at '/' not allowed")


def test_schnell_prompt_and_steps_give_a_1024_jpeg(client):
    resp = run(client, SCHNELL, json={"prompt": "a cat", "steps": 4})
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    assert resp.get_json()["result"]["image"].startswith("/9j/")   # JPEG magic, base64
    assert envelope_image(resp) == ("JPEG", (1024, 1024))


@pytest.mark.parametrize("body, fragment", [
    ({"prompt": "x" * 2049}, "Length of '/prompt' must be <= 2048"),
    ({"prompt": ""}, "Length of '/prompt' must be >= 1"),
    ({"prompt": "x", "steps": 9}, "Value of '/steps' must be <= 8"),
    ({"prompt": "x", "steps": 0}, "Value of '/steps' must be >= 1"),
    ({"prompt": "x", "steps": "4"}, "Type mismatch of '/steps', 'string' not in 'integer'"),
    ({"prompt": "x", "steps": True}, "'boolean' not in 'integer'"),
    ({"prompt": "x", "steps": 4.5}, "'number' not in 'integer'"),
    ({"prompt": ["x"]}, "Type mismatch of '/prompt', 'array' not in 'string'"),
    ({"steps": 4}, "Missing required properties '/prompt'"),
    ({"prompt": "x", "seed": 1}, "'/seed' at '/' not allowed"),
    ([{"prompt": "x"}], "'array' not in 'object'"),
])
def test_schnell_schema_violations_are_5006(client, body, fragment):
    resp = run(client, SCHNELL, json=body)
    assert resp.status_code == 400
    code, message = error(resp)
    assert code == 5006 and fragment in message


def test_json_model_rejects_a_non_json_body(client):
    resp = client.post(BASE + SCHNELL, data=b"prompt=cat", headers=TOKEN,
                       content_type="text/plain")
    assert resp.status_code == 400 and error(resp)[0] == 5006
    resp = run(client, SCHNELL, data={"prompt": "cat"})   # multipart to a JSON model
    assert resp.status_code == 400 and error(resp)[0] == 5006


# -- the other models: encoding, response kind, size (§1, §3) ----------------------------------

@pytest.mark.parametrize("model, body, kind, expected", [
    ("@cf/leonardo/lucid-origin", {"prompt": "x"}, "envelope", ("JPEG", (1120, 1120))),
    ("@cf/leonardo/lucid-origin", {"prompt": "x", "width": 800, "height": 600, "steps": 20},
     "envelope", ("JPEG", (800, 600))),
    ("@cf/leonardo/lucid-origin", {"prompt": "x", "num_steps": 40, "guidance": 4.5, "seed": 0},
     "envelope", ("JPEG", (1120, 1120))),
    ("@cf/leonardo/phoenix-1.0", {"prompt": "x"}, "image/jpeg", ("JPEG", (1024, 1024))),
    ("@cf/leonardo/phoenix-1.0", {"prompt": "x", "width": 640, "height": 480, "num_steps": 25,
                                  "guidance": 2, "seed": 1, "negative_prompt": "dogs"},
     "image/jpeg", ("JPEG", (640, 480))),
    ("@cf/bytedance/stable-diffusion-xl-lightning", {"prompt": "x"}, "image/png",
     ("PNG", (1024, 1024))),
    ("@cf/stabilityai/stable-diffusion-xl-base-1.0",
     {"prompt": "x", "width": 512, "height": 768, "num_steps": 20, "guidance": 7.5, "seed": 3,
      "negative_prompt": "y", "strength": 0.5}, "image/png", ("PNG", (512, 768))),
    ("@cf/lykon/dreamshaper-8-lcm", {"prompt": "x", "width": 256, "height": 256,
                                     "image": [0, 255]}, "image/png", ("PNG", (256, 256))),
])
def test_json_models_happy_path(client, model, body, kind, expected):
    resp = run(client, model, json=body)
    assert resp.status_code == 200, resp.data[:300]
    if kind == "envelope":
        assert resp.mimetype == "application/json"
        assert envelope_image(resp) == expected
    else:
        assert resp.mimetype == kind          # raw bytes, no envelope
        assert raw_image(resp) == expected


@pytest.mark.parametrize("model, body, fragment", [
    ("@cf/leonardo/phoenix-1.0", {"prompt": "x", "steps": 4}, "'/steps' at '/' not allowed"),
    ("@cf/leonardo/phoenix-1.0", {"prompt": "x", "guidance": 1}, "'/guidance' must be >= 2"),
    ("@cf/leonardo/phoenix-1.0", {"prompt": "x", "width": 2049}, "'/width' must be <= 2048"),
    ("@cf/leonardo/lucid-origin", {"prompt": "x", "steps": 41}, "'/steps' must be <= 40"),
    ("@cf/leonardo/lucid-origin", {"prompt": "x", "seed": -1}, "'/seed' must be >= 0"),
    ("@cf/bytedance/stable-diffusion-xl-lightning", {"prompt": "x", "num_steps": 21},
     "'/num_steps' must be <= 20"),
    ("@cf/bytedance/stable-diffusion-xl-lightning", {"prompt": "x", "width": 128},
     "'/width' must be >= 256"),
    ("@cf/lykon/dreamshaper-8-lcm", {"prompt": "x", "steps": 4}, "'/steps' at '/' not allowed"),
    ("@cf/lykon/dreamshaper-8-lcm", {"prompt": "x", "image": [256]}, "'/image/0' must be <= 255"),
])
def test_json_models_reject_what_their_schema_does_not_allow(client, model, body, fragment):
    resp = run(client, model, json=body)
    assert resp.status_code == 400
    code, message = error(resp)
    assert code == 5006 and fragment in message


@pytest.mark.parametrize("model", ["@cf/black-forest-labs/flux-2-dev",
                                   "@cf/black-forest-labs/flux-2-klein-4b",
                                   "@cf/black-forest-labs/flux-2-klein-9b"])
def test_flux2_takes_multipart_and_answers_png_of_the_requested_size(client, model):
    resp = run(client, model, data={"prompt": "x", "width": "512", "height": "384",
                                    "guidance": "3.5", "seed": "42"})
    assert resp.status_code == 200, resp.data[:300]
    assert envelope_image(resp) == ("PNG", (512, 384))
    assert envelope_image(run(client, model, data={"prompt": "x"})) == ("PNG", (1024, 768))
    # A JSON body misses the multipart-only oneOf (§2).
    resp = run(client, model, json={"prompt": "x"})
    assert resp.status_code == 400
    code, message = error(resp)
    assert code == 5006 and "oneOf at '/' not met" in message


def test_flux2_form_fields_must_parse_and_be_in_range(client):
    dev = "@cf/black-forest-labs/flux-2-dev"
    assert run(client, dev, data={"prompt": "x", "steps": "25"}).status_code == 200
    for data, fragment in [({"prompt": "x", "width": "wide"}, "'/width', 'string' not in"),
                           ({"prompt": "x", "width": "2048"}, "'/width' must be <= 1920"),
                           ({"prompt": "x", "height": "255"}, "'/height' must be >= 256"),
                           ({"prompt": "x", "num_steps": "4"}, "'/num_steps' at '/'"),
                           ({"width": "512"}, "Missing required properties '/prompt'")]:
        resp = run(client, dev, data=data)
        assert resp.status_code == 400 and fragment in error(resp)[1], data


def test_klein_rejects_steps(client):
    resp = run(client, "@cf/black-forest-labs/flux-2-klein-4b", data={"prompt": "x", "steps": "4"})
    assert resp.status_code == 400
    assert error(resp) == (5006, "AiError: Bad input: Additional or unevaluated properties "
                                 "'/steps' at '/' not allowed")


def test_flux2_reference_images(client):
    def png(size):
        out = io.BytesIO()
        Image.new("RGB", size).save(out, "PNG")
        return io.BytesIO(out.getvalue())

    dev = "@cf/black-forest-labs/flux-2-dev"
    ok = run(client, dev, data={"prompt": "x", "input_image_0": (png((256, 256)), "a.png")})
    assert ok.status_code == 200
    big = run(client, dev, data={"prompt": "x", "input_image_0": (png((1024, 1024)), "a.png")})
    assert big.status_code == 400 and error(big)[0] == 5006
    junk = run(client, dev, data={"prompt": "x", "input_image_0": (io.BytesIO(b"no"), "a.png")})
    assert junk.status_code == 400 and error(junk)[0] == 3030
    many = run(client, dev, data={"prompt": "x", "input_image_4": (png((8, 8)), "a.png")})
    assert many.status_code == 400 and "'/input_image_4'" in error(many)[1]


# -- routing and auth (§3, §4, §7) ---------------------------------------------------------------

def test_auth_account_and_model_errors(client):
    ok_body = {"prompt": "x"}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "test-cf-token"}):
        resp = run(client, SCHNELL, json=ok_body, headers=headers)
        assert resp.status_code == 401
        assert resp.get_json() == {"result": None, "success": False, "messages": [],
                                   "errors": [{"code": 10000, "message": "Authentication error"}]}
    resp = run(client, SCHNELL, json=ok_body, prefix="/client/v4/accounts/other/ai/run/")
    assert resp.status_code == 404
    assert error(resp) == (7003, f"Could not route to /client/v4/accounts/other/ai/run/{SCHNELL}, "
                                 "perhaps your object identifier is invalid?")
    resp = run(client, "@cf/black-forest-labs/flux-3", json=ok_body)
    assert resp.status_code == 400
    assert error(resp) == (5007, "No such model @cf/black-forest-labs/flux-3 or task")
    # Without the /client/v4 prefix (CF_API_BASE may or may not carry it) it works the same.
    resp = run(client, SCHNELL, json=ok_body, prefix="/accounts/test-account/ai/run/")
    assert resp.status_code == 200
    # A doubled prefix is a routing mistake a client can make: 7003.
    resp = run(client, SCHNELL, json=ok_body, prefix="/client/v4" + BASE)
    assert resp.status_code == 404 and error(resp)[0] == 7003


def test_gateway_forms_auth_and_recording():
    app = make_app(gateway_token="gw-token", gateway_run_only=True)
    client = app.test_client()
    gw = {**TOKEN, "cf-aig-authorization": "Bearer gw-token"}
    plain = "/gateway/v1/test-account/my-gw/workers-ai/"
    resp = run(client, SCHNELL, json={"prompt": "x"}, headers=TOKEN, prefix=plain + "run/")
    assert resp.status_code == 401 and error(resp)[0] == 2009
    resp = run(client, SCHNELL, json={"prompt": "x"}, headers=gw, prefix=plain)
    assert resp.status_code == 404 and error(resp)[0] == 7003     # gateway_run_only
    resp = run(client, SCHNELL, json={"prompt": "x"}, headers=gw, prefix=plain + "run/")
    assert resp.status_code == 200
    routes = [(r["route"], r["gateway"], r["status"], r["cf_aig_authorization"])
              for r in client.get("/_fake/requests").get_json()]
    assert routes == [("gateway_run", "my-gw", 401, None),
                      ("gateway", "my-gw", 404, "Bearer gw-token"),
                      ("gateway_run", "my-gw", 200, "Bearer gw-token")]
    # Without a gateway token configured, the documented form needs no cf-aig-authorization.
    open_client = make_app().test_client()
    assert run(open_client, SCHNELL, json={"prompt": "x"}, prefix=plain).status_code == 200


# -- faults (§4) ----------------------------------------------------------------------------------

def add_faults(client, *faults):
    resp = client.post("/_fake/faults", json={"faults": list(faults)})
    assert resp.status_code == 200


FAULTS = [
    ("3030", 400, 3030, "Your output has been flagged"),
    ("4006", 429, 4006, "daily free allocation"),
    ("3036", 429, 3036, "daily free allocation"),
    ("3040", 429, 3040, "Capacity temporarily exceeded, please try again."),
    ("5006", 400, 5006, "Additional or unevaluated properties"),
    ("10000", 401, 10000, "Authentication error"),
    ("7003", 404, 7003, "perhaps your object identifier is invalid?"),
    ("8008", 500, 8008, "AiError: 8008: Internal server error"),
]


@pytest.mark.parametrize("kind, status, code, text", FAULTS)
def test_envelope_faults(client, kind, status, code, text):
    add_faults(client, kind)
    resp = run(client, "@cf/leonardo/phoenix-1.0", json={"prompt": "x"})
    assert resp.status_code == status
    assert error(resp)[0] == code and text in error(resp)[1]
    assert run(client, "@cf/leonardo/phoenix-1.0", json={"prompt": "x"}).status_code == 200


def test_other_faults_in_fifo_order(client):
    add_faults(client, "500", "503", "rate_limit", "malformed_json", "no_image", "not_image",
               "bad_base64", "empty")
    answers = [run(client, SCHNELL, json={"prompt": "x"}) for _ in range(9)]
    assert [(r.status_code, r.data) for r in answers[:2]] == [
        (500, b"Internal Server Error"), (503, b"Service Unavailable")]
    limited = answers[2]
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"
    assert "daily" not in error(limited)[1] and error(limited)[0] not in (4006, 3036, 3040)
    assert answers[3].status_code == 200 and answers[3].data == b'{"result": {"image": '
    assert answers[4].get_json() == {"result": {}, "success": True, "errors": [], "messages": []}
    assert base64.b64decode(answers[5].get_json()["result"]["image"]) == b"this is not an image"
    assert answers[6].get_json()["result"]["image"] == "!!!not-base64!!!"
    assert answers[7].status_code == 200 and answers[7].data == b""
    assert answers[8].status_code == 200 and envelope_image(answers[8])[0] == "JPEG"
    faults = [r["fault"] for r in client.get("/_fake/requests").get_json()]
    assert faults == ["500", "503", "rate_limit", "malformed_json", "no_image", "not_image",
                      "bad_base64", "empty", None]


def test_timeout_fault_sleeps_then_answers(client):
    add_faults(client, {"kind": "timeout", "seconds": 0.3})
    started = time.monotonic()
    resp = run(client, SCHNELL, json={"prompt": "x"})
    assert time.monotonic() - started >= 0.3 and resp.status_code == 200


def test_bad_requests_do_not_consume_faults_and_faults_can_be_cleared(client):
    add_faults(client, "3030")
    assert run(client, SCHNELL, json={"prompt": "x", "width": 1}).status_code == 400  # 5006
    assert client.get("/_fake/faults").get_json()["pending"] == [{"kind": "3030"}]
    client.delete("/_fake/faults")
    assert run(client, SCHNELL, json={"prompt": "x"}).status_code == 200
    assert client.post("/_fake/faults", json={"faults": ["nope"]}).status_code == 400


def test_close_fault_needs_a_socket(app, client):
    app.testing = True         # let the exception reach the test instead of becoming a 500
    add_faults(client, "close")
    with pytest.raises(ConnectionAbortedError):
        run(client, SCHNELL, json={"prompt": "x"})


# -- recording ---------------------------------------------------------------------------------

def test_recording_and_reset(client):
    run(client, SCHNELL, json={"prompt": "a cat", "steps": 4})
    run(client, "@cf/black-forest-labs/flux-2-dev", data={"prompt": "a dog", "width": "512"},
        headers={"Authorization": "Bearer nope"})
    first, second = client.get("/_fake/requests").get_json()
    assert first["kind"] == "run" and first["route"] == "direct" and first["model"] == SCHNELL
    assert first["json"] == {"prompt": "a cat", "steps": 4} and first["status"] == 200
    assert first["content_type"] == "application/json"
    assert first["authorization_present"] and first["authorization_valid"]
    assert "test-cf-token" not in str(first)
    assert second["form"] == {"prompt": "a dog", "width": "512"} and second["json"] is None
    assert second["content_type"].startswith("multipart/form-data; boundary=")
    assert second["authorization_valid"] is False and second["status"] == 401
    client.delete("/_fake/requests")
    assert client.get("/_fake/requests").get_json() == []
    add_faults(client, "3030")
    client.post("/_fake/llm", json={"reply": "x"})
    run(client, SCHNELL, json={"prompt": "x"})
    client.post("/_fake/reset")
    assert client.get("/_fake/requests").get_json() == []
    assert client.get("/_fake/faults").get_json() == {"pending": [], "llm_pending": []}
    assert run(client, SCHNELL, json={"prompt": "x"}).status_code == 200


# -- image size option ----------------------------------------------------------------------------

def test_image_kb_makes_jpegs_of_about_that_size():
    client = make_app(image_kb=150).test_client()
    resp = run(client, "@cf/leonardo/phoenix-1.0", json={"prompt": "x"})
    assert abs(len(resp.data) - 150 * 1024) < 150 * 1024 * 0.05
    assert raw_image(resp) == ("JPEG", (1024, 1024))
    assert run(client, "@cf/leonardo/phoenix-1.0", json={"prompt": "x"}).data == resp.data


# -- LLM (§5) -------------------------------------------------------------------------------------

CHAT = {"model": "@cf/zai-org/glm-4.7-flash",
        "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "猫"}]}


def test_llm_reply_auth_and_faults(client):
    resp = client.post("/v1/chat/completions", json=CHAT, headers=LLM)
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["object"] == "chat.completion" and body["model"] == CHAT["model"]
    assert body["choices"][0]["message"] == {"role": "assistant",
                                             "content": cloudflare.DEFAULT_LLM_REPLY}
    resp = client.post("/v1/chat/completions", json=CHAT, headers=TOKEN)
    assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "invalid_api_key"
    # Cloudflare's own OpenAI-compatible endpoint takes the CF token and errs in CF's envelope.
    cf_path = "/client/v4/accounts/test-account/ai/v1/chat/completions"
    assert client.post(cf_path, json=CHAT, headers=TOKEN).status_code == 200
    assert error(client.post(cf_path, json=CHAT, headers=LLM))[0] == 10000
    bad = {**CHAT, "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]}
    assert error(client.post(cf_path, json=bad, headers=TOKEN))[0] == 5006
    assert client.post("/v1/chat/completions", json=bad, headers=LLM).status_code == 400
    assert client.post("/v1/chat/completions", json={"messages": CHAT["messages"]},
                       headers=LLM).status_code == 400

    client.post("/_fake/llm", json={"reply": "A red fox", "faults": [
        {"kind": "timeout", "seconds": 0.05}, "500", "empty"]})
    started = time.monotonic()
    first = client.post("/v1/chat/completions", json=CHAT, headers=LLM)
    assert time.monotonic() - started >= 0.05
    assert first.get_json()["choices"][0]["message"]["content"] == "A red fox"
    assert client.post("/v1/chat/completions", json=CHAT, headers=LLM).status_code == 500
    empty = client.post("/v1/chat/completions", json=CHAT, headers=LLM)
    assert empty.get_json()["choices"][0]["message"]["content"] == ""
    # LLM faults are a separate queue: image generation is unaffected.
    assert run(client, SCHNELL, json={"prompt": "x"}).status_code == 200
    kinds = [r["kind"] for r in client.get("/_fake/requests").get_json()]
    assert kinds.count("llm") == 10 and kinds[-1] == "run"


# -- OpenAI Images API ----------------------------------------------------------------------------

def test_images_api_url_and_b64(client):
    body = {"model": "flux", "prompt": "a cat", "n": 2, "size": "640x360",
            "response_format": "b64_json"}
    resp = client.post("/v1/images/generations", json=body, headers=LLM)
    assert resp.status_code == 200
    data = resp.get_json()["data"]
    assert len(data) == 2
    img = Image.open(io.BytesIO(base64.b64decode(data[0]["b64_json"])))
    assert (img.format, img.size) == ("PNG", (640, 360))

    resp = client.post("/v1/images/generations", json={**body, "n": 1, "response_format": "url"},
                       headers=LLM)
    url = resp.get_json()["data"][0]["url"]
    assert url.startswith("http://localhost/_fake/files/") and url.endswith(".png")
    file = client.get(url.removeprefix("http://localhost"))
    assert file.status_code == 200 and file.mimetype == "image/png"
    assert Image.open(io.BytesIO(file.data)).size == (640, 360)

    assert client.post("/v1/images/generations", json=body, headers=TOKEN).status_code == 401
    assert client.post("/v1/images/generations", json={**body, "size": "big"},
                       headers=LLM).status_code == 400
    add_faults(client, "rate_limit")
    limited = client.post("/v1/images/generations", json=body, headers=LLM)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"


# -- over a real socket ---------------------------------------------------------------------------

def test_started_server_over_http_including_a_dropped_connection():
    server = start(latency=0.05, gateway_token="gw")
    try:
        session = requests.Session()
        url = f"{server.url}{BASE}{SCHNELL}"
        resp = session.post(url, json={"prompt": "x", "steps": 4}, headers=TOKEN, timeout=5)
        assert resp.status_code == 200 and resp.json()["result"]["image"].startswith("/9j/")

        form = {"prompt": (None, "x"), "width": (None, "512"), "height": (None, "512")}
        resp = session.post(f"{server.url}{BASE}@cf/black-forest-labs/flux-2-dev", files=form,
                            headers=TOKEN, timeout=5)
        assert resp.status_code == 200, resp.text[:300]

        server.add_faults("close", {"kind": "timeout", "seconds": 2})
        with pytest.raises(requests.ConnectionError):
            session.post(url, json={"prompt": "x"}, headers=TOKEN, timeout=5)
        with pytest.raises(requests.ReadTimeout):
            session.post(url, json={"prompt": "x"}, headers=TOKEN, timeout=0.5)
        assert session.post(url, json={"prompt": "x"}, headers=TOKEN, timeout=5).ok

        server.set_llm_reply("hello")
        chat = session.post(f"{server.url}/v1/chat/completions", json=CHAT, headers=LLM, timeout=5)
        assert chat.json()["choices"][0]["message"]["content"] == "hello"
        recorded = server.requests()
        assert [r["fault"] for r in recorded] == [None, None, "close", "timeout", None, None]
        assert recorded[1]["form"] == {"prompt": "x", "width": "512", "height": "512"}
        server.reset()
        assert server.requests() == []
    finally:
        server.stop()


def test_fail_rate_injects_random_real_faults():
    app = make_app(fail_rate=1.0)
    client = app.test_client()
    codes = set()
    for _ in range(30):
        resp = client.post("/accounts/test-account/ai/run/@cf/black-forest-labs/flux-1-schnell",
                           json={"prompt": "x"}, headers={"Authorization": "Bearer test-cf-token"})
        assert resp.status_code != 200 or resp.is_json
        codes.add(resp.status_code)
    assert len(codes) >= 2
    ok = make_app(fail_rate=0.0).test_client().post(
        "/accounts/test-account/ai/run/@cf/black-forest-labs/flux-1-schnell",
        json={"prompt": "x"}, headers={"Authorization": "Bearer test-cf-token"})
    assert ok.status_code == 200
