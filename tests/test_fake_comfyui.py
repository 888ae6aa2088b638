"""The fake ComfyUI itself keeps the reference's rules (image-providers.md §4 and §5's checklist):
the 400 bodies, links, checkpoints, /history, /view, uploads, the websocket's events only to
their client id, /interrupt, queue deletes, and its faults."""

from __future__ import annotations

import io
import json
import uuid

import pytest
import requests
import websocket
from PIL import Image

from flux_worker.catalog.comfyui import SHIPPED
from harness.fakes.comfyui import FakeComfyUI
from tests.support import wait_until

GRAPH = json.loads((SHIPPED / "txt2img.json").read_text())


def graph(**changes: dict) -> dict:
    copy = json.loads(json.dumps(GRAPH))
    for node, inputs in changes.items():
        copy[node]["inputs"].update(inputs)
    return copy


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), (1, 2, 3)).save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def server():
    with FakeComfyUI() as fake:
        yield fake


@pytest.fixture
def comfy(server):
    server.reset()
    yield server
    server.reset()


def post(comfy, body: object) -> requests.Response:
    return requests.post(comfy.url + "/prompt", json=body, timeout=10)


def socket(comfy, client_id: str) -> websocket.WebSocket:
    ws = websocket.create_connection(comfy.url.replace("http", "ws") + f"/ws?clientId={client_id}",
                                     timeout=10)
    assert json.loads(ws.recv())["type"] == "status"
    return ws


def events(ws: websocket.WebSocket, prompt_id: str) -> list[tuple[str, dict]]:
    seen = []
    while True:
        frame = ws.recv()
        if isinstance(frame, bytes):
            seen.append(("preview", {}))
            continue
        message = json.loads(frame)
        seen.append((message["type"], message["data"]))
        if message["type"] == "executing" and message["data"]["node"] is None:
            return seen
        if message["type"] in ("execution_error", "execution_interrupted"):
            return seen


@pytest.mark.parametrize("body, kind", [
    ({}, "no_prompt"),
    ({"prompt": {**GRAPH, "12": {"class_type": "FancyUpscaler", "inputs": {}}}},
     "invalid_prompt"),
    ({"prompt": {k: v for k, v in GRAPH.items() if k != "9"}}, "prompt_no_outputs"),
])
def test_graphs_comfyui_would_not_queue_are_400s_of_its_kinds(comfy, body, kind):
    answer = post(comfy, body)
    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == kind
    assert not comfy.queued()


@pytest.mark.parametrize("changes, node, kind", [
    ({"4": {"ckpt_name": "missing.safetensors"}}, "4", "value_not_in_list"),
    ({"3": {"steps": 0}}, "3", "value_smaller_than_min"),
    ({"3": {"denoise": 1.5}}, "3", "value_bigger_than_max"),
    ({"8": {"samples": ["77", 0]}}, "8", "bad_linked_input"),
    ({"8": {"samples": ["3"]}}, "8", "bad_linked_input"),
    ({"8": {"samples": ["4", 0]}}, "8", "return_type_mismatch"),
])
def test_node_errors_name_the_node_its_class_and_the_input(comfy, changes, node, kind):
    answer = post(comfy, {"prompt": graph(**changes)})
    assert answer.status_code == 400
    body = answer.json()
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    entry = body["node_errors"][node]
    assert entry["class_type"] == GRAPH[node]["class_type"]
    assert entry["errors"][0]["type"] == kind


def test_a_missing_required_input_is_named(comfy):
    broken = graph()
    del broken["5"]["inputs"]["width"]
    body = post(comfy, {"prompt": broken}).json()
    assert body["node_errors"]["5"]["errors"][0] == {
        "type": "required_input_missing", "message": "Required input is missing",
        "details": "width", "extra_info": {"input_name": "width"}}


def test_object_info_lists_the_checkpoints_it_has(comfy):
    info = requests.get(comfy.url + "/object_info", timeout=10).json()
    assert "model.safetensors" in info["CheckpointLoaderSimple"]["input"]["required"][
        "ckpt_name"][0]
    comfy.state.checkpoints = ["other.safetensors"]
    assert post(comfy, {"prompt": graph()}).status_code == 400


def test_events_go_only_to_the_clients_socket_and_history_fills_when_done(comfy):
    mine, other = uuid.uuid4().hex, uuid.uuid4().hex
    ws, stranger = socket(comfy, mine), socket(comfy, other)
    stranger.settimeout(0.5)
    answer = post(comfy, {"prompt": graph(**{"3": {"steps": 3}}), "client_id": mine})
    prompt_id = answer.json()["prompt_id"]
    seen = events(ws, prompt_id)
    kinds = [kind for kind, _ in seen]
    assert kinds == ["execution_start", "progress", "preview", "progress", "progress",
                     "executed", "executing"]
    assert [d["value"] for k, d in seen if k == "progress"] == [1, 2, 3]
    with pytest.raises(websocket.WebSocketTimeoutException):
        stranger.recv()
    entry = requests.get(comfy.url + f"/history/{prompt_id}", timeout=10).json()[prompt_id]
    (image,) = entry["outputs"]["9"]["images"]
    view = requests.get(comfy.url + "/view", params=image, timeout=10)
    assert view.status_code == 200 and view.content.startswith(b"\x89PNG")
    ws.close()
    stranger.close()


def test_history_is_empty_until_the_prompt_is_done(comfy):
    comfy.add_faults({"kind": "slow", "seconds": 0.2})
    prompt_id = post(comfy, {"prompt": graph(**{"3": {"steps": 3}})}).json()["prompt_id"]
    assert requests.get(comfy.url + f"/history/{prompt_id}", timeout=10).json() == {}
    wait_until(lambda: requests.get(comfy.url + f"/history/{prompt_id}", timeout=10).json())


@pytest.mark.parametrize("params, status", [
    ({"filename": "../secret.png", "type": "output"}, 400),
    ({"filename": "a.png", "subfolder": "../..", "type": "output"}, 400),
    ({"filename": "a.png", "type": "elsewhere"}, 400),
    ({"filename": "missing.png", "type": "output"}, 404),
])
def test_view_refuses_traversal_and_answers_404_for_a_missing_file(comfy, params, status):
    assert requests.get(comfy.url + "/view", params=params, timeout=10).status_code == status


def test_an_upload_that_clashes_is_renamed_unless_identical_or_overwritten(comfy):
    def upload(data: bytes, **form: str) -> str:
        answer = requests.post(comfy.url + "/api/upload/image",
                               files={"image": ("cat.png", data, "image/png")}, data=form,
                               timeout=10)
        return answer.json()["name"]

    first = upload(png())
    assert upload(png()) == first
    assert upload(b"different") == "cat (1).png"
    assert upload(b"again", overwrite="true") == first


def test_an_execution_error_reaches_the_socket_and_history(comfy):
    client = uuid.uuid4().hex
    ws = socket(comfy, client)
    comfy.add_faults("execution_error")
    prompt_id = post(comfy, {"prompt": graph(), "client_id": client}).json()["prompt_id"]
    kind, data = events(ws, prompt_id)[-1]
    assert kind == "execution_error" and data["node_type"] == "KSampler"
    wait_until(lambda: prompt_id in comfy.state.history)
    assert comfy.state.history[prompt_id]["status"]["status_str"] == "error"
    ws.close()


def test_a_dropped_socket_is_closed_by_the_server(comfy):
    client = uuid.uuid4().hex
    ws = socket(comfy, client)
    comfy.add_faults("ws_drop")
    post(comfy, {"prompt": graph(), "client_id": client})
    opcodes = []
    while websocket.ABNF.OPCODE_CLOSE not in opcodes:
        opcode, _ = ws.recv_data(control_frame=True)     # a timeout fails the test
        opcodes.append(opcode)
    assert opcodes == [websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_CLOSE]
    ws.close()


def test_interrupt_stops_the_running_prompt_and_delete_drops_a_queued_one(comfy):
    comfy.add_faults({"kind": "slow", "seconds": 0.1})
    running = post(comfy, {"prompt": graph(**{"3": {"steps": 50}})}).json()["prompt_id"]
    waiting = post(comfy, {"prompt": graph()}).json()["prompt_id"]
    wait_until(lambda: comfy.state.running is not None)
    queue = requests.get(comfy.url + "/queue", timeout=10).json()
    assert [e[1] for e in queue["queue_running"]] == [running]
    assert [e[1] for e in queue["queue_pending"]] == [waiting]
    requests.post(comfy.url + "/queue", json={"delete": [waiting]}, timeout=10)
    requests.post(comfy.url + "/interrupt", json={"prompt_id": running}, timeout=10)
    wait_until(lambda: running in comfy.state.history)
    assert comfy.state.history[running]["status"]["messages"][-1][0] == \
        "execution_interrupted"
    assert requests.get(comfy.url + "/queue", timeout=10).json() == {
        "queue_running": [], "queue_pending": []}
    assert waiting not in comfy.state.history
