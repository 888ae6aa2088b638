"""The strict fake of fal (harness/fakes/fal) against the reference's checklist (§5): the key,
validation as 422 detail lists, the queue's life and URLs, cancel only while queued, sync_mode,
and the injectable faults."""

from __future__ import annotations

import base64
from urllib.parse import urlsplit

import pytest

from harness.fakes import fal

AUTH = {"Authorization": f"Key {fal.DEFAULT_FAL_KEY}"}
PROMPT = {"prompt": "a red fox"}


@pytest.fixture
def client():
    app = fal.make_app()
    return app.test_client()


def path(url: str) -> str:
    return urlsplit(url).path


def test_the_key_is_required_in_the_key_scheme(client):
    assert client.post("/sync/fal-ai/flux/schnell", json=PROMPT).status_code == 401
    bearer = {"Authorization": f"Bearer {fal.DEFAULT_FAL_KEY}"}
    assert client.post("/sync/fal-ai/flux/schnell", json=PROMPT, headers=bearer).status_code \
        == 401
    assert client.post("/sync/fal-ai/flux/schnell", json=PROMPT, headers=AUTH).status_code \
        == 200


@pytest.mark.parametrize("endpoint, body, field, kind", [
    ("fal-ai/flux/schnell", {}, "prompt", "missing"),
    ("fal-ai/flux/schnell", {**PROMPT, "num_inference_steps": 13}, "num_inference_steps",
     "less_than_equal"),
    ("fal-ai/flux/schnell", {**PROMPT, "image_size": "huge"}, "image_size", "enum"),
    ("fal-ai/flux/schnell", {**PROMPT, "image_size": {"width": 512}}, "image_size",
     "model_type"),
    ("fal-ai/flux/schnell", {**PROMPT, "num_images": 5}, "num_images", "less_than_equal"),
    ("fal-ai/flux/schnell", {**PROMPT, "output_format": "webp"}, "output_format", "enum"),
    ("fal-ai/flux/schnell", {**PROMPT, "steps": 4}, "steps", "extra_forbidden"),
    ("fal-ai/flux-pro/kontext", PROMPT, "image_url", "missing"),
    ("fal-ai/flux-pro/kontext", {**PROMPT, "image_url": "https://x.example/a.png",
                                 "safety_tolerance": 2}, "safety_tolerance", "enum"),
    ("fal-ai/flux-pro/kontext", {**PROMPT, "image_url": "https://x.example/a.png",
                                 "enable_safety_checker": True}, "enable_safety_checker",
     "extra_forbidden"),
])
def test_validation_is_a_422_detail_list(client, endpoint, body, field, kind):
    answer = client.post(f"/sync/{endpoint}", json=body, headers=AUTH)
    assert answer.status_code == 422
    problem = answer.json["detail"][0]
    assert problem["loc"] == ["body", field.split(".")[0]] and problem["type"] == kind


def test_the_size_asked_is_the_size_drawn_and_the_file_is_served(client):
    answer = client.post("/sync/fal-ai/flux/dev", headers=AUTH, json={
        **PROMPT, "image_size": {"width": 640, "height": 480}, "output_format": "png"})
    image = answer.json["images"][0]
    assert (image["width"], image["height"]) == (640, 480)
    assert answer.json["has_nsfw_concepts"] == [False]
    served = client.get(path(image["url"]))
    assert served.status_code == 200 and served.data.startswith(b"\x89PNG")


def test_sync_mode_answers_a_data_uri(client):
    answer = client.post("/sync/fal-ai/flux/schnell", headers=AUTH,
                         json={**PROMPT, "sync_mode": True})
    url = answer.json["images"][0]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    assert base64.b64decode(url.split(",", 1)[1]).startswith(b"\xff\xd8")


def test_the_queue_drops_the_subpath_and_moves_one_state_per_poll(client):
    job = client.post("/queue/fal-ai/flux/dev", headers=AUTH, json=PROMPT).json
    assert path(job["status_url"]) == f"/queue/fal-ai/flux/requests/{job['request_id']}/status"
    rebuilt = f"/queue/fal-ai/flux/dev/requests/{job['request_id']}/status"
    assert client.get(rebuilt, headers=AUTH).status_code == 404
    states = [client.get(path(job["status_url"]), headers=AUTH).json for _ in range(3)]
    assert [s["status"] for s in states] == ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
    assert not any("logs" in s for s in states)
    result = client.get(path(job["response_url"]), headers=AUTH)
    assert result.status_code == 200 and result.json["images"]


def test_logs_only_when_asked(client):
    job = client.post("/queue/fal-ai/flux/dev", headers=AUTH, json=PROMPT).json
    client.get(path(job["status_url"]), headers=AUTH)
    running = client.get(path(job["status_url"]) + "?logs=1", headers=AUTH).json
    assert running["status"] == "IN_PROGRESS" and running["logs"]


def test_the_result_waits_for_completion(client):
    job = client.post("/queue/fal-ai/flux/dev", headers=AUTH, json=PROMPT).json
    assert client.get(path(job["response_url"]), headers=AUTH).status_code == 400


def test_cancel_only_while_queued(client):
    job = client.post("/queue/fal-ai/flux/dev", headers=AUTH, json=PROMPT).json
    assert client.put(path(job["cancel_url"]), headers=AUTH).status_code == 202
    running = client.post("/queue/fal-ai/flux/dev", headers=AUTH, json=PROMPT).json
    for _ in range(2):
        client.get(path(running["status_url"]), headers=AUTH)
    assert client.put(path(running["cancel_url"]), headers=AUTH).status_code == 400


@pytest.mark.parametrize("fault, status, error_type", [
    ("429", 429, None), ("504", 504, "request_timeout"),
    ("startup_timeout", 504, "startup_timeout"), ("503", 503, "runner_unavailable"),
    ("no_credit", 403, None), ("detail_string", 422, None),
])
def test_faults_answer_the_sync_call(client, fault, status, error_type):
    client.application.extensions["fake_fal"].add_faults([fault])
    answer = client.post("/sync/fal-ai/flux/schnell", headers=AUTH, json=PROMPT)
    assert answer.status_code == status
    assert answer.json.get("error_type") == error_type
    assert answer.headers.get("X-Fal-Error-Type") == error_type
    assert client.post("/sync/fal-ai/flux/schnell", headers=AUTH, json=PROMPT).status_code \
        == 200                                       # one fault, one call


def test_a_queued_job_fails_with_its_error_type(client):
    client.application.extensions["fake_fal"].add_faults(["504"])
    job = client.post("/queue/fal-ai/flux/dev", headers=AUTH, json=PROMPT).json
    last = [client.get(path(job["status_url"]), headers=AUTH).json for _ in range(3)][-1]
    assert last["status"] == "COMPLETED" and last["error_type"] == "request_timeout"
    assert client.get(path(job["response_url"]), headers=AUTH).status_code == 504


def test_a_held_job_stays_queued_until_cancelled(client):
    client.application.extensions["fake_fal"].add_faults(["held"])
    job = client.post("/queue/fal-ai/flux/dev", headers=AUTH, json=PROMPT).json
    states = {client.get(path(job["status_url"]), headers=AUTH).json["status"]
              for _ in range(5)}
    assert states == {"IN_QUEUE"}
    assert client.put(path(job["cancel_url"]), headers=AUTH).status_code == 202


def test_nsfw_flags_a_black_picture(client):
    client.application.extensions["fake_fal"].add_faults(["nsfw"])
    answer = client.post("/sync/fal-ai/flux/schnell", headers=AUTH,
                         json={**PROMPT, "sync_mode": True, "output_format": "png"})
    assert answer.json["has_nsfw_concepts"] == [True]


def test_unknown_faults_are_refused(client):
    answer = client.post("/_fake/faults", json={"faults": ["meteor"]})
    assert answer.status_code == 400 and "known" in answer.json["detail"]
