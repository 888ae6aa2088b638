"""The Responses API end to end: the real service under gunicorn, the fake Cloudflare (and its
LLM for translation), driven by the official `openai` SDK as its users write it, every answer
and event validated against OpenAI's published schemas.
"""

from __future__ import annotations

import base64
import io
import json
import time

import openai
import pytest
import requests
from PIL import Image

from harness.service import API_KEY, LLM_KEY, cloudflare_env, start_service
from tests.support import wait_until
from tests.test_responses import EVENT_SCHEMAS, STREAM_ORDER, valid

pytestmark = pytest.mark.e2e

OTHER_KEY = "sk-e2e-client-key-0002"
TOOLS = [{"type": "image_generation"}]


@pytest.fixture(scope="module")
def service(fake_cf, tmp_path_factory):
    """Two keys, translation by the fake LLM (so a job can be caught before its upstream call)."""
    env = cloudflare_env(fake_cf, API_KEY=f"{API_KEY},{OTHER_KEY}", CF_IS_TRANSLATE="true",
                         EXTERNAL_API_BASE=fake_cf.url + "/v1", EXTERNAL_MODEL="gpt-4o-mini",
                         EXTERNAL_API_KEY=LLM_KEY, TRANSLATE_TIMEOUT="15",
                         UPSTREAM_TIMEOUT="20")
    svc = start_service(tmp_path_factory.mktemp("responses-service"), env)
    yield svc
    svc.stop()


def sdk(service, key: str = API_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=service.api, api_key=key, max_retries=0, timeout=60)


def raw_create(service, **body) -> dict:
    """Create through the SDK, returning the JSON as sent (validated)."""
    body.setdefault("model", "gpt-5.4")
    answer = sdk(service).responses.with_raw_response.create(**body)
    assert answer.headers.get("X-Neurons") is not None
    return valid("Response", answer.http_response.json())


def image_of(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def png_data_url() -> str:
    out = io.BytesIO()
    Image.new("RGB", (96, 64), (20, 120, 200)).save(out, "PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def runs(cf) -> list[dict]:
    return [r for r in cf.requests() if r["kind"] == "run"]


def test_create_with_a_string_returns_the_image_and_the_chats_text(service, cf):
    client = sdk(service)
    response = client.responses.create(model="gpt-5.4", input="a lighthouse at dusk 16:9",
                                       tools=TOOLS)
    calls = [item for item in response.output if item.type == "image_generation_call"]
    assert len(calls) == 1 and calls[0].status == "completed"
    assert image_of(calls[0].result).size == (1024, 576)
    assert "/image/" in response.output_text          # the SDK's joined text: the chat's answer
    link = response.output_text.rsplit("(", 1)[1].rstrip(")")
    assert requests.get(link, timeout=10).content == base64.b64decode(calls[0].result)
    assert response.usage.total_tokens > 0
    assert len(runs(cf)) == 1
    raw_create(service, input="a lighthouse at dusk", tools=TOOLS)


def test_items_with_an_input_image_edit_it(service, cf):
    body = raw_create(service, input=[{"role": "user", "content": [
        {"type": "input_text", "text": "make it a watercolor"},
        {"type": "input_image", "image_url": png_data_url(), "detail": "auto"}]}], tools=TOOLS)
    assert body["output"][0]["action"] == "edit"
    assert runs(cf)[-1]["model"].endswith("flux-2-klein-4b")   # the edit model drew


def test_previous_response_id_and_a_passed_back_call_edit_the_earlier_image(service, cf):
    client = sdk(service)
    first = client.responses.create(model="gpt-5.4", input="a red fox", tools=TOOLS)
    second = client.responses.create(model="gpt-5.4", input="make it blue", tools=TOOLS,
                                     previous_response_id=first.id)
    assert second.output[0].to_dict()["action"] == "edit"
    call = first.output[0]
    third = client.responses.create(model="gpt-5.4", tools=TOOLS, input=[
        {"role": "user", "content": "now at night"},
        {"type": "image_generation_call", "id": call.id}])
    assert third.output[0].to_dict()["action"] == "edit"
    fourth = client.responses.create(model="gpt-5.4", tools=TOOLS, input=[
        {"type": "image_generation_call", "id": "ig_from_elsewhere", "status": "completed",
         "result": call.result},
        {"role": "user", "content": "add snow"}])
    assert fourth.output[0].to_dict()["action"] == "edit"
    assert len(runs(cf)) == 4


def test_the_stream_helper_and_raw_events(service):
    client = sdk(service)
    with client.responses.stream(model="gpt-5.4", input="a cabin in snow 3:2",
                                 tools=TOOLS) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert [k for k in kinds if k != "response.output_text.delta"] == [
        k for k in STREAM_ORDER if k != "response.output_text.delta"]
    assert image_of(final.output[0].result).size == (768, 512)
    assert "/image/" in final.output_text
    # The same as the bytes on the wire: every event valid, numbered, with its `event:` line.
    with requests.post(service.api + "/responses", stream=True, timeout=60,
                       headers={"Authorization": f"Bearer {API_KEY}"},
                       json={"model": "gpt-5.4", "input": "a cabin", "stream": True}) as resp:
        text = resp.text
    blocks = [b for b in text.split("\n\n") if b.strip() and not b.startswith(":")]
    events = [(b.split("\n")[0][7:], json.loads(b.split("\n")[1][6:])) for b in blocks]
    assert [e["sequence_number"] for _, e in events] == list(range(len(events)))
    for kind, event in events:
        assert event["type"] == kind
        valid(EVENT_SCHEMAS[kind], event)


def test_a_failure_in_a_stream_is_response_failed_and_an_error(service, cf):
    cf.add_faults("3030", "3030")               # the safety filter refuses
    seen = []
    with pytest.raises(openai.APIError) as raised:   # the nested `error` event, as live
        for event in sdk(service).responses.create(model="gpt-5.4", input="a cat",
                                                   stream=True):
            seen.append(event)
    assert "safety filter" in raised.value.message
    assert seen[-1].type == "response.failed" and seen[-1].response.error.message
    cf.add_faults("3030", "3030")
    with requests.post(service.api + "/responses", stream=True, timeout=60,
                       headers={"Authorization": f"Bearer {API_KEY}"},
                       json={"input": "a cat", "stream": True}) as resp:
        blocks = [b for b in resp.text.split("\n\n") if b.strip() and not b.startswith(":")]
    last = [json.loads(b.split("\n")[1][6:]) for b in blocks[-2:]]
    assert valid("ResponseFailedEvent", last[0])["response"]["status"] == "failed"
    valid("Response", last[0]["response"])
    valid("ResponseErrorEvent", last[1])
    assert last[1]["error"]["message"] == last[1]["message"]


def test_background_is_polled_to_completion(service, cf):
    client = sdk(service)
    queued = client.responses.create(model="gpt-5.4", input="a quiet harbor", tools=TOOLS,
                                     background=True)
    assert queued.status == "queued" and queued.background

    def final():
        got = client.responses.retrieve(queued.id)
        return got if got.status not in ("queued", "in_progress") else None

    done = wait_until(final, timeout=30)
    assert done.status == "completed" and image_of(done.output[0].result).size == (1024, 1024)
    valid("Response", requests.get(f"{service.api}/responses/{queued.id}", timeout=10,
                                   headers={"Authorization": f"Bearer {API_KEY}"}).json())
    assert client.responses.cancel(queued.id).status == "completed"   # already final


def test_a_background_stream_and_its_resumption_with_the_sdk(service, cf):
    # (The events' JSON is validated in tests/test_responses.py; here the SDK reads them.)
    client = sdk(service)
    seen = []
    with client.responses.create(model="gpt-5.4", input="a lantern", tools=TOOLS,
                                 background=True, stream=True) as events:
        for event in events:
            seen.append(event)
            if event.type == "response.image_generation_call.generating":
                break           # the client drops off mid-way: the job goes on
    assert [e.type for e in seen[:2]] == ["response.created", "response.queued"]
    rid = seen[0].response.id
    # The SDK's resume: it asks for the stream again and drops what it has already seen.
    last = seen[-1].sequence_number
    with client.responses.stream(response_id=rid, starting_after=last) as stream:
        rest = list(stream)
        final = stream.get_final_response()
    assert [e.sequence_number for e in rest] == list(range(last + 1, last + 1 + len(rest)))
    assert rest[-1].type == "response.completed"
    assert final.status == "completed" and image_of(final.output[0].result).size == (1024, 1024)


def test_cancel_before_the_upstream_call_stops_it(service, cf):
    cf.add_llm_faults({"kind": "timeout", "seconds": 3})      # a slow translation
    client = sdk(service)
    queued = client.responses.create(model="gpt-5.4", input="a cat", tools=TOOLS,
                                     background=True)
    cancelled = client.responses.cancel(queued.id)
    assert cancelled.status == "cancelled", cancelled
    assert client.responses.cancel(queued.id).status == "cancelled"   # a repeat: the same
    time.sleep(4)                                # the translation ends: still no upstream call
    assert runs(cf) == []
    assert client.responses.retrieve(queued.id).status == "cancelled"


def test_cancel_after_the_upstream_call_began_completes_and_says_so(service, cf):
    cf.add_faults({"kind": "timeout", "seconds": 3})          # a slow image, then the image
    client = sdk(service)
    queued = client.responses.create(model="gpt-5.4", input="a dog", tools=TOOLS,
                                     background=True)
    wait_until(lambda: runs(cf), timeout=20, message="the upstream call")
    answer = client.responses.cancel(queued.id)
    assert answer.status in ("in_progress", "completed")
    done = wait_until(lambda: (r := client.responses.retrieve(queued.id)).status == "completed"
                      and r, timeout=30)
    assert done.output[0].result


def test_input_items_delete_and_another_keys_view(service):
    client = sdk(service)
    made = client.responses.create(model="gpt-5.4", instructions="be brief", input=[
        {"role": "user", "content": "a cat"}, {"role": "user", "content": "a dog"}])
    items = client.responses.input_items.list(made.id, order="asc")
    assert [i.content[0].text for i in items.data] == ["a cat", "a dog"]
    raw = requests.get(f"{service.api}/responses/{made.id}/input_items", timeout=10,
                       headers={"Authorization": f"Bearer {API_KEY}"}).json()
    valid("ResponseItemList", raw)
    other = sdk(service, OTHER_KEY)
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(made.id)
    assert client.responses.delete(made.id) is None
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(made.id)
