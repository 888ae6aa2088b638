"""The chat answer's pieces and their SSE events, without HTTP."""

from __future__ import annotations

import json
import threading

import pytest

from flux_worker.chat.answer import LinkCollector, chat_answer, image_pieces, sse_events
from flux_worker.chat.phrases import Phrasebook
from flux_worker.chat.streaming import HEARTBEAT
from flux_worker.errors import UpstreamError
from flux_worker.generation.job import Caller, ImageOrder, ImageResult
from flux_worker.openai_api.answers import ChunkWriter
from flux_worker.services import build_services
from tests.support import TEST_KEY, make_config

WORDS = Phrasebook("en")


@pytest.fixture
def services():
    svc = build_services(make_config(SHOW_COST="true"))
    yield svc
    svc.close()


def start(services, text="a cat 16:9"):
    caller = Caller(identity=TEST_KEY, key=TEST_KEY, cancel=threading.Event())
    return services.generations.start(ImageOrder(prompt=text, chat=True), caller)


def test_the_pieces_say_the_prompt_the_plan_and_then_link_the_image(services):
    links = LinkCollector(lambda key: f"https://x.example/image/{key}")
    pieces = list(chat_answer(start(services), WORDS, links, show_cost=True))
    assert pieces[0] == WORDS("original", "a cat 16:9") + "\n"
    assert WORDS("size", "1024x576") in pieces[1]
    assert pieces[2].endswith(f"]({links.urls[0]})") and len(links.urls) == 1
    assert "neurons" in pieces[3]
    assert services.admission.gate.in_use == 0


def test_the_cost_line_of_a_model_billed_in_dollars_only_gives_its_dollars():
    def cost_line(result, words=WORDS, show_cost=True):
        pieces = list(image_pieces(result, words, lambda key: key, show_cost))
        return pieces[1] if len(pieces) > 1 else None

    dollars = ImageResult(key="k", data=b"", neurons=None, usd=0.04)
    assert cost_line(dollars) == "\n\n💰 Cost: $0.04"
    assert cost_line(dollars, Phrasebook("de")) == "\n\n💰 Kosten: $0.04"
    assert cost_line(dollars, show_cost=False) is None
    workers_ai = ImageResult(key="k", data=b"", neurons=57.6, usd=0.0006336)
    assert cost_line(workers_ai) == (
        "\n\n💰 Cost: 57.6 neurons ($0.000634 at the Workers AI paid rate)")
    assert cost_line(ImageResult(key="k", data=b"")) is None      # unpriced: no line


def test_a_reader_that_stops_early_still_gives_the_slot_back(services):
    generation = start(services)
    pieces = chat_answer(generation, WORDS, lambda key: key)
    next(pieces)
    assert services.admission.gate.in_use == 1
    pieces.close()                        # the stream's reader went away
    assert services.admission.gate.in_use == 0


def events(stream) -> list:
    out = []
    for event in stream:
        assert event.startswith("data: ") and event.endswith("\n\n")
        body = event[len("data: "):-2]
        out.append(body if body == "[DONE]" else json.loads(body))
    return out


def test_a_failure_becomes_the_last_content_chunk_then_stop_and_done():
    def failing():
        yield "first\n"
        raise UpstreamError("the model failed")

    writer = ChunkWriter("chatcmpl-1", 1, "m", include_usage=True)
    out = events(sse_events(failing(), writer, "a cat", WORDS))
    contents = [c["choices"][0]["delta"].get("content") for c in out[:-1] if c["choices"]]
    assert contents[1] == "first\n"
    assert contents[2] == "\n" + WORDS("failed", "the model failed")
    assert out[-3]["choices"][0]["finish_reason"] == "stop"
    assert out[-2]["usage"]["total_tokens"] > 0 and out[-1] == "[DONE]"


def test_a_heartbeat_is_an_empty_content_chunk_not_a_comment():
    writer = ChunkWriter("chatcmpl-1", 1, "m", include_usage=False)
    out = events(sse_events(iter([HEARTBEAT, "done"]), writer, "a cat", WORDS))
    assert out[1]["choices"][0]["delta"] == {"content": ""}
    assert out[2]["choices"][0]["delta"] == {"content": "done"}


def test_the_chunk_that_brings_an_image_carries_it():
    links = LinkCollector(lambda key: "https://x.example/image/" + key)

    def pieces():
        yield "plan\n"
        yield f"![image]({links('k1')})"

    writer = ChunkWriter("chatcmpl-1", 1, "m", include_usage=False)
    out = events(sse_events(pieces(), writer, "a cat", WORDS, links))
    assert "images" not in out[1]["choices"][0]["delta"]
    assert out[2]["choices"][0]["delta"]["images"][0]["image_url"]["url"].endswith("/k1")
