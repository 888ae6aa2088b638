"""The Responses API through Flask's test client (demo backend, memory storage): the request's
fields and errors, the Response and its events against OpenAI's schemas, stored responses, and
the background jobs' staleness and cancel window.
"""

from __future__ import annotations

import base64
import io
import json
import time
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from PIL import Image

from flux_worker.responses import events
from flux_worker.responses.answer import Responses
from flux_worker.responses.background import Cutoff, Jobs
from flux_worker.responses.store import CONTENT_TYPE, ResponseStore, owner_of
from flux_worker.storage import is_valid_key
from flux_worker.storage.memory import MemoryStore
from tests.support import AUTH, TEST_KEY, FakeClock, bearer, image_url, wait_until

SCHEMAS = json.loads((Path(__file__).parent / "reference" / "openai-schemas-2.json")
                     .read_text(encoding="utf-8"))
EVENT_SCHEMAS = {
    "response.created": "ResponseCreatedEvent", "response.queued": "ResponseQueuedEvent",
    "response.in_progress": "ResponseInProgressEvent",
    "response.output_item.added": "ResponseOutputItemAddedEvent",
    "response.image_generation_call.in_progress": "ResponseImageGenCallInProgressEvent",
    "response.image_generation_call.generating": "ResponseImageGenCallGeneratingEvent",
    "response.image_generation_call.completed": "ResponseImageGenCallCompletedEvent",
    "response.output_item.done": "ResponseOutputItemDoneEvent",
    "response.content_part.added": "ResponseContentPartAddedEvent",
    "response.output_text.delta": "ResponseTextDeltaEvent",
    "response.output_text.done": "ResponseTextDoneEvent",
    "response.content_part.done": "ResponseContentPartDoneEvent",
    "response.completed": "ResponseCompletedEvent", "response.failed": "ResponseFailedEvent",
    "error": "ResponseErrorEvent",
}
STREAM_ORDER = [
    "response.created", "response.in_progress", "response.output_item.added",
    "response.image_generation_call.in_progress", "response.image_generation_call.generating",
    "response.image_generation_call.completed", "response.output_item.done",
    "response.output_item.added", "response.content_part.added", "response.output_text.delta",
    "response.output_text.done", "response.content_part.done", "response.output_item.done",
    "response.completed",
]


def schema(name: str) -> Draft202012Validator:
    return Draft202012Validator({"$defs": SCHEMAS["$defs"], "$ref": f"#/$defs/{name}"},
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


def valid(name: str, value: dict) -> dict:
    errors = sorted(schema(name).iter_errors(value), key=lambda e: e.path)
    assert not errors, f"{name}: {errors[0].message} at {list(errors[0].path)}"
    return value


def create(client, headers=AUTH, **body):
    body.setdefault("model", "gpt-5.4")
    return client.post("/v1/responses", json=body, headers=headers)


def events_of(resp) -> list[tuple[str, dict]]:
    """(event line, JSON) pairs of a stream; comment lines skipped, no `id:` line allowed."""
    found = []
    for block in resp.get_data(as_text=True).split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        assert not any(line.startswith("id:") for line in lines), block
        assert lines[0].startswith("event: ") and lines[1].startswith("data: "), block
        found.append((lines[0][7:], json.loads(lines[1][6:])))
    return found


def picture(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


# --- the answer ---------------------------------------------------------------------------------

def test_a_string_input_is_a_picture_and_a_message(client):
    resp = create(client, input="a red fox 16:9",
                  tools=[{"type": "image_generation", "quality": "high"}])
    assert resp.status_code == 200, resp.get_json()
    body = valid("Response", resp.get_json())
    call, message = body["output"]
    assert valid("ImageGenToolCall", call)["status"] == "completed"
    assert picture(call["result"]).size == (1024, 576)
    assert call["size"] == "1024x576" and call["action"] == "generate"
    assert call["quality"] == "high" and call["revised_prompt"] == "a red fox"
    text = message["content"][0]["text"]
    # The chat's text, with the link to the same stored image.
    got = client.get("/" + image_url(text).split("/", 3)[3])
    assert got.status_code == 200 and got.data == base64.b64decode(call["result"])
    assert body["status"] == "completed" and body["model"] == "gpt-5.4"
    assert body["usage"]["output_tokens"] > 0 and body["usage"]["input_tokens"] > 0
    assert body["tools"] == [{"type": "image_generation", "quality": "high"}]


def test_the_tools_size_and_format_shape_the_image(client):
    body = create(client, input="a lighthouse", tools=[{
        "type": "image_generation", "size": "1024x1536", "output_format": "png",
        "partial_images": 2, "moderation": "low", "background": "opaque"}]).get_json()
    call = body["output"][0]
    image = picture(call["result"])
    assert image.format == "PNG" and call["output_format"] == "png"
    assert call["size"] == f"{image.width}x{image.height}"
    assert image.height > image.width


def test_the_tools_gpt_image_fields_mean_what_they_mean_in_the_images_api(client):
    def jpeg(compression: int) -> int:
        body = create(client, input="a lighthouse", tools=[{
            "type": "image_generation", "output_format": "jpeg",
            "output_compression": compression, "quality": "low"}]).get_json()
        assert body["output"][0]["quality"] == "low"
        return len(base64.b64decode(body["output"][0]["result"]))

    assert jpeg(10) < jpeg(95)
    refused = create(client, input="a logo",
                     tools=[{"type": "image_generation", "background": "transparent"}])
    assert refused.status_code == 400
    assert "transparen" in refused.get_json()["error"]["message"]


def test_a_title_request_is_answered_with_text_only(client):
    body = create(client, input="Generate a concise, 3-5 word title for this conversation."
                  ).get_json()
    assert [item["type"] for item in valid("Response", body)["output"]] == ["message"]


@pytest.mark.parametrize("body,param,words", [
    ({}, "input", "`input`"),
    ({"input": "   "}, "input", "empty"),
    ({"input": []}, "input", "empty list"),
    ({"input": 3}, "input", "string or a list"),
    ({"input": [{"role": "robot", "content": "x"}]}, "input", "input[0].role"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
     "input", "file_id"),
    ({"input": [{"role": "assistant", "content": "hi"}]}, "input", "no user text"),
    ({"input": "x", "metadata": {str(i): "v" for i in range(17)}}, "metadata", "17 pairs"),
    ({"input": "x", "metadata": {"k": "v" * 513}}, "metadata", "512"),
    ({"input": "x", "metadata": {"k" * 65: "v"}}, "metadata", "64"),
    ({"input": "x", "metadata": {"k": 1}}, "metadata", "string pairs"),
    ({"input": "x", "tools": [{"type": "image_generation", "size": "huge"}]}, "tools.size",
     "WIDTHxHEIGHT"),
    ({"input": "x", "tools": [{"type": "image_generation", "quality": "best"}]},
     "tools.quality", '"low"'),
    ({"input": "x", "tools": [{"type": "image_generation", "partial_images": 4}]},
     "tools.partial_images", "0 to 3"),
    ({"input": "x", "tools": [{"type": "image_generation", "output_compression": 101}]},
     "tools.output_compression", "0 to 100"),
    ({"input": "x", "tools": [{"type": "image_generation", "action": "edit"}]}, "tools",
     "needs an image"),
    ({"input": "x", "background": True, "store": False}, "store", "store: true"),
    ({"input": "x", "stream": "yes"}, "stream", "true or false"),
    ({"input": "x", "previous_response_id": "resp_nope"}, "previous_response_id", "not found"),
])
def test_bad_requests_are_400s_that_name_the_field(client, body, param, words):
    resp = client.post("/v1/responses", json=body, headers=AUTH)
    assert resp.status_code == 400, resp.get_json()
    error = valid("ErrorResponse", resp.get_json())["error"]
    assert error["param"] == param and words in error["message"], error


def test_openais_other_fields_are_accepted_and_ignored(client):
    resp = create(client, input="a cat", include=["reasoning.encrypted_content"],
                  max_output_tokens=500, temperature=0.2, top_p=0.9, text={"format": {
                      "type": "text"}}, reasoning={"effort": "low"}, safety_identifier="u1",
                  user="u1", parallel_tool_calls=False, tool_choice={"type": "image_generation"},
                  tools=[{"type": "function", "name": "f", "parameters": {}},
                         {"type": "image_generation"}], metadata={"a": "b"})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["metadata"] == {"a": "b"}


def test_the_api_key_is_required(client):
    assert client.post("/v1/responses", json={"input": "a cat"}).status_code == 401
    assert client.post("/responses", json={"input": "a cat"}, headers=AUTH).status_code == 200


# --- edits ---------------------------------------------------------------------------------------

def _png(size=(64, 48), color=(200, 30, 30)) -> str:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


def test_an_input_image_makes_an_edit(client):
    body = create(client, input=[{"role": "user", "content": [
        {"type": "input_text", "text": "make it blue"},
        {"type": "input_image", "image_url": "data:image/png;base64," + _png(), "detail": "auto"},
    ]}]).get_json()
    call = valid("Response", body)["output"][0]
    assert call["action"] == "edit", body


def test_previous_response_id_and_passed_back_calls_edit_the_earlier_image(client):
    first = create(client, input="a red fox").get_json()
    follow = create(client, input="make it blue", previous_response_id=first["id"]).get_json()
    assert follow["output"][0]["action"] == "edit"
    assert follow["previous_response_id"] == first["id"]
    by_id = create(client, input=[{"role": "user", "content": "make it green"},
                                  {"type": "image_generation_call", "id": first["output"][0][
                                      "id"]}]).get_json()
    assert by_id["output"][0]["action"] == "edit", by_id
    by_result = create(client, input=[
        {"type": "image_generation_call", "id": "ig_elsewhere", "status": "completed",
         "result": _png()}, {"role": "user", "content": "make it green"}]).get_json()
    assert by_result["output"][0]["action"] == "edit"
    referenced = create(client, input=[{"type": "item_reference", "id": first["output"][0][
        "id"]}, {"role": "user", "content": "add a hat"}]).get_json()
    assert referenced["output"][0]["action"] == "edit"
    generate = create(client, input="a new scene", previous_response_id=first["id"],
                      tools=[{"type": "image_generation", "action": "generate"}]).get_json()
    assert generate["output"][0]["action"] == "generate"


def test_a_call_passed_back_by_id_alone_must_be_stored(client):
    resp = create(client, input=[{"type": "image_generation_call", "id": "ig_" + "0" * 48},
                                 {"role": "user", "content": "make it blue"}])
    assert resp.status_code == 400 and "result" in resp.get_json()["error"]["message"]


# --- streams -------------------------------------------------------------------------------------

def test_a_stream_sends_openais_events_in_order(client):
    resp = create(client, input="a lighthouse 3:2", stream=True)
    assert resp.status_code == 200 and resp.mimetype == "text/event-stream"
    events = events_of(resp)
    assert [kind for kind, _ in events if kind != "response.output_text.delta"] == [
        k for k in STREAM_ORDER if k != "response.output_text.delta"]
    assert [e["sequence_number"] for _, e in events] == list(range(len(events)))
    for kind, event in events:
        assert event["type"] == kind
        valid(EVENT_SCHEMAS[kind], event)
    done = events[-1][1]["response"]
    assert picture(done["output"][0]["result"]).size == (768, 512)
    deltas = "".join(e["delta"] for k, e in events if k == "response.output_text.delta")
    assert deltas == done["output"][1]["content"][0]["text"]
    assert "[DONE]" not in resp.get_data(as_text=True)


# --- stored responses ------------------------------------------------------------------------

def test_stored_responses_are_read_listed_and_deleted_by_their_key_only(apps):
    other = "sk-other-key-0002"
    client = apps.client(API_KEY=f"{TEST_KEY},{other}")
    made = create(client, input=[{"role": "system", "content": "be brief"},
                                 {"role": "user", "content": "a cat"},
                                 {"role": "user", "content": "a dog 16:9"}]).get_json()
    got = client.get(f"/v1/responses/{made['id']}", headers=AUTH)
    assert valid("Response", got.get_json()) == made
    items = client.get(f"/v1/responses/{made['id']}/input_items", headers=AUTH).get_json()
    valid("ResponseItemList", items)
    assert [i["role"] for i in items["data"]] == ["user", "user", "system"]   # desc
    page = client.get(f"/v1/responses/{made['id']}/input_items?order=asc&limit=1",
                      headers=AUTH).get_json()
    assert page["has_more"] and [i["role"] for i in page["data"]] == ["system"]
    rest = client.get(f"/v1/responses/{made['id']}/input_items?order=asc&after="
                      f"{page['last_id']}", headers=AUTH).get_json()
    assert [i["role"] for i in rest["data"]] == ["user", "user"] and not rest["has_more"]
    for path in ("", "/input_items"):
        assert client.get(f"/v1/responses/{made['id']}{path}",
                          headers=bearer(other)).status_code == 404
    assert client.delete(f"/v1/responses/{made['id']}", headers=bearer(other)).status_code == 404
    gone = client.delete(f"/v1/responses/{made['id']}", headers=AUTH)
    assert gone.get_json() == {"id": made["id"], "object": "response", "deleted": True}
    assert client.get(f"/v1/responses/{made['id']}", headers=AUTH).status_code == 404
    assert client.delete(f"/v1/responses/{made['id']}", headers=AUTH).status_code == 404


def test_store_false_keeps_nothing(client):
    made = create(client, input="a cat", store=False).get_json()
    assert made["store"] is False
    assert client.get(f"/v1/responses/{made['id']}", headers=AUTH).status_code == 404


def test_the_record_is_never_served_as_an_image_and_holds_no_image_twice(app, client):
    made = create(client, input="a cat").get_json()
    svc = app.extensions["flux_worker"]
    key = ResponseStore.storage_key(made["id"], owner_of(TEST_KEY))
    assert not is_valid_key(key)
    stored = svc.store.get(key)
    assert stored is not None and stored.content_type == CONTENT_TYPE
    assert made["output"][0]["result"] not in stored.data.decode()
    assert TEST_KEY not in stored.data.decode()
    for path in (f"/image/{key}", f"/image/{key}.json", "/image/" + key.split(".", 1)[1]):
        assert client.get(path).status_code == 404


# --- background ------------------------------------------------------------------------------

def test_a_background_response_is_queued_then_completed(client):
    queued = create(client, input="a cat", background=True)
    assert queued.status_code == 200
    body = valid("Response", queued.get_json())
    assert body["status"] == "queued" and body["background"] is True

    def final():
        got = client.get(f"/v1/responses/{body['id']}", headers=AUTH).get_json()
        return got if got["status"] == "completed" else None

    done = valid("Response", wait_until(final))
    assert picture(done["output"][0]["result"]).size == (1024, 1024)
    again = client.post(f"/v1/responses/{body['id']}/cancel", headers=AUTH).get_json()
    assert again["status"] == "completed"      # a cancel after the end: the final Response


def _kinds(events) -> list[str]:
    return [kind for kind, _ in events if kind != "response.output_text.delta"]


def test_a_background_stream_follows_the_job_and_a_get_replays_it(client):
    resp = create(client, input="a heron 16:9", background=True, stream=True)
    assert resp.status_code == 200 and resp.mimetype == "text/event-stream"
    events = events_of(resp)
    order = [k for k in STREAM_ORDER if k != "response.output_text.delta"]
    assert _kinds(events) == order[:1] + ["response.queued"] + order[1:]
    assert [e["sequence_number"] for _, e in events] == list(range(len(events)))
    for kind, event in events:
        valid(EVENT_SCHEMAS[kind], event)
    done = events[-1][1]["response"]
    assert done["background"] is True
    assert picture(done["output"][0]["result"]).size == (1024, 576)
    # The replay numbers each event as the first stream did; starting_after resumes.
    path = f"/v1/responses/{done['id']}?stream=true"
    replay = events_of(client.get(path, headers=AUTH))
    assert [(k, e["sequence_number"]) for k, e in replay] == [
        (k, e["sequence_number"]) for k, e in events]
    assert replay[-1][1]["response"] == done
    tail = events_of(client.get(path + "&starting_after=5", headers=AUTH))
    assert [e["sequence_number"] for _, e in tail] == list(range(6, len(events)))
    bad = client.get(path + "&starting_after=x", headers=AUTH)
    assert bad.status_code == 400 and bad.get_json()["error"]["param"] == "starting_after"
    other = client.get(path, headers=bearer("sk-someone-else"))
    assert other.status_code in (401, 404)


def test_a_replayed_failure_ends_with_the_failed_event_and_the_error():
    failed = {"id": "resp_z", "object": "response", "status": "failed", "background": False,
              "output": [], "error": {"code": "server_error", "message": "it broke"}}
    got = [json.loads(line[6:]) for line in "".join(events.follow(lambda: failed)).splitlines()
           if line.startswith("data: ")]
    assert [e["type"] for e in got] == ["response.created", "response.in_progress",
                                       "response.failed", "error"]
    assert got[-1]["error"]["message"] == "it broke"


def test_only_background_responses_can_be_cancelled(client):
    made = create(client, input="a cat").get_json()
    resp = client.post(f"/v1/responses/{made['id']}/cancel", headers=AUTH)
    assert resp.status_code == 400 and "background" in resp.get_json()["error"]["message"]


def test_a_background_job_without_a_heartbeat_is_reported_failed():
    clock = FakeClock()
    records = ResponseStore(MemoryStore(max_bytes=1 << 20, clock=clock), 600, clock=clock)
    responses = Responses(chat=None, store=records, stale_after=60, clock=clock)  # type: ignore
    record = records.new_record("resp_" + "a" * 48, "me", {"status": "in_progress"}, [])
    record.heartbeat = clock()
    records.save(record)
    clock.advance(59)
    assert responses.read(record.id, "me").status == "in_progress"
    clock.advance(2)
    stale = responses.read(record.id, "me")
    assert stale.status == "failed" and stale.response["error"]["code"] == "server_error"
    assert responses.read(record.id, "someone else") is None


def test_a_cancel_is_refused_once_the_upstream_call_began():
    early = Cutoff()
    assert early.cancel() and early.is_set()
    early.close()                     # too late to close: the render sees the cancel
    assert early.is_set()
    late = Cutoff()
    late.close()
    assert late.cancel() is False and not late.is_set()


def test_records_expire_with_the_images():
    clock = FakeClock(time.time())
    records = ResponseStore(MemoryStore(max_bytes=1 << 20, clock=clock), 100, clock=clock)
    record = records.new_record("resp_x", "me", {"status": "completed"}, [])
    records.save(record)
    clock.advance(99)
    assert records.load("resp_x", "me") is not None
    clock.advance(2)
    assert records.load("resp_x", "me") is None


def test_a_waiting_stream_sends_comment_lines_that_clients_skip(apps):
    from flux_worker.chat.streaming import HEARTBEAT
    from flux_worker.generation.job import Caller
    from flux_worker.responses import events
    from flux_worker.responses.request import parse_response_request

    svc = apps.services()
    answer = svc.responses.start(parse_response_request({"input": "a cat"}),
                                 Caller("tester", TEST_KEY), lambda key: "http://x/image/" + key)
    pieces = iter(answer.turn.pieces)
    text = "".join(events.stream(answer, [next(pieces), HEARTBEAT, HEARTBEAT, *pieces]))
    assert text.count("\n\n: keep-alive\n\n") == 1 and text.count(": keep-alive\n\n") == 2
    kinds = [line[7:] for line in text.split("\n") if line.startswith("event: ")]
    assert kinds[-1] == "response.completed"


def test_a_deleted_background_response_is_not_written_back_by_its_job():
    records = ResponseStore(MemoryStore(max_bytes=1 << 20), 100)
    record = records.new_record("resp_y", "me", {"status": "in_progress"}, [])
    records.save(record)
    jobs = Jobs(records, heartbeat=1)
    assert records.delete("resp_y", "me")
    assert records.cancel_asked("resp_y", "me")      # the job stops at its next heartbeat
    record.response = {"status": "completed"}
    jobs._write(record)                              # its last write, after the delete
    assert records.load("resp_y", "me") is None
    assert not records.delete("resp_y", "me")
