"""The ComfyUI backend: the graph filled from a request, ComfyUI's errors mapped (`responses` at
the HTTP edge), and whole generations against the strict fake on 127.0.0.1 (websocket progress,
/history polling when the socket drops, uploads, cancel by interrupt or queue delete)."""

from __future__ import annotations

import io
import json
import threading

import pytest
import responses
from PIL import Image

from flux_worker.backends.comfyui import ComfyUIBackend
from flux_worker.backends.comfyui.graph import fill
from flux_worker.catalog.comfyui import comfyui_models, load_workflows
from flux_worker.errors import (
    Cancelled,
    InvalidRequest,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
)
from flux_worker.generation.backend import GenerationRequest
from flux_worker.inputs.image import InputImage
from flux_worker.net.upstream import make_session
from harness.fakes.comfyui import FakeComfyUI
from tests.support import wait_until

WORKFLOWS = {w.model_id: w for w in load_workflows(())}
MODELS = {spec.id: spec for spec in comfyui_models(tuple(WORKFLOWS.values()), None)}
# A closed port: the websocket cannot open, so `responses` answers the HTTP calls alone.
CLOSED = "http://127.0.0.1:9"


def png(width=320, height=200) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(out, "PNG")
    return out.getvalue()


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size


def req(model="comfyui:txt2img", width=768, height=512, **kw) -> GenerationRequest:
    return GenerationRequest(prompt="a red fox", model=MODELS[model], width=width,
                             height=height, **kw)


def source_image() -> InputImage:
    return InputImage(png(), 320, 200, False, "image[0]")


def backend(url: str, timeout: float = 10.0) -> ComfyUIBackend:
    return ComfyUIBackend(url=url, workflows=tuple(WORKFLOWS.values()),
                          session=make_session(4), timeout=timeout, poll_seconds=0.05)


@pytest.fixture
def comfy():
    with FakeComfyUI() as server:
        yield server


# -- the graph -------------------------------------------------------------------------------

def test_the_request_fills_the_mapped_inputs_and_leaves_the_rest_as_exported():
    workflow = WORKFLOWS["comfyui:txt2img"]
    graph = fill(workflow, req(seed=42, steps=9, negative_prompt="blurry", guidance=5.5), {})
    assert graph["6"]["inputs"]["text"] == "a red fox"
    assert graph["7"]["inputs"]["text"] == "blurry"
    assert (graph["5"]["inputs"]["width"], graph["5"]["inputs"]["height"]) == (768, 512)
    assert (graph["3"]["inputs"]["seed"], graph["3"]["inputs"]["steps"]) == (42, 9)
    assert graph["3"]["inputs"]["cfg"] == 5.5
    assert graph["3"]["inputs"]["sampler_name"] == "euler"
    assert workflow.graph["6"]["inputs"]["text"] == "Prompt"     # the loaded graph is untouched


def test_without_a_seed_each_graph_gets_its_own_so_comfyui_does_not_answer_from_cache():
    workflow = WORKFLOWS["comfyui:txt2img"]
    seeds = {fill(workflow, req(), {})["3"]["inputs"]["seed"] for _ in range(5)}
    assert len(seeds) > 1
    assert fill(workflow, req(), {})["3"]["inputs"]["steps"] == 20   # the workflow's own


def test_an_edit_graph_loads_the_uploaded_name_and_takes_strength_as_denoise():
    workflow = WORKFLOWS["comfyui:img2img"]
    graph = fill(workflow, req("comfyui:img2img", strength=0.3), {"image": "up (1).png"})
    assert graph["10"]["inputs"]["image"] == "up (1).png"
    assert graph["3"]["inputs"]["denoise"] == 0.3
    assert fill(workflow, req("comfyui:img2img"), {"image": "x.png"})["3"]["inputs"]["denoise"] \
        == 0.6


# -- errors, at the HTTP edge ----------------------------------------------------------------

def _node_error_body(kind="value_not_in_list", input_name="ckpt_name"):
    return {"error": {"type": "prompt_outputs_failed_validation",
                      "message": "Prompt outputs failed validation", "details": "",
                      "extra_info": {}},
            "node_errors": {"4": {"class_type": "CheckpointLoaderSimple",
                                  "dependent_outputs": ["9"],
                                  "errors": [{"type": kind, "message": "Value not in list",
                                              "details": "ckpt_name: 'model.safetensors' not "
                                                         "in ['other.safetensors']",
                                              "extra_info": {"input_name": input_name,
                                                             "received_value":
                                                                 "model.safetensors"}}]}}}


@responses.activate
def test_a_missing_checkpoint_is_a_400_naming_the_node_and_what_comfyui_must_have():
    responses.post(CLOSED + "/prompt", json=_node_error_body(), status=400)
    with pytest.raises(InvalidRequest) as caught:
        backend(CLOSED).generate(req())
    message = caught.value.message
    assert "node 4 (CheckpointLoaderSimple)" in message
    assert "'model.safetensors'" in message and "ComfyUI must have it" in message
    assert caught.value.status == 400 and caught.value.fallback is None


@responses.activate
def test_another_node_error_names_the_node_and_comfyuis_words():
    body = _node_error_body("value_bigger_than_max", "steps")
    body["node_errors"]["4"]["errors"][0].update(message="Value 90000 bigger than max of 10000",
                                                 details="steps")
    responses.post(CLOSED + "/prompt", json=body, status=400)
    with pytest.raises(InvalidRequest, match=r"node 4 \(CheckpointLoaderSimple\).*bigger than"):
        backend(CLOSED).generate(req())


@pytest.mark.parametrize("kind, words", [
    ("invalid_prompt", "a node class it does not have"),
    ("prompt_no_outputs", "no output node"),
    ("no_prompt", "received no workflow"),
])
@responses.activate
def test_a_workflow_comfyui_cannot_run_is_a_502_without_fallback(kind, words):
    responses.post(CLOSED + "/prompt", status=400, json={
        "error": {"type": kind, "message": "Cannot execute", "details": "", "extra_info": {}},
        "node_errors": {}})
    with pytest.raises(UpstreamRejected, match=words) as caught:
        backend(CLOSED).generate(req())
    assert caught.value.status == 502 and caught.value.fallback is None
    assert "comfyui:txt2img" in caught.value.message


@responses.activate
def test_a_5xx_and_an_unreachable_comfyui_let_another_model_draw():
    responses.post(CLOSED + "/prompt", status=500, body="boom")
    with pytest.raises(UpstreamError) as caught:
        backend(CLOSED).generate(req())
    assert caught.value.fallback == "upstream_error"


def test_an_unreachable_comfyui_is_an_upstream_error_naming_no_address():
    with pytest.raises(UpstreamError) as caught:
        backend(CLOSED).generate(req())
    assert caught.value.fallback is not None
    assert "127.0.0.1" not in caught.value.message and "COMFYUI_URL" in caught.value.message


@responses.activate
def test_an_execution_error_in_history_is_a_502_naming_the_node():
    responses.post(CLOSED + "/prompt", json={"prompt_id": "p1", "number": 1, "node_errors": {}})
    responses.get(CLOSED + "/history/p1", json={"p1": {"outputs": {}, "status": {
        "status_str": "error", "completed": False, "messages": [
            ["execution_start", {"prompt_id": "p1"}],
            ["execution_error", {"prompt_id": "p1", "node_id": "3", "node_type": "KSampler",
                                 "exception_message": "CUDA out of memory"}]]}}})
    with pytest.raises(UpstreamError, match=r"node 3 \(KSampler\).*CUDA out of memory") as caught:
        backend(CLOSED).generate(req())
    assert caught.value.status == 502 and caught.value.fallback == "upstream_error"


@responses.activate
def test_history_is_polled_until_the_prompt_is_done_then_the_image_is_viewed():
    responses.post(CLOSED + "/prompt", json={"prompt_id": "p2", "number": 1, "node_errors": {}})
    responses.get(CLOSED + "/history/p2", json={})
    responses.get(CLOSED + "/history/p2", json={"p2": {"outputs": {"9": {"images": [
        {"filename": "a.png", "subfolder": "s", "type": "output"}]}}}})
    responses.get(CLOSED + "/view", body=png(), content_type="image/png")
    image = backend(CLOSED).generate(req())
    assert size_of(image.data) == (320, 200) and image.content_type == "image/png"
    view = responses.calls[-1].request
    assert "filename=a.png" in view.url and "subfolder=s" in view.url
    assert sum("/history/" in c.request.url for c in responses.calls) == 2
    assert all("Authorization" not in c.request.headers for c in responses.calls)


@responses.activate
def test_history_that_never_finishes_ends_at_the_deadline_and_stops_the_prompt():
    responses.post(CLOSED + "/prompt", json={"prompt_id": "p3", "number": 1, "node_errors": {}})
    responses.get(CLOSED + "/history/p3", json={})
    responses.get(CLOSED + "/queue", json={"queue_running": [], "queue_pending": [
        [1, "p3", {}, {}, ["9"]]]})
    responses.post(CLOSED + "/queue", body="")
    with pytest.raises(UpstreamTimeout):
        backend(CLOSED, timeout=0.5).generate(req())
    deleted = [c for c in responses.calls if c.request.method == "POST"
               and c.request.url.endswith("/queue")]
    assert json.loads(deleted[0].request.body) == {"delete": ["p3"]}


# -- against the strict fake -----------------------------------------------------------------

def test_txt2img_through_the_fake_reports_each_step_and_draws_the_size_sent(comfy):
    steps: list[tuple[int, int]] = []
    image = backend(comfy.url).generate(
        req(seed=7, steps=6, progress=lambda n, of: steps.append((n, of))))
    assert size_of(image.data) == (768, 512)
    assert steps == [(n, 6) for n in range(1, 7)]
    (queued,) = comfy.queued()
    assert queued["graph"]["3"]["inputs"]["seed"] == 7
    assert any(r.get("kind") == "ws" and r["client_id"] == queued["client_id"]
               for r in comfy.requests())


def test_a_dropped_websocket_falls_back_to_polling_history(comfy):
    comfy.add_faults("ws_drop")
    steps: list[tuple[int, int]] = []
    image = backend(comfy.url).generate(req(steps=4, progress=lambda n, of: steps.append(n)))
    assert size_of(image.data) == (768, 512)
    assert steps == []                      # the socket closed before the first step
    assert comfy.requests("/history/" + comfy.queued()[0]["prompt_id"])


def test_an_execution_error_over_the_websocket_is_a_502_naming_the_node(comfy):
    comfy.add_faults("execution_error")
    with pytest.raises(UpstreamError, match=r"node 3 \(KSampler\).*out of memory"):
        backend(comfy.url).generate(req())


def test_img2img_uploads_the_picture_and_loads_the_name_comfyui_gave(comfy):
    comfy.state.inputs["taken.png"] = b"another"
    image = backend(comfy.url).generate(req("comfyui:img2img", 512, 512,
                                            images=(source_image(),)))
    assert size_of(image.data) == (512, 512)
    (upload,) = comfy.requests("/upload/image")
    assert upload["form"] == {"type": "input"}
    loaded = comfy.queued()[0]["graph"]["10"]["inputs"]["image"]
    assert loaded in comfy.state.inputs and loaded.startswith("flux-worker-")


def test_a_caller_who_goes_while_the_prompt_runs_interrupts_it(comfy):
    cancel = threading.Event()
    comfy.add_faults({"kind": "slow", "seconds": 0.1})
    done: list[BaseException] = []

    def run() -> None:
        try:
            backend(comfy.url).generate(req(steps=50, cancel=cancel,
                                            progress=lambda n, of: cancel.set()))
        except BaseException as exc:  # handed to the test
            done.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(20)
    assert isinstance(done[0], Cancelled)
    assert comfy.requests("/interrupt")
    prompt_id = comfy.queued()[0]["prompt_id"]
    wait_until(lambda: prompt_id in comfy.state.history)
    assert comfy.state.history[prompt_id]["status"]["status_str"] == "error"


def test_a_caller_who_goes_while_the_prompt_waits_in_the_queue_deletes_it(comfy):
    comfy.add_faults({"kind": "slow", "seconds": 0.2})
    blocker = comfy.state.submit(json.loads(json.dumps(WORKFLOWS["comfyui:txt2img"].graph)),
                                 None, ["9"])
    wait_until(lambda: comfy.state.running is not None)
    cancel = threading.Event()
    done: list[BaseException] = []

    def run() -> None:
        try:
            backend(comfy.url).generate(req(cancel=cancel))
        except BaseException as exc:  # handed to the test
            done.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    wait_until(lambda: comfy.queued())
    cancel.set()
    worker.join(20)
    assert isinstance(done[0], Cancelled)
    (deleted,) = [r for r in comfy.requests("/queue") if r["method"] == "POST"]
    assert deleted["json"] == {"delete": [comfy.queued()[0]["prompt_id"]]}
    assert not comfy.requests("/interrupt")
    comfy.state.interrupt(blocker.prompt_id)
