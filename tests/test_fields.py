"""Tests for flux_worker.openai_api.fields: one declaration per field, followed everywhere."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel

from flux_worker.errors import InvalidRequest
from flux_worker.mcp.arguments import EditImageArguments, GenerateImageArguments
from flux_worker.mcp.schemas import edit_tool, generate_tool
from flux_worker.openai_api import fields
from flux_worker.openai_api.edit_requests import EditRequest, VariationRequest
from flux_worker.openai_api.generation_requests import (
    ChatCompletionRequest,
    ImageGenerationRequest,
    StreamOptions,
)
from flux_worker.openai_api.openapi import openapi_spec
from flux_worker.openai_api.wording import Say, validate
from flux_worker.services import build_services
from tests.support import make_config

ROOT = Path(__file__).resolve().parent.parent

MODELS = [ChatCompletionRequest, StreamOptions, ImageGenerationRequest, EditRequest,
          VariationRequest, GenerateImageArguments, EditImageArguments]


@pytest.fixture(scope="module")
def services():
    svc = build_services(make_config())
    yield svc
    svc.close()


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_field_that_can_fail_declares_its_wording(model: type[BaseModel]):
    for name, info in model.model_fields.items():
        if info.annotation is Any:  # OpenAI's ignored fields: any value passes
            continue
        assert any(isinstance(m, Say) for m in info.metadata), f"{model.__name__}.{name}"


def _ranges(schema: dict) -> dict[str, tuple[Any, Any]]:
    """Each property's (minimum, maximum), wherever its schema states them."""
    out = {}
    for name, prop in schema.get("properties", {}).items():
        for choice in prop.get("anyOf", [prop]):
            if "maximum" in choice:
                out[name] = (choice.get("minimum"), choice["maximum"])
    return out


@pytest.mark.parametrize("model", [ImageGenerationRequest, EditRequest, VariationRequest,
                                   GenerateImageArguments, EditImageArguments],
                         ids=lambda m: m.__name__)
def test_messages_state_the_limits_the_schema_states(model: type[BaseModel]):
    """Just past each documented bound, the message names the field and quotes that bound."""
    schema = fields.bound_n(model.model_json_schema(), 3)
    ranges = _ranges(schema)
    assert {"n", "seed"} <= set(ranges)
    valid = {"prompt": "a cat", "images": ["data:,"]}
    for name, (low, high) in ranges.items():
        for bad in (high + 1, low - 1):
            body = {k: v for k, v in valid.items() if k in model.model_fields}
            with pytest.raises(InvalidRequest) as caught:
                validate(model, {**body, name: bad}, {"max_n": 3})
            message = caught.value.message
            assert caught.value.param == name
            assert message.startswith(f"`{name}` must be ")
            assert f"from {low} to {high}." in message, message


def test_shared_fields_have_the_same_limits_in_every_schema(services):
    """The tools, the Images API and the edit forms state one limit per field."""
    spec = openapi_spec(max_images=services.config.max_images)["components"]["schemas"]
    documents = {
        "generate_image": generate_tool(services).input_schema,
        "edit_image": edit_tool(services).input_schema,
        **{name: spec[name] for name in ("ImageGenerationRequest", "ImageEditJson",
                                         "ImageEditForm", "ImageVariationForm")},
    }
    seen: dict[str, tuple[Any, Any]] = {}
    for document in documents.values():
        for name, bounds in _ranges(document).items():
            assert seen.setdefault(name, bounds) == bounds, (name, document)
    assert seen["n"] == (1, services.config.max_images)
    assert seen["steps"][1] == 100 and seen["seed"][1] == 2**32 - 1


def test_tool_schemas_are_the_argument_models(services):
    for tool, model in ((generate_tool(services), GenerateImageArguments),
                        (edit_tool(services), EditImageArguments)):
        schema = tool.input_schema
        assert list(schema["properties"]) == list(model.model_fields)
        assert schema["required"] == [n for n, f in model.model_fields.items() if f.is_required()]
        assert schema["additionalProperties"] is False
        for prop in schema["properties"].values():
            # Optional arguments are left out, never null; descriptions are filled in.
            assert "anyOf" not in prop and "null" not in str(prop.get("type"))
            assert "{" not in prop["description"], prop["description"]


def test_tool_schemas_are_valid_json_schema(services):
    for tool, call in ((generate_tool(services), {"prompt": "a cat"}),
                       (edit_tool(services), {"prompt": "a hat", "images": ["data:,"]})):
        Draft202012Validator.check_schema(tool.input_schema)
        validator = Draft202012Validator(tool.input_schema)
        assert validator.is_valid({**call, "n": 2, "seed": 7, "aspect_ratio": "16:9"})
        for bad in ({"steps": 101}, {"n": 0}, {"seed": None}, {"colour": "red"}):
            assert not validator.is_valid({**call, **bad}), bad


def test_form_schemas_have_no_nulls_but_the_json_edit_does():
    schemas = openapi_spec()["components"]["schemas"]
    for name in ("ImageEditForm", "ImageVariationForm"):
        assert "null" not in json.dumps(schemas[name]), name
    assert {"type": "null"} in schemas["ImageEditJson"]["properties"]["seed"]["anyOf"]
    assert schemas["ImageEditForm"]["properties"]["image"]["format"] == "binary"
    assert schemas["ImageVariationForm"]["required"] == ["image"]


def test_output_formats_follow_their_owner():
    from flux_worker.generation.fitting import OUTPUT_FORMATS
    for name, canonical in OUTPUT_FORMATS.items():
        req = validate(ImageGenerationRequest, {"prompt": "a cat", "output_format": name.upper()})
        assert req.output_format == canonical
    with pytest.raises(InvalidRequest) as caught:
        validate(ImageGenerationRequest, {"prompt": "a cat", "output_format": "gif"})
    assert caught.value.message == '`output_format` must be "png", "jpeg" or "webp".'
    documented = ImageGenerationRequest.model_json_schema()["properties"]["output_format"]
    assert {"type": "string", "enum": list(OUTPUT_FORMATS)} in documented["anyOf"]


# --- one limit changed in its one declaration --------------------------------------------

# Run in a fresh interpreter: the declaration is read when the wire layer is first imported, so
# the limit is changed before anything imports it, as an edit of the source would change it.
_CHANGED_STEPS = textwrap.dedent("""
    import io, json, sys
    import flux_worker.generation.prompt as owner
    assert "flux_worker.openai_api.fields" not in sys.modules
    owner.STEPS_MAX = 40            # the one place the limit of `steps` is written

    from flux_worker import create_app
    from flux_worker.errors import InvalidRequest
    from flux_worker.mcp.arguments import edit_request, images_request
    from flux_worker.mcp.schemas import edit_tool, generate_tool
    from flux_worker.openai_api.openapi import openapi_spec
    from flux_worker.services import build_services
    from tests.support import AUTH, make_config

    out = {}
    svc = build_services(make_config())
    try:
        client = create_app(services=svc).test_client()
        for steps in (40, 41):
            resp = client.post("/v1/images/generations", headers=AUTH,
                               json={"prompt": "a cat", "steps": steps})
            out[f"generations {steps}"] = [resp.status_code, resp.get_json()]
        resp = client.post("/v1/images/edits", headers=AUTH, content_type="multipart/form-data",
                           data={"prompt": "a hat", "steps": "41"})
        out["edits form 41"] = [resp.status_code, resp.get_json()]
        resp = client.post("/v1/images/edits", headers=AUTH, json={"prompt": "a hat",
                                                                   "steps": 41})
        out["edits json 41"] = [resp.status_code, resp.get_json()]
        for name, call, args in (
                ("generate_image", images_request, {"prompt": "a cat", "steps": 41}),
                ("edit_image", edit_request, {"prompt": "a hat", "images": ["data:,"],
                                              "steps": 41})):
            try:
                call(args, 4)
            except InvalidRequest as exc:
                out[name + " 41"] = [exc.param, exc.message]
        out["tools"] = {t.name: t.input_schema["properties"]["steps"]
                        for t in (generate_tool(svc), edit_tool(svc))}
        out["openapi"] = openapi_spec()["components"]["schemas"]
    finally:
        svc.close()
    print(json.dumps(out))
""")


def test_one_limit_changed_in_its_declaration_is_followed_everywhere():
    run = subprocess.run([sys.executable, "-c", _CHANGED_STEPS], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    said = "`steps` must be a whole number from 1 to 40."
    # HTTP validation: JSON, multipart form fields and JSON edits.
    assert out["generations 40"][0] == 200
    for case in ("generations 41", "edits form 41", "edits json 41"):
        status, body = out[case]
        assert status == 400 and body["error"]["message"] == said, case
        assert body["error"]["param"] == "steps"
    # MCP: the tools refuse with the same words, and their schemas say 40.
    assert out["generate_image 41"] == ["steps", said]
    assert out["edit_image 41"] == ["steps", said]
    assert {name: prop["maximum"] for name, prop in out["tools"].items()} == {
        "generate_image": 40, "edit_image": 40}
    # The OpenAPI document: every request schema with `steps`.
    documented = {name: _ranges(schema)["steps"] for name, schema in out["openapi"].items()
                  if "steps" in _ranges(schema)}
    assert documented == {"ImageGenerationRequest": (1, 40), "ImageEditJson": (1, 40),
                          "ImageEditForm": (1, 40)}


def test_without_the_change_the_limit_is_the_owners():
    from flux_worker.generation.prompt import STEPS_MAX
    schema = ImageGenerationRequest.model_json_schema()
    assert _ranges(schema)["steps"] == (1, STEPS_MAX)
