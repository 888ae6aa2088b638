"""The edits and variations endpoints and chat edits, through the test client (demo backend)."""

from __future__ import annotations

import base64
import functools
import io

import diskcache
import pytest
from PIL import Image

from tests import support
from tests.support import AUTH, app_with

INPAINT = "@cf/runwayml/stable-diffusion-v1-5-inpainting"


def png(size=(300, 200), colour=(200, 40, 40), mode="RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, colour if mode == "RGB" else (*colour, 255)).save(out, "PNG")
    return out.getvalue()


def mask_png(size=(300, 200)) -> bytes:
    mask = Image.new("RGBA", size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, size[0], size[1] // 2))
    out = io.BytesIO()
    mask.save(out, "PNG")
    return out.getvalue()


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def files(*images: bytes, name="image", **fields) -> dict:
    body: dict = {k: str(v) for k, v in fields.items()}
    if len(images) == 1:
        body[name] = (io.BytesIO(images[0]), "in.png", "image/png")
    else:
        body[name] = [(io.BytesIO(data), f"in{i}.png", "image/png")
                      for i, data in enumerate(images)]
    return body


@pytest.fixture
def svc_client():
    with app_with() as (app, services):
        yield app.test_client(), services


@pytest.fixture
def client(svc_client):
    return svc_client[0]


def edit(client, data, path="/v1/images/edits"):
    return client.post(path, data=data, headers=AUTH, content_type="multipart/form-data")


def stored(services, url: str) -> Image.Image:
    key = url.rsplit("/", 1)[-1]
    return Image.open(io.BytesIO(services.store.get(key).data))


# --- /v1/images/edits ----------------------------------------------------------------------------

def test_edit_one_image_keeps_its_proportions_and_says_which_model_drew(svc_client):
    client, services = svc_client
    resp = edit(client, files(png((600, 300)), prompt="make it blue"))
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert "size" not in body           # only OpenAI's own sizes are stated (conformance)
    assert body["model"] == "@cf/black-forest-labs/flux-2-klein-4b"
    # No model named: the default (flux-1-schnell) takes no images, so EDIT_MODEL drew.
    assert body["requested_model"] == "@cf/black-forest-labs/flux-1-schnell"
    assert stored(services, body["data"][0]["url"]).size == (1024, 512)


def test_edit_several_images_with_brackets_and_b64(client):
    resp = edit(client, files(png(), png(), png(), name="image[]", prompt="merge them",
                              model="flux-2-dev", response_format="b64_json", n=2, size="512x512"))
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert len(body["data"]) == 2 and "requested_model" not in body
    first, second = (base64.b64decode(item["b64_json"]) for item in body["data"])
    assert first != second                      # each image its own seed
    assert Image.open(io.BytesIO(first)).size == (512, 512)


def test_edit_with_a_mask_on_the_inpainting_model(svc_client):
    client, services = svc_client
    data = files(png((256, 256), (128, 128, 128)), prompt="a hat", model=INPAINT, size="256x256")
    data["mask"] = (io.BytesIO(mask_png((128, 128))), "mask.png", "image/png")
    resp = edit(client, data)
    assert resp.status_code == 200, resp.get_json()
    img = stored(services, resp.get_json()["data"][0]["url"]).convert("RGB")
    bottom = img.getpixel((128, 200))
    assert all(abs(c - 128) <= 8 for c in bottom)   # outside the mask: kept


def test_edit_json_form_with_data_url_and_own_link(svc_client):
    client, services = svc_client
    first = edit(client, files(png(), prompt="x")).get_json()["data"][0]["url"]
    resp = client.post("/images/edits", headers=AUTH, json={
        "prompt": "make it blue", "model": "klein-4b",
        "images": [{"image_url": data_url(png())}, {"image_url": {"url": first}}]})
    assert resp.status_code == 200, resp.get_json()


@pytest.mark.parametrize("data, code, needle", [
    (lambda: files(png(), prompt="x", model="flux-2-dev", **{}) | {
        "image": [(io.BytesIO(png()), f"{i}.png") for i in range(5)]},
     "too_many_images", "At most 4"),
    (lambda: files(b"GIF89a not really", prompt="x"), "invalid_image", "not a PNG, JPEG"),
    # Two images: no model offered takes a mask with more than one image.
    (lambda: files(png(), png(), prompt="x", model="klein-4b") | {
        "mask": (io.BytesIO(mask_png()), "m.png")}, "mask_not_supported", "does not take a mask"),
    (lambda: files(png(), png(), prompt="x", model=INPAINT), "too_many_images", "at most 1"),
    (lambda: files(png(), prompt="x", model=INPAINT), "mask_required", "send a `mask`"),
    (lambda: files(png()), None, "`prompt` is required"),
    (lambda: {"prompt": "x"}, None, "`image` is required"),
])
def test_edit_errors_are_clear_400s(client, data, code, needle):
    resp = edit(client, data())
    assert resp.status_code == 400
    error = resp.get_json()["error"]
    assert needle in error["message"]
    if code:
        assert error["code"] == code


def test_json_edit_errors(client):
    remote = client.post("/v1/images/edits", headers=AUTH, json={
        "prompt": "x", "images": [{"image_url": "https://example.com/cat.png"}]})
    assert remote.status_code == 400
    assert "FETCH_REMOTE_IMAGES" in remote.get_json()["error"]["message"]
    expired = client.post("/v1/images/edits", headers=AUTH, json={
        "prompt": "x", "images": [{"image_url": "https://any.host/image/" + "Z" * 22}]})
    assert expired.status_code == 400
    assert expired.get_json()["error"]["code"] == "image_expired"


def test_text_model_without_edit_model_is_a_400():
    with app_with(EDIT_MODEL="") as (app, _):
        resp = edit(app.test_client(), files(png(), prompt="x", model="flux-1-schnell"))
    assert resp.status_code == 400
    assert "EDIT_MODEL" in resp.get_json()["error"]["message"]


def test_upload_over_max_upload_bytes_is_413_but_json_limit_stays():
    big = png((900, 900))
    with app_with(MAX_UPLOAD_BYTES=len(big) // 2, MAX_BODY_BYTES=4096) as (app, _):
        client = app.test_client()
        resp = edit(client, files(big, prompt="x"))
        assert resp.status_code == 413
        assert "MAX_UPLOAD_BYTES" in resp.get_json()["error"]["message"]
        small = png((40, 40))
        assert edit(client, files(small, prompt="x")).status_code == 200
        assert len(small) < 4096


def test_upload_limit_above_the_json_body_limit():
    photo = png((600, 600))
    with app_with(MAX_BODY_BYTES=1024) as (app, _):
        resp = edit(app.test_client(), files(photo, prompt="x"))
    assert len(photo) > 1024 and resp.status_code == 200


def test_nothing_is_stored_for_a_bad_request(tmp_path):
    with app_with(STORAGE_URL=f"disk:///{tmp_path}/images") as (app, _):
        client = app.test_client()
        for data in (files(b"junk", prompt="x"), files(png(), prompt="x", model=INPAINT)):
            assert edit(client, data).status_code == 400
        assert not image_files(tmp_path)
        assert edit(client, files(png(), prompt="x")).status_code == 200
        assert image_files(tmp_path)


def image_files(root) -> int:
    """How many entries the disk store holds (read with diskcache itself)."""
    with diskcache.Cache(str(root / "images")) as cache:
        return len(cache)


# --- /v1/images/variations -----------------------------------------------------------------------

def test_variations_derive_from_the_input_and_differ(svc_client):
    client, services = svc_client
    resp = edit(client, files(png((400, 400)), n=3), path="/v1/images/variations")
    assert resp.status_code == 200, resp.get_json()
    urls = [item["url"] for item in resp.get_json()["data"]]
    pictures = [stored(services, url).tobytes() for url in urls]
    assert len(set(pictures)) == 3
    assert resp.get_json()["size"] == "1024x1024"


def test_variations_need_exactly_one_image(client):
    resp = edit(client, {"n": "1"}, path="/images/variations")
    assert resp.status_code == 400 and "exactly one image" in resp.get_json()["error"]["message"]


# --- models and generations ----------------------------------------------------------------------

def test_model_capabilities_list_image_input(client):
    caps = client.get(f"/v1/models/{INPAINT}", headers=AUTH).get_json()["capabilities"]
    assert caps["image_input"]["mask"] is True and caps["image_input"]["requires_image"] is True


def test_generations_refuse_image_only_models(client):
    resp = client.post("/v1/images/generations", headers=AUTH,
                       json={"prompt": "a cat", "model": "img2img"})
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "image_required"


# --- chat ----------------------------------------------------------------------------------------

chat = functools.partial(support.chat, model="flux")


def test_chat_with_an_attached_image_is_an_edit(client):
    resp = chat(client, messages=[{"role": "user", "content": [
        {"type": "text", "text": "make it blue"},
        {"type": "image_url", "image_url": {"url": data_url(png((400, 200)))}}]}])
    assert resp.status_code == 200, resp.get_json()
    content = resp.get_json()["choices"][0]["message"]["content"]
    assert "attached image 1 (400x200)" in content
    assert "✏️ Instruction: make it blue" in content
    assert "flux-2-klein-4b (flux-1-schnell takes no images" in content
    assert "📐 Image size: 1024x512" in content
    assert "](http" in content.rsplit("\n", 1)[-1]


def test_chat_edit_flag_takes_the_previous_image(client):
    first = chat(client, messages=[{"role": "user", "content": "a red car"}]).get_json()
    answer = first["choices"][0]["message"]["content"]
    link = answer.rsplit("(", 1)[-1].rstrip(")")
    resp = chat(client, messages=[{"role": "user", "content": "a red car"},
                                  {"role": "assistant", "content": answer},
                                  {"role": "user", "content": "make it blue --edit"}], stream=True)
    text = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert f"[1]({link})" in text
    assert "make it blue" in text and "--edit" not in text.split("Instruction", 1)[1]


def test_chat_edit_without_an_earlier_image_is_a_400(client):
    resp = chat(client, messages=[{"role": "user", "content": "make it blue --edit"}])
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "no_image_to_edit"


def test_chat_with_more_than_four_images_is_a_400(client):
    part = {"type": "image_url", "image_url": {"url": data_url(png((32, 32)))}}
    resp = chat(client, messages=[
        {"role": "user", "content": [{"type": "text", "text": "x"}, *[part] * 5]}])
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "too_many_images"


def test_chat_with_a_remote_image_and_fetching_off_is_a_400(client):
    resp = chat(client, messages=[{"role": "user", "content": [
        {"type": "text", "text": "x"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}], stream=True)
    assert resp.status_code == 400
    assert "FETCH_REMOTE_IMAGES" in resp.get_json()["error"]["message"]


def test_edits_count_against_the_rate_limit_in_images():
    with app_with(RATE_LIMIT="3/minute") as (app, _):
        client = app.test_client()
        assert edit(client, files(png((64, 64)), prompt="x", n=2)).status_code == 200
        assert edit(client, files(png((64, 64)), n=1), "/v1/images/variations").status_code == 200
        refused = edit(client, files(png((64, 64)), prompt="x"))
    assert refused.status_code == 429 and "Retry-After" in refused.headers
