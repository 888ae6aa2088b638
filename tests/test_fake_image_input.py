"""The fake Cloudflare enforces today's limits on input images (reference §2, §8)."""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image

from harness.fakes.cloudflare import make_app

TOKEN = {"Authorization": "Bearer test-cf-token"}
BASE = "/client/v4/accounts/test-account/ai/run/"
GATEWAY = "/gateway/v1/test-account/gw/workers-ai/"
IMG2IMG = "@cf/runwayml/stable-diffusion-v1-5-img2img"
INPAINT = "@cf/runwayml/stable-diffusion-v1-5-inpainting"
KLEIN = "@cf/black-forest-labs/flux-2-klein-4b"


def png(size=(512, 512), mode="RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def client():
    return make_app().test_client()


def post_json(client, model, body, prefix=BASE):
    return client.post(prefix + model, data=json.dumps(body), headers=TOKEN,
                       content_type="application/json")


def post_form(client, model, data, prefix=BASE):
    return client.post(prefix + model, data=data, headers=TOKEN,
                       content_type="multipart/form-data")


def code_of(resp) -> tuple[int, int, str]:
    error = resp.get_json()["errors"][0]
    return resp.status_code, error["code"], error["message"]


def test_img2img_answers_raw_png_for_a_source_image(client):
    resp = post_json(client, IMG2IMG, {"prompt": "blue", "image_b64": base64.b64encode(
        png()).decode(), "strength": 0.5, "num_steps": 20})
    assert resp.status_code == 200 and resp.mimetype == "image/png"


def test_img2img_takes_the_image_as_uint8_array(client):
    resp = post_json(client, IMG2IMG, {"prompt": "blue", "image": list(png((256, 256)))})
    assert resp.status_code == 200


def test_img2img_without_an_image_is_5006(client):
    status, code, message = code_of(post_json(client, IMG2IMG, {"prompt": "blue"}))
    assert (status, code) == (400, 5006) and "/image" in message


def test_img2img_refuses_a_mask_and_strength_over_1(client):
    source = base64.b64encode(png()).decode()
    assert code_of(post_json(client, IMG2IMG, {"prompt": "x", "image_b64": source,
                                               "mask": list(png())}))[1] == 5006
    assert code_of(post_json(client, IMG2IMG, {"prompt": "x", "image_b64": source,
                                               "strength": 1.5}))[1] == 5006


def test_undecodable_source_is_3030(client):
    status, code, _ = code_of(post_json(client, IMG2IMG, {
        "prompt": "x", "image_b64": base64.b64encode(b"not an image").decode()}))
    assert (status, code) == (400, 3030)


def test_inpainting_needs_a_mask_of_the_image_size(client):
    source = base64.b64encode(png((512, 512))).decode()
    assert code_of(post_json(client, INPAINT, {"prompt": "x", "image_b64": source}))[1] == 5006
    status, code, message = code_of(post_json(client, INPAINT, {
        "prompt": "x", "image_b64": source, "mask": list(png((256, 256), "L"))}))
    assert (status, code) == (400, 5006) and "size of the image" in message
    ok = post_json(client, INPAINT, {"prompt": "x", "image_b64": source,
                                     "mask": list(png((512, 512), "L"))})
    assert ok.status_code == 200 and ok.mimetype == "image/png"


def test_flux2_reference_images_must_be_under_512(client):
    resp = post_form(client, KLEIN, {"prompt": "x",
                                     "input_image_0": (io.BytesIO(png((600, 300))), "a.png")})
    assert code_of(resp)[:2] == (400, 5006)
    at_limit = post_form(client, KLEIN, {"prompt": "x",
                                         "input_image_0": (io.BytesIO(png((512, 300))), "a.png")})
    assert code_of(at_limit)[:2] == (400, 5006)
    ok = post_form(client, KLEIN, {"prompt": "x",
                                   "input_image_0": (io.BytesIO(png((511, 300))), "a.png")})
    assert ok.status_code == 200


def test_flux2_takes_at_most_four_reference_images(client):
    data = {"prompt": "x", **{f"input_image_{i}": (io.BytesIO(png((64, 64))), f"{i}.png")
                              for i in range(5)}}
    status, code, message = code_of(post_form(client, KLEIN, data))
    assert (status, code) == (400, 5006) and "/input_image_4" in message


def test_gateway_can_fail_multipart_calls_with_7000():
    client = make_app(gateway_multipart_7000=True).test_client()
    resp = post_form(client, KLEIN, {"prompt": "x"}, prefix=GATEWAY)
    assert code_of(resp)[:2] == (500, 7000)
    assert post_form(client, KLEIN, {"prompt": "x"}).status_code == 200
