"""Per-model encoding of input images, at the HTTP edge (`responses`), and the demo's edits."""

from __future__ import annotations

import base64
import email
import io
import json
import logging

import pytest
import responses
from PIL import Image

from flux_worker.backends.cloudflare import CloudflareBackend
from flux_worker.backends.demo import DemoBackend
from flux_worker.backends.openai_images import OpenAIImagesBackend, generic_model
from flux_worker.catalog.registry import ModelRegistry, model_for_images
from flux_worker.catalog.workers_ai import CATALOG
from flux_worker.errors import InvalidRequest
from flux_worker.generation.backend import GenerationRequest
from flux_worker.inputs.image import InputImage
from flux_worker.inputs.intake import decode, sd_mask
from flux_worker.net.upstream import make_session

ACCOUNT = "acc0123"
TOKEN = "cfut_SECRET-token-for-encoding"
API = "https://api.cloudflare.com/client/v4"
GATEWAY = f"https://gateway.ai.cloudflare.com/v1/{ACCOUNT}/gw"
MODELS = {m.id: m for m in CATALOG}
KLEIN = MODELS["@cf/black-forest-labs/flux-2-klein-4b"]
DEV = MODELS["@cf/black-forest-labs/flux-2-dev"]
IMG2IMG = MODELS["@cf/runwayml/stable-diffusion-v1-5-img2img"]
INPAINT = MODELS["@cf/runwayml/stable-diffusion-v1-5-inpainting"]
SCHNELL = MODELS["@cf/black-forest-labs/flux-1-schnell"]
PNG_OK = b"\x89PNG\r\n\x1a\n" + b"0" * 32


def picture(size=(900, 600), left=(220, 20, 20), right=(20, 20, 220)) -> InputImage:
    """A two-colour picture (left half red, right half blue), decoded like any input."""
    img = Image.new("RGB", size, right)
    img.paste(left, (0, 0, size[0] // 2, size[1]))
    out = io.BytesIO()
    img.save(out, "PNG")
    return decode(out.getvalue(), "image[0]")


def openai_mask(size=(900, 600)) -> InputImage:
    """An OpenAI mask whose top half is fully transparent (change it)."""
    mask = Image.new("RGBA", size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, size[0], size[1] // 2))
    out = io.BytesIO()
    mask.save(out, "PNG")
    return decode(out.getvalue(), "mask")


def req(model, images=(), **kw) -> GenerationRequest:
    kw.setdefault("width", 1024)
    kw.setdefault("height", 768)
    return GenerationRequest(prompt="make it blue", model=model, images=tuple(images), **kw)


def parts(call) -> dict[str, tuple[str | None, bytes]]:
    """A multipart body as {name: (filename, bytes)}."""
    ctype = call.request.headers["Content-Type"]
    assert ctype.startswith("multipart/form-data; boundary=")
    body = call.request.body if isinstance(call.request.body, bytes) else call.request.body.read()
    msg = email.message_from_bytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body)
    return {p.get_param("name", header="content-disposition"): (p.get_filename(),
                                                                  p.get_payload(decode=True))
            for p in msg.get_payload()}


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size


@pytest.fixture
def rsps():
    with responses.RequestsMock() as mock:
        yield mock


def backend(**kw) -> CloudflareBackend:
    return CloudflareBackend(account_id=ACCOUNT, api_token=TOKEN, session=make_session(2),
                             retries=0, sleep=lambda s: None, **kw)


def run_url(model) -> str:
    return f"{API}/accounts/{ACCOUNT}/ai/run/{model.id}"


def envelope() -> dict:
    return {"result": {"image": base64.b64encode(PNG_OK).decode()}, "success": True,
            "errors": [], "messages": []}


# --- FLUX.2 references ---------------------------------------------------------------------------

def test_flux2_sends_references_as_files_under_512(rsps):
    rsps.post(run_url(KLEIN), json=envelope())
    backend().generate(req(KLEIN, [picture((2000, 1000)), picture((300, 1200))]))
    sent = parts(rsps.calls[0])
    assert sent["prompt"] == (None, b"make it blue")
    assert set(sent) == {"prompt", "width", "height", "input_image_0", "input_image_1"}
    for name, expected in (("input_image_0", (511, 256)), ("input_image_1", (128, 511))):
        filename, data = sent[name]
        assert filename == f"{name}.jpg"
        assert size_of(data) == expected


def test_flux2_sends_at_most_four_references(rsps):
    rsps.post(run_url(DEV), json=envelope())
    backend().generate(req(DEV, [picture((64, 64))] * 5))
    assert sorted(n for n in parts(rsps.calls[0]) if n.startswith("input_image")) == [
        "input_image_0", "input_image_1", "input_image_2", "input_image_3"]


# --- SD 1.5 img2img and inpainting -------------------------------------------------------------

def test_img2img_sends_the_source_as_image_b64_at_the_output_size(rsps):
    rsps.post(run_url(IMG2IMG), body=PNG_OK, content_type="image/png")
    backend().generate(req(IMG2IMG, [picture()], width=700, height=500, strength=0.4, steps=20,
                           seed=7, negative_prompt="blurry", guidance=8.0))
    body = json.loads(rsps.calls[0].request.body)
    assert set(body) == {"prompt", "image_b64", "strength", "num_steps", "width", "height",
                         "seed", "negative_prompt", "guidance"}
    assert body["num_steps"] == 20 and body["strength"] == 0.4
    assert (body["width"], body["height"]) == (704, 504)          # nearest multiples of 8
    assert size_of(base64.b64decode(body["image_b64"])) == (704, 504)


def test_inpainting_sends_a_mask_of_uint8_the_size_of_the_image(rsps):
    rsps.post(run_url(INPAINT), body=PNG_OK, content_type="image/png")
    image = picture()
    mask = sd_mask(openai_mask((300, 200)), image)   # another size: scaled to the image
    backend().generate(req(INPAINT, [image], mask=mask, width=512, height=512))
    body = json.loads(rsps.calls[0].request.body)
    mask_bytes = bytes(body["mask"])
    assert all(isinstance(v, int) and 0 <= v <= 255 for v in body["mask"][:64])
    assert size_of(mask_bytes) == size_of(base64.b64decode(body["image_b64"])) == (512, 512)
    with Image.open(io.BytesIO(mask_bytes)) as out:
        assert out.convert("L").getpixel((256, 20)) > 200         # top: repaint (white)
        assert out.convert("L").getpixel((256, 490)) < 50         # bottom: keep (black)


def test_text_models_ignore_images_in_the_request_body(rsps):
    rsps.post(run_url(SCHNELL), json=envelope())
    backend().generate(req(SCHNELL, [picture()]))
    assert set(json.loads(rsps.calls[0].request.body)) == {"prompt"}


# --- AI Gateway and multipart (reference §8) -----------------------------------------------------

def test_multipart_with_images_skips_the_gateway_and_says_so_once(rsps, caplog):
    caplog.set_level(logging.INFO, logger="flux_worker.cloudflare")
    rsps.post(run_url(KLEIN), json=envelope())
    rsps.post(run_url(KLEIN), json=envelope())
    cf = backend(gateway_url=GATEWAY)
    cf.generate(req(KLEIN, [picture((64, 64))]))
    cf.generate(req(KLEIN, [picture((64, 64))]))
    assert [c.request.url for c in rsps.calls] == [run_url(KLEIN)] * 2
    said = [r for r in caplog.records if "direct route" in r.getMessage()]
    assert len(said) == 1


def test_multipart_falls_back_to_direct_on_gateway_7000_and_remembers(rsps, caplog):
    caplog.set_level(logging.INFO, logger="flux_worker.cloudflare")
    rsps.post(f"{GATEWAY}/workers-ai/{KLEIN.id}", status=500,
              json={"success": False, "result": None, "messages": [],
                    "errors": [{"code": 7000, "message": "AiError: ReadableStreams"}]})
    rsps.post(run_url(KLEIN), json=envelope())
    rsps.post(run_url(KLEIN), json=envelope())
    cf = backend(gateway_url=GATEWAY)
    cf.generate(req(KLEIN))                      # text-only: tries the gateway first
    cf.generate(req(KLEIN))                      # then goes direct straight away
    assert [c.request.url for c in rsps.calls] == [f"{GATEWAY}/workers-ai/{KLEIN.id}",
                                                   run_url(KLEIN), run_url(KLEIN)]
    assert sum("direct route" in r.getMessage() for r in caplog.records) == 1


def test_json_models_keep_using_the_gateway(rsps):
    rsps.post(f"{GATEWAY}/workers-ai/{IMG2IMG.id}", body=PNG_OK, content_type="image/png")
    backend(gateway_url=GATEWAY).generate(req(IMG2IMG, [picture()], width=512, height=512))
    assert rsps.calls[0].request.url.startswith(GATEWAY)


# --- which model draws ---------------------------------------------------------------------------

def test_a_model_without_image_input_is_replaced_by_the_edit_model():
    assert model_for_images(SCHNELL, 2, False, KLEIN) is KLEIN


def test_without_an_edit_model_a_text_model_is_an_error():
    with pytest.raises(InvalidRequest, match="EDIT_MODEL") as info:
        model_for_images(SCHNELL, 1, False, None)
    assert info.value.status == 400


def test_too_many_images_for_the_model():
    with pytest.raises(InvalidRequest, match="at most 1 input image") as info:
        model_for_images(IMG2IMG, 2, False, KLEIN)
    assert info.value.code == "too_many_images"


def test_a_mask_on_a_model_without_masks():
    with pytest.raises(InvalidRequest, match="does not take a mask") as info:
        model_for_images(KLEIN, 1, True, KLEIN)
    assert info.value.param == "mask"


def test_image_models_refuse_text_only_requests():
    with pytest.raises(InvalidRequest, match="needs an input image"):
        INPAINT.check_text_only()
    SCHNELL.check_text_only()


def test_registry_adds_the_edit_model_and_refuses_one_without_image_input():
    registry = ModelRegistry.build(("flux-1-schnell",), "flux-1-schnell",
                                   edit_name="flux-2-klein-4b")
    assert registry.edit_model is KLEIN and KLEIN in registry.models
    with pytest.raises(ValueError, match="takes no input images"):
        ModelRegistry.build((), "flux-1-schnell", edit_name="flux-1-schnell")


def test_capabilities_list_image_input():
    caps = DEV.capabilities()["image_input"]
    assert caps == {"reference_images": 4, "source_image": False, "max_images": 4,
                    "mask": False, "strength": False, "requires_image": False}
    assert INPAINT.capabilities()["image_input"]["mask"] is True


# --- demo ----------------------------------------------------------------------------------------

def test_demo_edit_derives_from_the_input_at_the_stated_size():
    demo = DemoBackend()
    out = demo.generate(req(KLEIN, [picture()], width=640, height=360, seed=1))
    with Image.open(io.BytesIO(out.data)) as img:
        assert img.size == (640, 360)
        left = img.convert("L").getpixel((60, 200))
        right = img.convert("L").getpixel((580, 200))
    # The two halves of the input stay apart: the picture's structure survives the tint.
    assert abs(left - right) > 10


def test_demo_edits_differ_per_seed():
    demo = DemoBackend()
    first = demo.generate(req(KLEIN, [picture()], width=320, height=240, seed=1)).data
    second = demo.generate(req(KLEIN, [picture()], width=320, height=240, seed=2)).data
    assert first != second


def test_demo_with_a_mask_changes_only_the_masked_area():
    demo = DemoBackend()
    image = picture((400, 400), left=(128, 128, 128), right=(128, 128, 128))
    mask = sd_mask(openai_mask((400, 400)), image)
    out = demo.generate(req(INPAINT, [image], mask=mask, width=400, height=400, seed=3))
    with Image.open(io.BytesIO(out.data)) as img:
        kept = img.convert("RGB").getpixel((200, 300))
    assert all(abs(c - 128) <= 6 for c in kept)


# --- IMAGE_BACKEND=openai ------------------------------------------------------------------------

def b64_answer() -> dict:
    return {"created": 1, "data": [{"b64_json": base64.b64encode(PNG_OK).decode()}]}


def test_openai_backend_forwards_edits_with_images_and_mask(rsps):
    rsps.post("https://img.example.test/v1/images/edits", json=b64_answer())
    model = generic_model("gpt-image-1")
    upstream = OpenAIImagesBackend(api_base="https://img.example.test", api_key="k-upstream",
                                   session=make_session(2))
    image = picture((256, 256))
    mask = sd_mask(openai_mask((256, 256)), image)
    out = upstream.generate(req(model, [image, image], mask=mask, width=512, height=512))
    assert out.data == PNG_OK
    sent = parts(rsps.calls[0])
    assert sent["prompt"][1] == b"make it blue" and sent["model"][1] == b"gpt-image-1"
    assert sent["image[]"][0].endswith(".png")
    with Image.open(io.BytesIO(sent["mask"][1])) as returned:
        assert returned.mode == "RGBA"
        assert returned.getchannel("A").getpixel((10, 10)) == 0       # top: change
        assert returned.getchannel("A").getpixel((10, 250)) == 255    # bottom: keep


def test_openai_backend_forwards_variations(rsps):
    rsps.post("https://img.example.test/v1/images/variations", json=b64_answer())
    upstream = OpenAIImagesBackend(api_base="https://img.example.test/v1", api_key="k",
                                   session=make_session(2))
    upstream.generate(req(generic_model("dall-e-2"), [picture((256, 256))], variation=True))
    sent = parts(rsps.calls[0])
    assert "prompt" not in sent and "image" in sent


def test_an_edit_estimate_counts_one_input_tile_per_reference():
    from flux_worker.generation.job import ImageJob
    job = ImageJob(original="x", prompt="x", model=KLEIN, width=1024, height=1024, ratio="1:1",
                   images=(picture((64, 64)), picture((64, 64))))
    assert job.estimate == pytest.approx(KLEIN.estimate(1024, 1024, None, 2))
    assert job.estimate > KLEIN.estimate(1024, 1024, None)
