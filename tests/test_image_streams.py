"""Streamed Images answers and GPT-image parity, through the app (demo backend, or Cloudflare
mocked at the HTTP edge): events, default formats per model name, the GPT-image fields, masks
and sizes. Every answer and event is validated against OpenAI's published schemas
(tests/reference/openai-schemas-2.json)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
import responses
from jsonschema import Draft202012Validator
from PIL import Image

from flux_worker.generation import fitting
from flux_worker.generation.job import ImageOrder
from flux_worker.generation.planner import quality_tier
from tests.support import AUTH, app_with

SCHEMAS = json.loads((Path(__file__).parent / "reference" / "openai-schemas-2.json")
                     .read_text(encoding="utf-8"))
SCHNELL = "@cf/black-forest-labs/flux-1-schnell"
DEV = "@cf/black-forest-labs/flux-2-dev"
INPAINT = "@cf/runwayml/stable-diffusion-v1-5-inpainting"
CF_ACCOUNT, CF_TOKEN = "acc0123456789abcdef", "cf-token-SECRET-1"
RUN = (f"https://api.cloudflare.com/client/v4/accounts/{CF_ACCOUNT}/ai/run/"
       "@cf/black-forest-labs/flux-1-schnell")


def check(name: str, value: dict) -> None:
    """Validate `value` against OpenAI's schema `name`; raise on the first error."""
    Draft202012Validator({"$schema": SCHEMAS["$schema"], "$defs": SCHEMAS["$defs"],
                          "$ref": f"#/$defs/{name}"}).validate(value)


def events(text: str) -> list[tuple[str, dict]]:
    """The (event, data) pairs of an SSE body, refusing what openai-python's reader chokes on."""
    found = []
    for block in text.split("\n\n"):
        lines = [line for line in block.splitlines() if line and not line.startswith(":")]
        if not lines:
            continue
        fields = dict(line.split(": ", 1) for line in lines)
        assert set(fields) == {"event", "data"}, block     # no `id:`, no bare event
        assert fields["data"] != "[DONE]"
        found.append((fields["event"], json.loads(fields["data"])))
    return found


def png(size=(64, 48), colour=(200, 40, 40), mode="RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, colour).save(out, "PNG")
    return out.getvalue()


def mask_png(size=(64, 48)) -> bytes:
    mask = Image.new("RGBA", size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, size[0] // 2, size[1]))
    out = io.BytesIO()
    mask.save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def svc_client():
    with app_with() as (app, services):
        yield app.test_client(), services


@pytest.fixture
def client(svc_client):
    return svc_client[0]


def generate(client, **body):
    return client.post("/v1/images/generations", json={"prompt": "a red fox", **body},
                       headers=AUTH)


def edit(client, **fields):
    data = {"image": (io.BytesIO(png()), "in.png", "image/png"), "prompt": "make it blue",
            **fields}
    return client.post("/v1/images/edits", data=data, headers=AUTH,
                       content_type="multipart/form-data")


# --- streams ---------------------------------------------------------------------------------

def test_a_streamed_generation_sends_one_completed_event_per_image(client):
    resp = generate(client, stream=True, partial_images=2, n=2, size="1024x1024",
                    quality="high", output_format="png")
    assert resp.status_code == 200
    assert resp.mimetype == "text/event-stream"
    assert resp.headers["X-Image-Size"] == "1024x1024"
    text = resp.get_data(as_text=True)
    assert text.startswith(":")                 # a comment at once: headers go out now
    got = events(text)
    assert [name for name, _ in got] == ["image_generation.completed"] * 2
    for name, event in got:
        check("ImageGenStreamEvent", event)
        check("ImageGenCompletedEvent", event)
        assert event["type"] == name
        assert (event["size"], event["quality"], event["background"],
                event["output_format"]) == ("1024x1024", "high", "opaque", "png")
        assert Image.open(io.BytesIO(base64.b64decode(event["b64_json"]))).size == (1024, 1024)
        assert event["usage"]["output_tokens"] == 4 * 170
        # The stored image keeps its link, as this service's extra field.
        assert client.get(event["url"].split("localhost", 1)[1]).status_code == 200


def test_a_streamed_size_outside_openais_enum_is_auto_and_the_header_has_it(client):
    resp = generate(client, stream=True, size="16:9", model="flux-2-klein-4b")
    (name, event), = events(resp.get_data(as_text=True))
    check("ImageGenCompletedEvent", event)
    assert event["size"] == "auto" and resp.headers["X-Image-Size"] == "1024x576"


def test_a_streamed_edit_takes_the_forms_true(client):
    resp = edit(client, stream="true", partial_images="1", model="gpt-image-1")
    assert resp.status_code == 200 and resp.mimetype == "text/event-stream"
    (name, event), = events(resp.get_data(as_text=True))
    assert name == "image_edit.completed"
    check("ImageEditStreamEvent", event)
    check("ImageEditCompletedEvent", event)
    assert event["usage"]["input_tokens_details"]["image_tokens"] == 170   # one 64x48 input


@pytest.mark.parametrize("body, param", [
    ({"stream": "yes"}, "stream"),
    ({"partial_images": 4}, "partial_images"),
    ({"quality": "ultra"}, "quality"),
    ({"output_compression": 101}, "output_compression"),
    ({"background": "transparent"}, "background"),
    ({"moderation": "none"}, "moderation"),
])
def test_refusals_before_the_stream_are_plain_http_errors(client, body, param):
    resp = generate(client, stream=True, **body) if "stream" not in body else \
        generate(client, **body)
    assert resp.status_code == 400 and resp.mimetype == "application/json"
    assert resp.get_json()["error"]["param"] == param
    check("ErrorResponse", resp.get_json())


def test_transparency_is_refused_with_a_reason(client):
    resp = generate(client, background="transparent")
    error = resp.get_json()["error"]
    assert error["code"] == "transparency_not_supported"
    assert "cannot draw a transparent background" in error["message"]
    assert edit(client, background="transparent").status_code == 400


@responses.activate
def test_a_failure_after_the_stream_began_is_an_error_event():
    responses.post(RUN, status=500, json={"success": False, "errors": [
        {"code": 3000, "message": "internal"}], "result": None, "messages": []})
    with app_with(CF_ACCOUNT_ID=CF_ACCOUNT, CF_API_TOKEN=CF_TOKEN,
                  UPSTREAM_RETRIES="0") as (app, _):
        resp = app.test_client().post("/v1/images/generations", headers=AUTH,
                                      json={"prompt": "a fox", "stream": True})
        assert resp.status_code == 200
        (name, event), = events(resp.get_data(as_text=True))
    assert name == "error"
    # openai-python raises APIError for any event whose JSON has a top-level `error`.
    assert set(event["error"]) == {"message", "type", "param", "code"}
    assert event["error"]["message"] and CF_TOKEN not in json.dumps(event)


# --- default formats per model name ---------------------------------------------------------

@pytest.mark.parametrize("model, keys", [
    ("gpt-image-1", {"b64_json"}),
    ("gpt-image-2", {"b64_json"}),
    ("dall-e-2", {"url"}),
    ("dall-e-3", {"url"}),
    ("flux-1-schnell", {"url", "b64_json"}),
    (None, {"url", "b64_json"}),
])
def test_default_formats_follow_the_model_name(client, model, keys):
    resp = generate(client, **({"model": model} if model else {}))
    body = resp.get_json()
    check("ImagesResponse", body)
    assert set(body["data"][0]) - {"seed", "revised_prompt"} == keys
    # Whatever the format, the stored image's link is in X-Image-Links.
    link = resp.headers["X-Image-Links"]
    assert client.get(link.split("localhost", 1)[1]).status_code == 200


@pytest.mark.parametrize("setting, keys", [("url", {"url"}), ("b64_json", {"b64_json"})])
def test_the_operator_sets_the_default_for_own_names(setting, keys):
    with app_with(IMAGE_RESPONSE_FORMAT=setting) as (app, _):
        client = app.test_client()
        own = generate(client, model="flux").get_json()["data"][0]
        gpt = generate(client, model="gpt-image-1").get_json()["data"][0]
    assert set(own) - {"seed"} == keys
    assert set(gpt) - {"seed"} == {"b64_json"}


def test_an_asked_response_format_wins(client):
    assert set(generate(client, model="gpt-image-1", response_format="url")
               .get_json()["data"][0]) == {"url"}


# --- the answer's fields ------------------------------------------------------------------

def test_the_answer_echoes_quality_format_background_and_usage(client):
    body = generate(client, quality="low", output_format="webp",
                    output_compression=40, moderation="low").get_json()
    check("ImagesResponse", body)
    assert (body["quality"], body["output_format"], body["background"]) == (
        "low", "webp", "opaque")
    usage = body["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["output_tokens"] == 4 * 170


def test_a_size_outside_openais_enum_goes_to_the_header(client):
    resp = generate(client, model="flux-1-schnell", size="1024x1536")
    body = resp.get_json()
    check("ImagesResponse", body)
    assert "size" not in body and resp.headers["X-Image-Size"] == "683x1024"


def test_an_openai_names_size_goes_to_a_model_that_makes_it(client):
    resp = generate(client, model="gpt-image-1", size="1024x1536")
    body = resp.get_json()
    check("ImagesResponse", body)
    assert body["size"] == "1024x1536" and resp.headers["X-Image-Size"] == "1024x1536"
    assert body["model"] == DEV and body["requested_model"] == SCHNELL


def test_gpt_image_2_free_sizes_are_accepted(client):
    resp = generate(client, model="gpt-image-2", size="1536x512")
    assert resp.status_code == 200
    assert resp.headers["X-Image-Size"] == "1536x512"
    check("ImagesResponse", resp.get_json())


@pytest.mark.parametrize("model", ["gpt-image-1", "dall-e-2"])
def test_a_mask_with_an_openai_name_goes_to_a_model_that_takes_masks(client, model):
    resp = edit(client, model=model, mask=(io.BytesIO(mask_png()), "m.png", "image/png"))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    check("ImagesResponse", body)
    assert body["model"] == INPAINT


def test_edit_fields_are_declared_and_checked(client):
    resp = edit(client, input_fidelity="high", moderation="auto", quality="standard",
                output_format="jpeg", output_compression="30")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json()["quality"] == "medium"
    bad = edit(client, input_fidelity="max")
    assert bad.status_code == 400 and bad.get_json()["error"]["param"] == "input_fidelity"


# --- the rules, alone -----------------------------------------------------------------------

@pytest.mark.parametrize("quality, tier", [(None, "medium"), ("auto", "medium"),
                                           ("standard", "medium"), ("hd", "high"),
                                           ("low", "low"), ("high", "high")])
def test_quality_tiers(quality, tier):
    assert quality_tier(quality) == tier


def test_quality_scales_the_steps_and_explicit_steps_win(svc_client):
    _, services = svc_client
    planner = services.generations.planner
    schnell = services.models.require("flux-1-schnell")

    def steps(**order):
        return planner.plan(ImageOrder(prompt="a fox", **order), schnell, schnell).steps

    assert (steps(quality="low"), steps(), steps(quality="high")) == (2, 4, 8)
    assert steps(quality="low", steps=6) == 6


def test_output_compression_sets_the_encoders_quality():
    source = fitting.fit(png((256, 256)), 256, 256, "jpeg").data
    noisy = Image.effect_noise((256, 256), 64).convert("RGB")
    out = io.BytesIO()
    noisy.save(out, "JPEG", quality=95)
    small = fitting.fit(out.getvalue(), 256, 256, "jpeg", compression=10).data
    large = fitting.fit(out.getvalue(), 256, 256, "jpeg", compression=95).data
    assert len(small) < len(large)
    # Without a compression an image of the right size and format passes byte for byte.
    assert fitting.fit(source, 256, 256, "jpeg").data == source
