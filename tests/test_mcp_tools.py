"""The MCP tools through the official SDK client, in process, on the demo backend."""

from __future__ import annotations

import base64
import io
from dataclasses import replace

import anyio
import pytest
import responses
from mcp import Client
from PIL import Image

from flux_worker.backends.demo import DemoBackend
from flux_worker.catalog.registry import ModelRegistry
from flux_worker.catalog.spec import UsdPrice
from flux_worker.mcp.caller import ToolCaller
from flux_worker.mcp.preview import PREVIEW_MAX_SIDE, PREVIEW_SIDE, inline_image
from flux_worker.mcp.server import build_server
from flux_worker.mcp.tools import ImageTools
from flux_worker.services import build_services
from tests.support import make_config


def run(services, calls):
    """Connect an SDK client to a server over `services` and run `calls(client)`."""
    links = []

    def link(result):
        links.append(result.key)
        return f"https://img.example/image/{result.key}"

    server = build_server(ImageTools(services), lambda ctx: ToolCaller(identity="t", link=link))

    async def main():
        async with Client(server) as client:
            return await calls(client)

    return anyio.run(main)


@pytest.fixture
def services():
    svc = build_services(make_config())
    yield svc
    svc.close()


def decoded(block):
    return Image.open(io.BytesIO(base64.b64decode(block.data)))


def test_lists_tools_with_schemas_written_for_a_model(services):
    tools = run(services, lambda c: c.list_tools()).tools
    by_name = {t.name: t for t in tools}
    assert set(by_name) == {"generate_image", "edit_image", "list_models"}
    gen = by_name["generate_image"]
    assert gen.input_schema["required"] == ["prompt"]
    props = gen.input_schema["properties"]
    assert set(props) == {"prompt", "model", "size", "aspect_ratio", "seed", "steps",
                          "negative_prompt", "n"}
    assert props["n"]["maximum"] == services.config.max_images
    for name, prop in props.items():
        assert len(prop["description"]) > 20, name
    # Every offered model is named, with what it accepts.
    assert "sdxl-lightning" in gen.description and "negative_prompt" in gen.description
    assert "flux-1-schnell (default)" in gen.description
    assert by_name["list_models"].annotations.read_only_hint is True


def test_generate_returns_the_image_its_link_and_a_description(services):
    result = run(services, lambda c: c.call_tool(
        "generate_image", {"prompt": "a red fox in snow", "aspect_ratio": "16:9"}))
    assert result.is_error is False
    text, image = result.content
    assert image.type == "image" and image.mime_type == "image/jpeg"
    assert decoded(image).size == (1024, 576)
    assert "size 1024x576" in text.text and "flux-1-schnell" in text.text
    assert "Prompt used: a red fox in snow" in text.text
    assert "Links expire after 10 minutes." in text.text  # IMAGE_EXPIRATION=600
    info = result.structured_content
    key = info["images"][0]["url"].rsplit("/", 1)[1]
    assert f"Full image: https://img.example/image/{key}" in text.text
    stored = services.store.get(key)
    assert stored is not None and stored.data == base64.b64decode(image.data)


def test_arguments_the_model_cannot_take_are_named(services):
    result = run(services, lambda c: c.call_tool("generate_image", {
        "prompt": "a cat", "model": "flux-1-schnell", "seed": 5, "negative_prompt": "dogs"}))
    assert result.is_error is False
    assert ("Ignored: seed, negative_prompt (flux-1-schnell does not take them; see "
            "list_models)." in result.content[0].text)
    assert result.structured_content["ignored"] == ["seed", "negative_prompt"]


def test_generate_n_with_seed_and_exact_size(services):
    result = run(services, lambda c: c.call_tool("generate_image", {
        "prompt": "a lighthouse", "model": "sdxl-lightning", "size": "768x512", "seed": 41,
        "n": 2, "negative_prompt": "people"}))
    assert result.is_error is False, result.content
    images = [b for b in result.content if b.type == "image"]
    assert [decoded(b).size for b in images] == [(768, 512), (768, 512)]
    assert [i["seed"] for i in result.structured_content["images"]] == [41, 42]
    assert "seed 41" in result.content[0].text and "seed 42" in result.content[0].text


@pytest.mark.parametrize("args,code,words", [
    ({"prompt": "x", "n": 0}, "invalid_request_error", "`n` must be a whole number from 1 to 4"),
    ({"prompt": "x", "size": "1024x768", "aspect_ratio": "1:1"}, "invalid_request_error",
     "not both"),
    ({"prompt": "x", "aspect_ratio": "wide"}, "invalid_request_error", "16:9"),
    ({"prompt": "x", "colour": "red"}, "invalid_request_error", "Unknown argument `colour`"),
    ({"prompt": "   "}, "invalid_request_error", "`prompt` is required"),
    ({"prompt": "x", "model": "nope"}, "model_not_found", "`nope` does not exist"),
    ({"prompt": "x", "seed": -1}, "invalid_request_error", "`seed` must be a whole number"),
])
def test_bad_input_is_a_tool_error_with_the_api_message(services, args, code, words):
    result = run(services, lambda c: c.call_tool("generate_image", args))
    assert result.is_error is True
    [text] = result.content
    assert text.text.startswith(code + ": ") and words in text.text
    assert "Traceback" not in text.text
    assert len(services.store._cache) == 0  # nothing stored for a refused call


def test_unknown_tool_is_a_tool_error(services):
    result = run(services, lambda c: c.call_tool("draw", {}))
    assert result.is_error is True and "no tool named `draw`" in result.content[0].text


def test_rate_limit_is_a_tool_error():
    svc = build_services(make_config(RATE_LIMIT="1/minute"))
    try:
        async def twice(client):
            first = await client.call_tool("generate_image", {"prompt": "a cat"})
            second = await client.call_tool("generate_image", {"prompt": "a cat"})
            return first, second

        first, second = run(svc, twice)
    finally:
        svc.close()
    assert first.is_error is False
    assert second.is_error is True
    assert second.content[0].text.startswith("rate_limit_exceeded: Rate limit reached")


def test_list_models_describes_each_offered_model():
    svc = build_services(make_config(IMAGE_MODELS="flux-1-schnell,sdxl-lightning"))
    try:
        result = run(svc, lambda c: c.call_tool("list_models", {}))
    finally:
        svc.close()
    assert result.is_error is False
    data = result.structured_content
    assert data["default"] == "@cf/black-forest-labs/flux-1-schnell"
    by_name = {m["name"]: m for m in data["models"]}
    # EDIT_MODEL (flux-2-klein-4b by default) is offered too: it draws the edits.
    assert set(by_name) == {"flux-1-schnell", "sdxl-lightning", "flux-2-klein-4b"}
    assert by_name["flux-2-klein-4b"]["image_input"]["reference_images"] == 4
    assert by_name["sdxl-lightning"]["image_input"]["max_images"] == 0
    assert by_name["sdxl-lightning"]["seed"] is True
    assert by_name["sdxl-lightning"]["negative_prompt"] is True
    assert by_name["flux-1-schnell"]["size_control"] is False
    assert by_name["flux-1-schnell"]["steps"] == {"max": 8}
    assert '"name": "sdxl-lightning"' in result.content[0].text


CF_URL = ("https://api.cloudflare.com/client/v4/accounts/acct/ai/run/"
          "@cf/black-forest-labs/flux-1-schnell")


@responses.activate
def test_content_policy_refusal_is_a_tool_error():
    responses.post(CF_URL, status=400, json={
        "errors": [{"message": "AiError: 3030: Input prompt contains NSFW content", "code": 3030}],
        "success": False, "result": {}, "messages": []})
    svc = build_services(make_config(CF_ACCOUNT_ID="acct", CF_API_TOKEN="tok",
                                     UPSTREAM_RETRIES="0"))
    try:
        result = run(svc, lambda c: c.call_tool("generate_image", {"prompt": "a cat"}))
    finally:
        svc.close()
    assert result.is_error is True
    assert result.content[0].text.startswith("content_policy_violation: ")
    assert "tok" not in result.content[0].text


def test_small_images_are_shown_as_they_are():
    data = _png(640, 480)
    shown = inline_image(data, "image/png", 640, 480)
    assert shown.preview is False and shown.data == data


def test_large_images_are_shown_as_a_jpeg_preview():
    width, height = PREVIEW_MAX_SIDE + 432, (PREVIEW_MAX_SIDE + 432) // 2
    shown = inline_image(_png(width, height), "image/png", width, height)
    assert shown.preview is True and shown.content_type == "image/jpeg"
    img = Image.open(io.BytesIO(shown.data))
    assert img.format == "JPEG" and img.size == (shown.width, shown.height)
    assert (shown.width, shown.height) == (PREVIEW_SIDE, PREVIEW_SIDE // 2)


def _png(width: int, height: int) -> bytes:
    img = Image.effect_noise((width, height), 64).convert("RGB")
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def priced_services(**env):
    """Services priced as Workers AI bills (a Cloudflare configuration), drawn offline."""
    svc = build_services(make_config(CF_ACCOUNT_ID="acc-test", CF_API_TOKEN="cf-test-token",
                                     **env))
    svc.backend = svc.pipeline.backend = DemoBackend()
    return svc


def test_budgets_count_mcp_calls_and_refuse_with_a_tool_error():
    svc = priced_services(DAILY_NEURONS="100", SHOW_COST="true")
    try:
        async def twice(client):
            first = await client.call_tool("generate_image", {"prompt": "a cat"})
            second = await client.call_tool("generate_image", {"prompt": "a cat"})
            return first, second

        first, second = run(svc, twice)
    finally:
        svc.close()
    assert first.is_error is False
    neurons = first.structured_content["neurons"]
    assert neurons == pytest.approx(57.6)  # flux-1-schnell, 1024x1024, 4 steps
    assert "Cost: 57.6 neurons ($0.00063" in first.content[0].text
    assert second.is_error is True
    text = second.content[0].text
    assert text.startswith("insufficient_quota: ") and "DAILY_NEURONS" in text


def test_a_model_billed_in_dollars_tells_its_dollars_and_a_dollar_budget_refuses_it():
    svc = priced_services(DAILY_USD="0.05", DAILY_NEURONS="0", SHOW_COST="true")
    dollars = replace(svc.models.default, id="vendor/dollar-model", aliases=("dollar-model",),
                      price=None, usd=UsdPrice(per_image=0.04))
    svc.generations.planner.models = ModelRegistry((dollars,), dollars)
    try:
        async def twice(client):
            first = await client.call_tool("generate_image", {"prompt": "a cat"})
            second = await client.call_tool("generate_image", {"prompt": "a cat"})
            return first, second

        first, second = run(svc, twice)
        spent = svc.books.spent()
    finally:
        svc.close()
    # no neurons: DAILY_NEURONS=0 does not apply to it; its dollars are counted and shown
    assert first.is_error is False, first.content[0].text
    assert first.structured_content["neurons"] is None
    assert first.structured_content["usd"] == pytest.approx(0.04)
    assert "Cost: $0.04." in first.content[0].text and "neurons" not in first.content[0].text
    assert spent["usd:service"] == pytest.approx(0.04) and "service" not in spent
    assert second.is_error is True
    text = second.content[0].text
    assert text.startswith("insufficient_quota: ") and "DAILY_USD" in text
    assert "$0.01 left, and this request needs about $0.04" in text


def test_list_models_tells_the_cost_estimate(services):
    priced = priced_services()
    try:
        result = run(priced, lambda c: c.call_tool("list_models", {}))
    finally:
        priced.close()
    by_name = {m["name"]: m for m in result.structured_content["models"]}
    cost = by_name["flux-1-schnell"]["cost"]
    assert cost["estimate_neurons"] == pytest.approx(57.6) and cost["price"] is not None
    demo = run(services, lambda c: c.call_tool("list_models", {}))    # draws, bills nothing
    cost = {m["name"]: m for m in demo.structured_content["models"]}["flux-1-schnell"]["cost"]
    assert cost["estimate_neurons"] == 0


def test_images_kept_for_ever_have_no_expiry_note():
    svc = build_services(make_config(IMAGE_EXPIRATION="0"))
    try:
        async def calls(client):
            return (await client.list_tools(),
                    await client.call_tool("generate_image", {"prompt": "a cat"}))

        tools, result = run(svc, calls)
    finally:
        svc.close()
    generate = next(t for t in tools.tools if t.name == "generate_image")
    assert "Images are kept without a time limit." in generate.description
    assert result.is_error is False and "expire" not in result.content[0].text


# --- edit_image ----------------------------------------------------------------------------------

def _data_url(width: int, height: int, mode: str = "RGB") -> str:
    img = Image.new(mode, (width, height), (200, 40, 40, 255) if mode == "RGBA" else (200, 40, 40))
    out = io.BytesIO()
    img.save(out, "PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def test_edit_an_image_generate_returned(services):
    async def calls(client):
        made = await client.call_tool("generate_image", {"prompt": "a house", "size": "768x512"})
        link = made.structured_content["images"][0]["url"]
        return await client.call_tool("edit_image", {
            "prompt": "paint the door blue", "images": [link], "model": "flux-2-klein-4b",
            "seed": 3})

    result = run(services, calls)
    assert result.is_error is False, result.content
    text, image = result.content
    # The output keeps the input's 3:2 proportions.
    assert decoded(image).size == (768, 512) and "size 768x512" in text.text
    assert text.text.startswith("Edited 1 image with flux-2-klein-4b")
    assert "From 1 input image (768x512)." in text.text
    assert "Prompt used: paint the door blue" in text.text and "seed 3" in text.text


def test_edit_with_several_data_urls_and_edit_model_standing_in(services):
    result = run(services, lambda c: c.call_tool("edit_image", {
        "prompt": "combine them", "images": [_data_url(64, 64), _data_url(80, 40)],
        "aspect_ratio": "1:1", "model": "flux-1-schnell"}))
    assert result.is_error is False, result.content
    text = result.content[0].text
    assert "From 2 input images (64x64, 80x40)." in text
    assert "flux-1-schnell takes no images, so flux-2-klein-4b (EDIT_MODEL) drew them." in text
    assert result.structured_content["requested_model"] == "@cf/black-forest-labs/flux-1-schnell"
    assert decoded(result.content[1]).size == (1024, 1024)


@pytest.mark.parametrize("args,code,words", [
    ({"prompt": "x"}, "invalid_request_error", "`images` is required"),
    ({"prompt": "x", "images": []}, "invalid_request_error", "`images` is required"),
    ({"prompt": "x", "images": ["data:,"] * 5}, "invalid_request_error", "1 to 4"),
    ({"prompt": "x", "images": ["https://elsewhere.example/cat.png"]}, "invalid_image",
     "FETCH_REMOTE_IMAGES is off"),
    ({"prompt": "x", "images": ["https://img.example/image/AAAAAAAAAAAAAAAAAAAAAA"]},
     "image_expired", "expired"),
    ({"prompt": "x", "images": ["data:image/png;base64,bm90IGFuIGltYWdl"]}, "invalid_image",
     "not a PNG, JPEG, WebP or GIF image"),
    ({"prompt": "x", "images": ["MASK", "MASK"], "model": "flux-2-klein-4b", "mask": "MASK"},
     "mask_not_supported", "does not take a mask"),
    ({"prompt": "x", "images": ["MASK"], "strength": 2}, "invalid_request_error", "strength"),
])
def test_bad_edits_are_tool_errors_with_the_api_message(services, args, code, words):
    args = {k: ([_data_url(64, 64) if i == "MASK" else i for i in v] if isinstance(v, list)
                else _data_url(64, 64, "RGBA") if v == "MASK" else v) for k, v in args.items()}
    result = run(services, lambda c: c.call_tool("edit_image", args))
    assert result.is_error is True
    text = result.content[0].text
    assert text.startswith(code + ": ") and words in text, text


def test_edit_without_a_model_uses_edit_model(services):
    # The one rule of HTTP edits too: the default model is the one asked for, and EDIT_MODEL
    # stands in because it takes no images (the answer says so).
    result = run(services, lambda c: c.call_tool("edit_image", {
        "prompt": "make it blue", "images": [_data_url(64, 32)]}))
    assert result.is_error is False, result.content
    text = result.content[0].text
    assert text.startswith("Edited 1 image with flux-2-klein-4b")
    assert "flux-1-schnell takes no images, so flux-2-klein-4b (EDIT_MODEL) drew them." in text
    assert result.structured_content["requested_model"] == services.models.default.id
    assert decoded(result.content[1]).size == (1024, 512)  # the input's 2:1


def test_inpainting_with_a_mask(services):
    result = run(services, lambda c: c.call_tool("edit_image", {
        "prompt": "a window", "images": [_data_url(512, 512)],
        "mask": _mask_url(512, 512), "model": "sd15-inpainting", "strength": 0.6}))
    assert result.is_error is False, result.content
    assert decoded(result.content[1]).size == (1024, 1024)
    assert "Ignored" not in result.content[0].text


def _mask_url(width: int, height: int) -> str:
    """An OpenAI-style mask: the top half fully transparent (repaint), the rest opaque."""
    img = Image.new("RGBA", (width, height), (0, 0, 0, 255))
    img.paste((0, 0, 0, 0), (0, 0, width, height // 2))
    out = io.BytesIO()
    img.save(out, "PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")


@pytest.mark.parametrize("proved", [False, True])
def test_a_storage_failure_names_its_address_only_to_a_proved_key(services, monkeypatch, proved):
    from flux_worker.errors import StorageError

    def down():
        raise StorageError("Storage is unavailable (Error 111 connecting to 10.1.2.3:6379).")

    monkeypatch.setattr(services.generations.health, "check", down)
    server = build_server(ImageTools(services), lambda ctx: ToolCaller(
        identity="t", link=lambda result: None, key_proved=proved))

    async def main():
        async with Client(server) as client:
            return await client.call_tool("generate_image", {"prompt": "a fox"})

    result = anyio.run(main)
    assert result.is_error is True
    text = result.content[0].text
    assert text.startswith("storage_error: ")
    assert ("10.1.2.3:6379" in text) is proved
