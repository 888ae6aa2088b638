"""The pipeline: translate -> generate -> fit -> store, with nothing kept when a step fails."""

from __future__ import annotations

import io
import threading
from dataclasses import replace

import pytest
from PIL import Image
from prometheus_client import REGISTRY

from flux_worker.backends.demo import DemoBackend
from flux_worker.catalog.registry import ModelRegistry
from flux_worker.catalog.spec import UsdPrice
from flux_worker.errors import Cancelled, StorageError, UpstreamError
from flux_worker.generation.backend import GeneratedImage
from flux_worker.generation.job import ImageOrder
from flux_worker.generation.pipeline import Pipeline
from flux_worker.generation.planner import Planner
from flux_worker.generation.translate import Translation, TranslationFailed
from flux_worker.storage.memory import MemoryStore

MODELS = ModelRegistry.build((), "flux-1-schnell")
SEEDED = next(m.id for m in MODELS.models if m.seed and not m.needs_image)


class Keys(MemoryStore):
    """A memory store that tells which keys it holds now."""

    def __init__(self, **kwargs):
        super().__init__(max_bytes=1 << 26, **kwargs)
        self.keys: set[str] = set()

    def put(self, key, data, content_type, ttl):
        stored = super().put(key, data, content_type, ttl)
        self.keys.add(key)
        return stored

    def delete(self, key):
        super().delete(key)
        self.keys.discard(key)


def job(text="a cat 16:9", model=None, **order):
    planner = Planner(MODELS, 4)
    chosen = MODELS.require(model)
    return planner.plan(ImageOrder(prompt=text, model=model, **order), chosen, chosen)


class Recording(DemoBackend):
    """The demo backend, recording its requests; `fail_on` makes the n-th call fail."""

    def __init__(self, fail_on: int | None = None, answer: bytes | None = None):
        self.requests, self.fail_on, self.answer = [], fail_on, answer
        self._lock = threading.Lock()

    def generate(self, request):
        with self._lock:
            self.requests.append(request)
            count = len(self.requests)
        if count == self.fail_on:
            raise UpstreamError("the model failed")
        if self.answer is not None:
            return GeneratedImage(self.answer, neurons=12.5)
        return super().generate(request)


class FixedTranslator:
    def __init__(self, reply=None, fail=False):
        self.reply, self.fail, self.calls = reply, fail, []
        self.model = "llm"

    def translate(self, prompt, ratio, *, edit=False):
        self.calls.append((prompt, ratio, edit))
        if self.fail:
            raise TranslationFailed("the LLM timed out")
        return Translation(self.reply, "llm")


def pipeline(backend=None, translator=None, store=None) -> Pipeline:
    return Pipeline(backend=backend or Recording(), store=store or Keys(),
                    translator=translator, expiration=600)


class SpyHold:
    def __init__(self):
        self.settled, self.accounts, self.dollars = [], [], []

    def settle(self, neurons, *, estimate, model, account=None, usd=None, estimate_usd=None):
        self.settled.append((neurons, estimate, model))
        self.accounts.append(account)
        self.dollars.append((usd, estimate_usd))


def test_render_stores_the_exact_size_and_settles_its_neurons():
    pipe, hold = pipeline(), SpyHold()
    planned = job("a fox 16:9")
    result = pipe.render(planned, planned.prompt, hold=hold)  # type: ignore[arg-type]
    stored = pipe.store.get(result.key)
    assert stored is not None and Image.open(io.BytesIO(stored.data)).size == (1024, 576)
    assert (result.width, result.height, result.seed) == (1024, 576, planned.seed)
    assert hold.settled == [(planned.estimate, planned.estimate, planned.model.id)]
    # its dollars too: the neurons at the paid rate
    assert planned.estimate_usd == pytest.approx(planned.estimate * 0.011 / 1000)
    assert hold.dollars == [(planned.estimate_usd, planned.estimate_usd)]
    assert (result.neurons, result.usd) == (planned.estimate, planned.estimate_usd)


def test_a_cancelled_render_calls_nothing_and_stores_nothing():
    backend, cancel = Recording(), threading.Event()
    cancel.set()
    pipe = pipeline(backend)
    with pytest.raises(Cancelled):
        pipe.render(job(), "a cat", cancel=cancel)
    assert backend.requests == [] and pipe.store.keys == set()


def test_a_client_gone_after_the_upstream_answered_is_charged_and_counted():
    """Cloudflare billed the image: a client that hung up meanwhile pays like one that waited,
    nothing is stored, and /metrics counts the neurons of the cancelled generation."""
    cancel = threading.Event()

    class Leaving(Recording):
        def generate(self, request):
            image = super().generate(request)
            cancel.set()                       # the client hangs up while the model draws
            return replace(image, neurons=61.0, account="acc-1")

    pipe, hold, planned = pipeline(Leaving()), SpyHold(), job()
    counted = {"model": planned.model.id}
    before = REGISTRY.get_sample_value("flux_worker_cancelled_neurons_total", counted) or 0.0
    with pytest.raises(Cancelled):
        pipe.render(planned, planned.prompt, cancel=cancel, hold=hold)  # type: ignore[arg-type]
    assert hold.settled == [(61.0, planned.estimate, planned.model.id)]
    assert hold.accounts == ["acc-1"]          # the account's budget counts it too
    assert pipe.store.keys == set()
    after = REGISTRY.get_sample_value("flux_worker_cancelled_neurons_total", counted)
    assert after == pytest.approx(before + 61.0)


def test_bytes_that_are_not_an_image_are_the_models_failure_and_stored_nowhere():
    pipe, hold, planned = pipeline(Recording(answer=b"<html>oops</html>")), SpyHold(), job()
    with pytest.raises(UpstreamError, match="not an image"):
        pipe.render(planned, "a cat", hold=hold)  # type: ignore[arg-type]
    assert pipe.store.keys == set()
    assert hold.settled == [(12.5, planned.estimate, planned.model.id)]   # billed all the same


def test_a_failed_store_marks_storage_failed_for_the_next_requests():
    class Full(MemoryStore):
        def put(self, *args, **kwargs):
            raise StorageError("the store is full")

    pipe = pipeline(store=Full(max_bytes=1 << 20))
    with pytest.raises(StorageError):
        pipe.render(job(), "a cat")
    with pytest.raises(StorageError):
        pipe.health.check()       # remembered: no upstream call is paid for meanwhile


def test_a_batch_keeps_all_or_none():
    store = Keys()
    pipe = pipeline(Recording(fail_on=3), store=store)
    with pytest.raises(UpstreamError):
        pipe.render_batch(job(), 4)
    assert store.keys == set()      # the images that were made are deleted again
    assert len(pipe.backend.requests) == 4


def test_a_batch_draws_distinct_reproducible_seeds_and_translates_once():
    translator = FixedTranslator("a fluffy cat")
    backend = Recording()
    pipe = pipeline(backend, translator)
    planned = job("eine Katze --seed 7", model=SEEDED)
    batch = pipe.render_batch(planned, 3)
    assert [r.seed for r in batch.results] == [7, 8, 9]
    assert {r.prompt for r in backend.requests} == {"a fluffy cat"}
    assert len(translator.calls) == 1 and batch.choice.model == "llm"


def test_translation_failure_keeps_the_users_prompt_and_says_why():
    pipe = pipeline(translator=FixedTranslator(fail=True))
    choice = pipe.choose_prompt(job("ein Hund"))
    assert choice.prompt == "ein Hund" and choice.model is None
    assert choice.skipped == "the LLM timed out"


def test_an_over_long_translation_is_cut_at_a_word_within_the_model_limit():
    model = next(m for m in MODELS.models if m.max_prompt)
    pipe = pipeline(translator=FixedTranslator("word " * (model.max_prompt // 2)))
    choice = pipe.choose_prompt(job("a cat", model=model.id))
    assert len(choice.prompt) <= model.max_prompt and not choice.prompt.endswith(" ")


def test_a_variation_is_never_translated():
    translator = FixedTranslator("unused")
    pipe = pipeline(translator=translator)
    assert pipe.choose_prompt(job("keep me", variation=True)).prompt == "keep me"
    assert translator.calls == []


def test_a_caller_who_hangs_up_during_the_upstream_call_still_pays_for_it():
    cancel = threading.Event()

    class HangsUp(Recording):
        def generate(self, request):
            generated = super().generate(request)
            cancel.set()                       # the client left while the model drew
            return generated

    pipe, hold = pipeline(HangsUp(answer=None)), SpyHold()
    planned = job("a fox")
    with pytest.raises(Cancelled):
        pipe.render(planned, planned.prompt, cancel=cancel, hold=hold)  # type: ignore[arg-type]
    assert hold.settled == [(planned.estimate, planned.estimate, planned.model.id)]
    assert pipe.store.keys == set()            # nothing kept for nobody


def test_a_hang_up_is_charged_the_upstreams_own_figure_when_it_gives_one():
    cancel = threading.Event()

    class HangsUp(Recording):
        def generate(self, request):
            cancel.set()
            return GeneratedImage(b"x", neurons=33.0, account="acc1")

    hold = SpyHold()
    with pytest.raises(Cancelled):
        pipeline(HangsUp()).render(job(), "a cat", cancel=cancel, hold=hold)  # type: ignore[arg-type]
    assert [figure for figure, _, _ in hold.settled] == [33.0]


def test_a_model_billed_in_dollars_settles_dollars_only_the_providers_figure_first():
    priced = replace(MODELS.require("flux-1-schnell"), id="vendor/dollars", price=None,
                     usd=UsdPrice(per_image=0.04))
    planned = Planner(MODELS, 4).plan(ImageOrder(prompt="a fox"), priced, priced)
    assert (planned.estimate, planned.estimate_usd) == (None, 0.04)
    pipe, hold = pipeline(), SpyHold()
    result = pipe.render(planned, planned.prompt, hold=hold)  # type: ignore[arg-type]
    assert hold.settled == [(None, None, "vendor/dollars")] and hold.dollars == [(0.04, 0.04)]
    assert (result.neurons, result.usd) == (None, 0.04)

    class Reports(Recording):
        def generate(self, request):
            return replace(super().generate(request), usd=0.035)

    hold = SpyHold()
    result = pipeline(Reports()).render(planned, "a fox", hold=hold)  # type: ignore[arg-type]
    assert hold.dollars == [(0.035, 0.04)] and result.usd == 0.035
