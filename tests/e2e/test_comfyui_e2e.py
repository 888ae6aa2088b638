"""ComfyUI end to end: gunicorn with COMFYUI_URL on the strict fake ComfyUI (HTTP and /ws on
127.0.0.1) and the shipped example workflows, through the official `openai` SDK: sizes, seeds,
steps and `n`, an edit's upload, a chat stream showing "step N of M", cancel when the client
goes, ComfyUI's errors as 400/502, a price counted, and fallback to Workers AI when ComfyUI
cannot be reached."""

from __future__ import annotations

import base64

import openai
import pytest
import requests

from harness.fakes.comfyui import FakeComfyUI
from harness.ports import free_port
from harness.service import API_KEY, cloudflare_env, start_service
from tests.support import bearer, png, sdk, size_of, wait_until

pytestmark = pytest.mark.e2e

PRICE = 0.004





@pytest.fixture(scope="module")
def fake_comfy():
    with FakeComfyUI() as server:
        yield server


@pytest.fixture
def comfy(fake_comfy):
    fake_comfy.reset()
    yield fake_comfy
    fake_comfy.reset()


@pytest.fixture(scope="module")
def service(fake_comfy, tmp_path_factory):
    svc = start_service(tmp_path_factory.mktemp("comfyui"), {
        "API_KEY": API_KEY, "COMFYUI_URL": fake_comfy.url, "UPSTREAM_TIMEOUT": "20",
        "COMFYUI_PRICE_USD": str(PRICE)}, workers=1)
    yield svc
    svc.stop()


def test_the_shipped_workflows_are_models_with_their_maps_capabilities(service):
    listed = {m.id for m in sdk(service).models.list().data}
    assert {"comfyui:txt2img", "comfyui:img2img"} <= listed
    detail = requests.get(service.api + "/models/comfyui:img2img", headers=bearer(API_KEY),
                          timeout=10).json()
    assert detail["capabilities"]["image_input"]["requires_image"] is True
    assert detail["cost"]["price_usd"]["per_image"] == PRICE


def test_txt2img_draws_n_images_at_the_size_seed_and_steps_asked(service, comfy):
    result = sdk(service).images.generate(
        model="comfyui:txt2img", prompt="a lighthouse at dusk", size="768x512", n=2,
        response_format="b64_json", extra_body={"seed": 5, "steps": 6})
    assert [size_of(base64.b64decode(item.b64_json)) for item in result.data] == [(768, 512)] * 2
    graphs = [q["graph"] for q in comfy.queued()]
    assert sorted(g["3"]["inputs"]["seed"] for g in graphs) == [5, 6]
    assert {(g["5"]["inputs"]["width"], g["5"]["inputs"]["height"]) for g in graphs} == \
        {(768, 512)}
    assert {g["3"]["inputs"]["steps"] for g in graphs} == {6}
    assert {g["6"]["inputs"]["text"] for g in graphs} == {"a lighthouse at dusk"}
    assert not any(r["authorization_present"] for r in comfy.requests() if "method" in r)


def test_an_edit_uploads_the_picture_and_img2img_loads_it(service, comfy):
    result = sdk(service).images.edit(
        model="comfyui:img2img", image=("cat.png", png(300, 200), "image/png"),
        prompt="make it blue",
        size="512x512", response_format="b64_json")
    assert size_of(base64.b64decode(result.data[0].b64_json)) == (512, 512)
    (upload,) = comfy.requests("/upload/image")
    (queued,) = comfy.queued()
    name = queued["graph"]["10"]["inputs"]["image"]
    assert name in comfy.state.inputs and upload["files"]["image"] == name
    assert queued["graph"]["6"]["inputs"]["text"] == "make it blue"


def test_a_chat_stream_shows_the_steps_as_comfyui_reports_them(service, comfy):
    stream = sdk(service).chat.completions.create(
        model="comfyui:txt2img", stream=True,
        messages=[{"role": "user", "content": "a red fox in snow --steps 6"}])
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    line = "⏳ Step 1 of 6 … ⏳ Step 2 of 6 … ⏳ Step 3 of 6 … ⏳ Step 4 of 6 … ⏳ Step 5 of 6 … " \
           "⏳ Step 6 of 6\n"
    assert line in text, text
    assert text.index(line) < text.index("![")
    assert comfy.queued()[0]["graph"]["3"]["inputs"]["steps"] == 6


def test_a_client_that_leaves_a_stream_interrupts_the_prompt(service, comfy):
    comfy.add_faults({"kind": "slow", "seconds": 0.25})
    stream = sdk(service).chat.completions.create(
        model="comfyui:txt2img", stream=True,
        messages=[{"role": "user", "content": "a slow sunset"}])
    for chunk in stream:
        if chunk.choices and "Step" in (chunk.choices[0].delta.content or ""):
            break
    stream.close()
    wait_until(lambda: comfy.requests("/interrupt"), timeout=15)
    prompt_id = comfy.queued()[0]["prompt_id"]
    wait_until(lambda: prompt_id in comfy.state.history, timeout=15)
    assert comfy.state.history[prompt_id]["status"]["status_str"] == "error"


def test_a_checkpoint_comfyui_lacks_is_a_400_naming_the_node(service, comfy):
    comfy.state.checkpoints = ["other.safetensors"]
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(service).images.generate(model="comfyui:txt2img", prompt="a cat", size="512x512")
    message = caught.value.body["message"]
    assert "node 4 (CheckpointLoaderSimple)" in message and "model.safetensors" in message
    assert caught.value.body["code"] == "comfyui_node_error"


def test_an_execution_error_is_a_502_naming_the_node(service, comfy):
    comfy.add_faults("execution_error")
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(service).images.generate(model="comfyui:txt2img", prompt="a cat", size="512x512")
    assert caught.value.status_code == 502
    assert "node 3 (KSampler)" in caught.value.body["message"]


def test_a_dropped_websocket_still_delivers_through_history(service, comfy):
    comfy.add_faults("ws_drop")
    result = sdk(service).images.generate(model="comfyui:txt2img", prompt="a cat",
                                          size="512x512", response_format="b64_json")
    assert size_of(base64.b64decode(result.data[0].b64_json)) == (512, 512)
    assert comfy.requests("/history/" + comfy.queued()[0]["prompt_id"])


def test_the_price_per_image_is_counted(service, comfy):
    before = requests.get(service.api + "/usage", headers=bearer(API_KEY), timeout=10).json()
    sdk(service).images.generate(model="comfyui:txt2img", prompt="a cat", size="512x512")
    after = requests.get(service.api + "/usage", headers=bearer(API_KEY), timeout=10).json()
    spent = after["key"]["spent_usd"] - before["key"]["spent_usd"]
    assert spent == pytest.approx(PRICE)


def test_an_unreachable_comfyui_falls_back_to_workers_ai(fake_cf, cf, tmp_path):
    service = start_service(tmp_path, cloudflare_env(
        fake_cf, COMFYUI_URL=f"http://127.0.0.1:{free_port()}",
        MODEL_FALLBACKS="comfyui:txt2img=flux-1-schnell"), workers=1)
    try:
        raw = sdk(service).images.with_raw_response.generate(
            model="comfyui:txt2img", prompt="a cute cat", size="512x512")
        result = raw.parse()
        assert result.data[0].url
        assert [r["model"] for r in cf.requests() if r["kind"] == "run"] == \
            ["@cf/black-forest-labs/flux-1-schnell"]
    finally:
        service.stop()
