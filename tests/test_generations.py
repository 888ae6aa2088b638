"""The one generation entry point: admission before any input is read, for every interface.

A caller over its rate limit or budget must cost the service nothing: no download of a remote
image, no decode, no upstream call. Chat, the Images API, edits and MCP all go through
`Generations.start`; these tests hold each of them to that, and the entry point to its order.
"""

from __future__ import annotations

import base64
import io
import threading
from dataclasses import replace

import anyio
import pytest
from mcp import Client
from PIL import Image

from flux_worker import create_app
from flux_worker.backends.demo import DemoBackend
from flux_worker.cost.ledgers import USD, key_counter
from flux_worker.errors import ImageRefused, QuotaExceeded, RateLimited, StorageError
from flux_worker.generation.job import Caller, ImageOrder
from flux_worker.generation.planner import Planner
from flux_worker.inputs import intake
from flux_worker.inputs.image import ImageSource
from flux_worker.mcp.caller import ToolCaller
from flux_worker.mcp.server import build_server
from flux_worker.mcp.tools import ImageTools
from flux_worker.services import build_services
from tests.support import AUTH, TEST_KEY, make_config

REMOTE = "https://img.example.org/cat.png"
# Priced as Workers AI bills (a Cloudflare configuration), drawn offline by the demo backend put
# in its place: the demo's own models cost nothing, so no budget would ever apply to them.
PRICED = {"CF_ACCOUNT_ID": "acc-test", "CF_API_TOKEN": "cf-test-token"}


def png(size=(64, 48), mode="RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, (200, 40, 40)).save(out, "PNG")
    return out.getvalue()


def data_url(size=(64, 48)) -> str:
    return "data:image/png;base64," + base64.b64encode(png(size)).decode()


class CountingBackend(DemoBackend):
    """The demo backend, counting its calls."""

    def __init__(self):
        self.calls = 0

    def generate(self, request):
        self.calls += 1
        return super().generate(request)


class CountingFetcher:
    """Stands in for the remote fetcher: counts downloads, answers a small PNG."""

    def __init__(self):
        self.fetches = 0

    def fetch(self, url, label):
        self.fetches += 1
        return png()


@pytest.fixture
def spies(monkeypatch):
    """Services whose upstream calls, downloads and decodes are counted."""
    decodes = []
    real_decode = intake.decode

    def counting_decode(*args, **kwargs):
        decodes.append(args[1] if len(args) > 1 else kwargs.get("label"))
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(intake, "decode", counting_decode)

    def build(**config):
        services = build_services(make_config(FETCH_REMOTE_IMAGES="true", **PRICED, **config))
        backend = CountingBackend()
        services.backend = services.pipeline.backend = backend
        fetcher = CountingFetcher()
        services.generations.intake.fetcher = fetcher
        built.append(services)
        return services, backend, fetcher, decodes

    built: list = []
    yield build
    for services in built:
        services.close()


def _chat(client, content):
    return client.post("/v1/chat/completions", headers=AUTH, json={
        "messages": [{"role": "user", "content": content}]})


def _chat_with_image(client):
    return _chat(client, [{"type": "text", "text": "make it blue"},
                          {"type": "image_url", "image_url": {"url": REMOTE}}])


def _images(client):
    return client.post("/v1/images/generations", headers=AUTH,
                       json={"prompt": "a cat", "n": 2, "response_format": "url"})


def _edit(client):
    return client.post("/v1/images/edits", headers=AUTH, json={
        "prompt": "make it blue", "images": [{"image_url": REMOTE}, {"image_url": data_url()}]})


def _variation(client):
    return client.post("/v1/images/variations", headers=AUTH, content_type="multipart/form-data",
                       data={"image": (io.BytesIO(png()), "a.png", "image/png")})


def _mcp_edit(services):
    server = build_server(ImageTools(services), lambda ctx: ToolCaller(
        identity=TEST_KEY, key=TEST_KEY, link=lambda result: None))

    async def main():
        async with Client(server) as client:
            return await client.call_tool("edit_image", {
                "prompt": "make it blue", "images": [REMOTE, data_url()]})

    return anyio.run(main)


HTTP_CALLS = {"chat": _chat_with_image, "images": _images, "edits": _edit,
              "variations": _variation}


@pytest.mark.parametrize("name", sorted(HTTP_CALLS))
def test_over_the_rate_limit_no_fetch_no_decode_no_upstream_http(spies, name):
    services, backend, fetcher, decodes = spies(RATE_LIMIT="1/minute")
    client = create_app(services=services).test_client()
    assert _chat(client, "a first cat").status_code == 200     # takes the one allowed
    calls, fetched, decoded = backend.calls, fetcher.fetches, len(decodes)
    resp = HTTP_CALLS[name](client)
    assert resp.status_code == 429, resp.get_json()
    assert resp.get_json()["error"]["code"] == "rate_limit_exceeded"
    assert (backend.calls, fetcher.fetches, len(decodes)) == (calls, fetched, decoded)


@pytest.mark.parametrize("name", sorted(HTTP_CALLS))
def test_over_the_budget_no_fetch_no_decode_no_upstream_http(spies, name):
    services, backend, fetcher, decodes = spies(KEY_DAILY_NEURONS="0.001")
    client = create_app(services=services).test_client()
    resp = HTTP_CALLS[name](client)
    assert resp.status_code == 429, resp.get_json()
    assert resp.get_json()["error"]["code"] == "insufficient_quota"
    assert (backend.calls, fetcher.fetches, decodes) == (0, 0, [])


@pytest.mark.parametrize("limits,code", [({"RATE_LIMIT": "1/minute"}, "rate_limit_exceeded"),
                                         ({"KEY_DAILY_NEURONS": "0.001"}, "insufficient_quota")])
def test_mcp_edit_over_its_limit_fetches_and_decodes_nothing(spies, limits, code):
    services, backend, fetcher, decodes = spies(**limits)
    if "RATE_LIMIT" in limits:
        services.admission.limiter.hit(TEST_KEY)            # the one allowed is taken
    result = _mcp_edit(services)
    assert result.is_error is True
    assert result.content[0].text.startswith(code + ": "), result.content[0].text
    assert (backend.calls, fetcher.fetches, decodes) == (0, 0, [])


def test_within_its_limits_the_same_edit_fetches_decodes_and_draws(spies):
    services, backend, fetcher, decodes = spies()
    client = create_app(services=services).test_client()
    resp = _edit(client)
    assert resp.status_code == 200, resp.get_json()
    assert (backend.calls, fetcher.fetches) == (1, 1)
    assert decodes == ["images[0]", "images[1]"]


# --- the entry point itself ----------------------------------------------------------------------

@pytest.fixture
def services():
    svc = build_services(make_config(KEY_DAILY_NEURONS="100000", **PRICED))
    svc.backend = svc.pipeline.backend = DemoBackend()
    yield svc
    svc.close()


def caller() -> Caller:
    return Caller(identity=TEST_KEY, key=TEST_KEY, cancel=threading.Event())


def test_a_refused_input_gives_the_slot_and_the_reservation_back(services):
    order = ImageOrder(prompt="make it blue", images=(ImageSource.link("data:,nope", "x"),))
    with pytest.raises(ImageRefused):
        services.generations.start(order, caller())
    assert services.admission.gate.in_use == 0
    assert set(services.books.spent().values()) == {0.0}   # reserved, then all given back


def test_storage_down_refuses_before_admission(services, monkeypatch):
    def down():
        raise StorageError("storage is down")

    monkeypatch.setattr(services.store, "ping", down)
    with pytest.raises(StorageError):
        services.generations.start(ImageOrder(prompt="a cat"), caller())
    assert services.admission.gate.in_use == 0


def test_a_bad_order_counts_against_nothing(services):
    services.admission.limiter = None
    with pytest.raises(Exception) as info:
        services.generations.start(ImageOrder(prompt="   "), caller())
    assert getattr(info.value, "param", None) == "prompt"
    assert services.admission.gate.in_use == 0


def test_close_gives_back_exactly_once_and_settles_what_was_drawn(services):
    generation = services.generations.start(ImageOrder(prompt="a cat 16:9", n=2), caller())
    assert services.admission.gate.in_use == 2
    with generation:
        batch = generation.render_all()
    generation.close()
    assert services.admission.gate.in_use == 0
    assert len(batch.results) == 2 and generation.neurons == pytest.approx(
        sum(r.neurons for r in batch.results))


def test_an_edit_reserves_the_dearest_shape_then_holds_its_plan(services):
    order = ImageOrder(prompt="make it blue", model="flux-2-klein-4b",
                       images=(ImageSource.link(data_url((300, 300)), "square"),))
    model, _ = services.generations.planner.choose_model(order)
    upper = services.generations.planner.estimate(order, model).neurons
    with services.generations.start(order, caller()) as generation:
        assert generation.job.size == "1024x1024"
        assert generation.estimate == pytest.approx(generation.job.estimate)
        assert 0 < generation.estimate <= upper
        assert generation.hold is not None
        assert generation.hold.estimate_usd == pytest.approx(generation.job.estimate_usd)


def test_an_edit_lowers_the_dollars_held_with_the_neurons(services):
    order = ImageOrder(prompt="make it blue", model="flux-2-klein-4b",
                       images=(ImageSource.link(data_url((400, 100)), "wide"),))
    model, _ = services.generations.planner.choose_model(order)
    upper = services.generations.planner.estimate(order, model)
    with services.generations.start(order, caller()) as generation:
        assert generation.hold is not None and generation.job.estimate_usd is not None
        assert generation.job.estimate_usd < upper.usd
        assert generation.hold.estimate_usd == pytest.approx(generation.job.estimate_usd)
        spent = services.books.spent()
        assert spent[USD.counter(key_counter(TEST_KEY))] == pytest.approx(
            generation.job.estimate_usd)


def test_dollars_are_reserved_and_settled_beside_the_neurons(services):
    order = ImageOrder(prompt="a cat", n=2)
    model, _ = services.generations.planner.choose_model(order)
    estimate = services.generations.planner.estimate(order, model)
    assert estimate.neurons and estimate.usd == pytest.approx(estimate.neurons * 0.011 / 1000)
    with services.generations.start(order, caller()) as generation:
        batch = generation.render_all()
    assert generation.usd == pytest.approx(2 * estimate.usd)
    assert [r.usd for r in batch.results] == [pytest.approx(estimate.usd)] * 2
    spent = services.books.spent()
    assert spent[USD.counter(key_counter(TEST_KEY))] == pytest.approx(2 * estimate.usd)
    assert spent[key_counter(TEST_KEY)] == pytest.approx(2 * estimate.neurons)


def test_over_a_dollar_budget_is_refused_before_anything_is_drawn(services):
    services.books.rules = replace(services.books.rules, service_usd=0.0001)
    with pytest.raises(QuotaExceeded, match=r"DAILY_USD\) of \$0.0001 is used up"):
        services.generations.start(ImageOrder(prompt="a cat"), caller())
    assert services.admission.gate.in_use == 0
    assert services.books.spent() == {}


def test_over_budget_is_refused_with_the_estimate(services):
    services.books.rules = type(services.books.rules)(service=0.001)
    with pytest.raises(QuotaExceeded):
        services.generations.start(ImageOrder(prompt="a cat"), caller())
    assert services.admission.gate.in_use == 0


def test_over_the_rate_limit_is_refused_by_check_and_start():
    svc = build_services(make_config(RATE_LIMIT="1/minute"))
    try:
        with svc.generations.start(ImageOrder(prompt="a cat"), caller()):
            pass
        with pytest.raises(RateLimited):
            svc.generations.check(caller())
        with pytest.raises(RateLimited):
            svc.generations.start(ImageOrder(prompt="a cat"), caller())
    finally:
        svc.close()


# --- the planner: one rule for the model of an edit ---------------------------------------------

def test_an_edit_without_a_model_asks_the_default_and_edit_model_stands_in(services):
    planner = Planner(services.models, 4)
    order = ImageOrder(prompt="make it blue", images=(ImageSource.link("data:,x", "x"),))
    model, requested = planner.choose_model(order)
    assert requested is services.models.default
    assert model is services.models.edit_model and model is not requested


def test_a_chat_names_its_model_freely(services):
    planner = Planner(services.models, 4)
    model, requested = planner.choose_model(ImageOrder(prompt="x", model="gpt-4o", chat=True))
    assert model is requested is services.models.default
    with pytest.raises(Exception) as info:
        planner.choose_model(ImageOrder(prompt="x", model="gpt-4o"))
    assert getattr(info.value, "code", None) == "model_not_found"


def test_flux_num_steps_is_workers_ai_s_and_other_providers_run_their_own_default():
    from flux_worker.catalog.fal import FAL_CATALOG
    from flux_worker.catalog.registry import ModelRegistry
    from flux_worker.catalog.workers_ai import CATALOG

    models = ModelRegistry((*CATALOG, *FAL_CATALOG), CATALOG[0])
    planner = Planner(models, 4)
    dev = planner.plan(ImageOrder(prompt="a fox", model="fal:fal-ai/flux/dev"),
                       models.require("fal:fal-ai/flux/dev"), None, (), None)
    assert dev.steps == 28                     # fal's own default for FLUX dev
    lucid = planner.plan(ImageOrder(prompt="a fox", model="lucid-origin", quality="high"),
                         models.require("lucid-origin"), None, (), None)
    assert lucid.steps == 8                    # FLUX_NUM_STEPS, doubled for `high`


def test_a_hang_up_after_the_upstream_call_counts_on_the_keys_budget(services):
    from flux_worker.cost.ledgers import key_counter
    from flux_worker.errors import Cancelled

    asking = caller()

    class LeavesDuringTheCall(CountingBackend):
        def generate(self, request):
            generated = super().generate(request)
            asking.cancel.set()
            return generated

    services.backend = services.pipeline.backend = LeavesDuringTheCall()
    with pytest.raises(Cancelled):
        with services.generations.start(ImageOrder(prompt="a cat", n=2), asking) as generation:
            generation.render_all()
    spent = services.books.spent()[key_counter(TEST_KEY)]
    assert spent == pytest.approx(2 * generation.job.estimate)    # both images were drawn
    assert services.admission.gate.in_use == 0
