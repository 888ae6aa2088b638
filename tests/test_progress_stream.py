"""Progress (step N of M) from a backend that reports it, through the pipeline and a stream's
background thread, to one line of a chat stream's content; without HTTP."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field

from flux_worker.backends.demo import DemoBackend
from flux_worker.catalog.registry import ModelRegistry
from flux_worker.chat.answer import sse_events
from flux_worker.chat.phrases import Phrasebook
from flux_worker.chat.streaming import Background, Progress
from flux_worker.generation.backend import GeneratedImage, GenerationRequest
from flux_worker.generation.job import ImageOrder
from flux_worker.generation.pipeline import Pipeline
from flux_worker.generation.planner import Planner
from flux_worker.openai_api.answers import ChunkWriter
from flux_worker.storage.memory import MemoryStore

WORDS = Phrasebook("en")
MODELS = ModelRegistry.build((), "flux-1-schnell")


def job():
    model = MODELS.require(None)
    return Planner(MODELS, 4).plan(ImageOrder(prompt="a cat"), model, model)


def contents(pieces) -> list[str]:
    writer = ChunkWriter("chatcmpl-1", 1, "m", include_usage=False)
    out = [json.loads(e.removeprefix("data: ")) for e in sse_events(pieces, writer, "x", WORDS)
           if e.startswith("data: {")]
    return [c["choices"][0]["delta"]["content"] for c in out
            if c["choices"] and "content" in c["choices"][0]["delta"]][1:]


def test_steps_make_one_line_that_ends_before_the_next_piece():
    pieces = iter(["plan\n", Progress(1, 3), Progress(2, 3), Progress(2, 3), Progress(3, 3),
                   "image"])
    assert contents(pieces) == ["plan\n", "⏳ Step 1 of 3", " … ⏳ Step 2 of 3",
                                " … ⏳ Step 3 of 3", "\nimage"]


def test_a_background_passes_progress_between_the_sources_items():
    gate = threading.Event()
    background: Background[str] | None = None

    def source():
        yield "before"
        assert background is not None
        background.progress(4, 9)       # what a backend's callback does, in this thread
        gate.wait(5)
        yield "after"

    background = Background(source(), 30.0, threading.Event(), start=False)
    background.start()
    items = []
    for item in background:
        items.append(item)
        if item == Progress(4, 9):
            gate.set()
    assert items == ["before", Progress(4, 9), "after"]


@dataclass
class Reporting(DemoBackend):
    """The demo, telling two steps through the request's callback as ComfyUI's backend does."""

    seen: list = field(default_factory=list)

    def generate(self, request: GenerationRequest) -> GeneratedImage:
        self.seen.append(request.progress)
        if request.progress is not None:
            request.progress(1, 2)
            request.progress(2, 2)
        return super().generate(request)


def test_the_pipeline_hands_the_callback_to_the_backend():
    backend = Reporting()
    pipeline = Pipeline(backend=backend, store=MemoryStore(max_bytes=1 << 26),
                        translator=None, expiration=60)
    steps: list[tuple[int, int]] = []
    pipeline.render(job(), "a cat", progress=lambda n, of: steps.append((n, of)))
    pipeline.render(job(), "a cat")
    assert steps == [(1, 2), (2, 2)]
    assert backend.seen[1] is None
