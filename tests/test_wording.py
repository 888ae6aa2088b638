"""Tests for flux_worker.openai_api.wording: no client ever reads pydantic's own phrasing.

Every request kind is sent bad values field by field, as a client sends them: JSON bodies of
chat completions, generations and edits, multipart form fields of edits and variations (where
every value is a string), and MCP tool arguments. Each answer must be our own words: the field
named in `param` and in the text, and nothing of pydantic's wording.
"""

from __future__ import annotations

import pytest

from flux_worker.errors import InvalidRequest
from flux_worker.mcp.arguments import edit_request, images_request
from flux_worker.mcp.caller import ToolCaller
from flux_worker.mcp.tools import ImageTools
from tests.support import AUTH, app_with

# What pydantic says, and what must therefore never reach a client.
PYDANTIC = ("should have at least", "should have at most", "less than or equal",
            "greater than or equal", "Input should be", "Field required", "validation error",
            "should be a valid", "String should", "Value error", "Extra inputs",
            "errors.pydantic.dev", "literal_error", "type=")

USER = [{"role": "user", "content": "a cute cat 16:9"}]


def assert_our_words(message: str, param: str | None, field: str) -> None:
    for phrase in PYDANTIC:
        assert phrase.lower() not in message.lower(), (phrase, message)
    assert param == field, (param, message)
    assert field.split(".")[0] in message, message  # the text names the field too
    assert message.rstrip().endswith((".", ")")), message


@pytest.fixture(scope="module")
def client():
    with app_with() as (app, _):
        yield app.test_client()


def answer(resp, field: str) -> None:
    assert resp.status_code == 400, resp.get_data(as_text=True)
    error = resp.get_json()["error"]
    assert error["type"] == "invalid_request_error"
    assert_our_words(error["message"], error["param"], field)


# --- chat completions (JSON) ------------------------------------------------------------------

@pytest.mark.parametrize("extra, field", [
    ({"messages": None}, "messages"),
    ({"messages": []}, "messages"),
    ({"messages": "a cat"}, "messages"),
    ({"messages": [1]}, "messages"),
    ({"messages": [{"role": 5, "content": "a cat"}]}, "messages"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": 3}]}]},
     "messages"),
    ({"messages": [{"role": "system", "content": "a cat"}]}, "messages"),
    ({"model": 5}, "model"),
    ({"model": ["flux"]}, "model"),
    ({"stream": "yes"}, "stream"),
    ({"stream": 1}, "stream"),
    ({"stream_options": 5}, "stream_options"),
    ({"stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
    ({"modalities": "image"}, "modalities"),
    ({"modalities": [1]}, "modalities"),
])
def test_chat_completions(client, extra, field):
    answer(client.post("/v1/chat/completions", headers=AUTH, json={"messages": USER, **extra}),
           field)


def test_a_missing_messages_list(client):
    answer(client.post("/v1/chat/completions", headers=AUTH, json={"model": "flux"}),
           "messages")


# --- images generations (JSON) --------------------------------------------------------------

GENERATION_BAD = [
    ("prompt", ""), ("prompt", "   "), ("prompt", 5), ("prompt", None), ("prompt", ["a cat"]),
    ("n", 0), ("n", -1), ("n", 5), ("n", "2"), ("n", 2.5), ("n", True), ("n", []),
    ("size", "huge"), ("size", 1024), ("size", "0x0"), ("size", "99999x99999"), ("size", True),
    ("response_format", "gif"), ("response_format", 5), ("response_format", True),
    ("output_format", "gif"), ("output_format", ""), ("output_format", 5),
    ("model", 5), ("model", []), ("model", {}),
    ("seed", -1), ("seed", 2**32), ("seed", "1"), ("seed", 1.5), ("seed", True),
    ("steps", 0), ("steps", 101), ("steps", "4"), ("steps", 4.5),
    ("negative_prompt", 5), ("negative_prompt", ["x"]),
    ("guidance", -1), ("guidance", 101), ("guidance", "7"), ("guidance", False),
]


@pytest.mark.parametrize("field, value", GENERATION_BAD)
def test_images_generations(client, field, value):
    answer(client.post("/v1/images/generations", headers=AUTH,
                       json={"prompt": "a cat", field: value}), field)


def test_a_missing_prompt(client):
    answer(client.post("/v1/images/generations", headers=AUTH, json={"n": 1}), "prompt")


# --- images edits and variations: multipart form fields, all strings ------------------------

FORM_BAD = [
    ("n", "0"), ("n", "5"), ("n", "abc"), ("n", "2.5"), ("n", "-1"),
    ("size", "huge"), ("size", "0x0"),
    ("response_format", "gif"), ("output_format", "gif"), ("output_format", "bmp"),
    ("seed", "-1"), ("seed", "x"), ("seed", "4294967296"),
]
EDIT_FORM_BAD = FORM_BAD + [
    ("prompt", ""), ("prompt", "   "), ("prompt", "x" * 32001),
    ("steps", "0"), ("steps", "101"), ("steps", "x"),
    ("strength", "2"), ("strength", "-0.1"), ("strength", "x"), ("strength", "nan"),
    ("guidance", "101"), ("guidance", "x"),
]


def form(client, path: str, data: dict):
    return client.post(path, headers=AUTH, data=data, content_type="multipart/form-data")


@pytest.mark.parametrize("field, value", EDIT_FORM_BAD)
def test_edits_form(client, field, value):
    answer(form(client, "/v1/images/edits", {"prompt": "make it blue", field: value}), field)


def test_edits_form_without_a_prompt(client):
    answer(form(client, "/v1/images/edits", {"n": "1"}), "prompt")


@pytest.mark.parametrize("field, value", FORM_BAD)
def test_variations_form(client, field, value):
    answer(form(client, "/v1/images/variations", {field: value}), field)


def test_the_two_cases_that_used_to_leak():
    """An empty edit prompt and `n` above MAX_IMAGES, as the issue reported them."""
    with app_with(MAX_IMAGES=4) as (app, _):
        client = app.test_client()
        empty = form(client, "/v1/images/edits", {"prompt": ""}).get_json()["error"]
        assert empty["param"] == "prompt" and empty["message"].startswith("`prompt` is required")
        many = form(client, "/v1/images/edits", {"prompt": "x", "n": "11"}).get_json()["error"]
        assert many == {"message": "`n` must be a whole number from 1 to 4.", "param": "n",
                        "type": "invalid_request_error", "code": None}


# --- images edits (JSON) --------------------------------------------------------------------

EDIT_JSON_BAD = [
    ("prompt", ""), ("prompt", 5), ("prompt", None),
    ("n", 0), ("n", 5), ("n", "abc"), ("n", [1]),
    ("size", "huge"), ("size", 5),
    ("response_format", "gif"), ("output_format", "gif"),
    ("model", 5), ("negative_prompt", 5),
    ("seed", -1), ("seed", "x"), ("steps", 0), ("steps", 1000),
    ("strength", 2), ("strength", "x"), ("guidance", -1),
    ("images", "x"), ("images", 5), ("images", [1]), ("images", [{"image_url": 5}]),
    ("image", 5), ("image", [1]), ("mask", 5), ("mask", {"image_url": [1]}),
]


@pytest.mark.parametrize("field, value", EDIT_JSON_BAD)
def test_edits_json(client, field, value):
    answer(client.post("/v1/images/edits", headers=AUTH,
                       json={"prompt": "make it blue", field: value}), field)


# --- MCP tool arguments -----------------------------------------------------------------------

MCP_GENERATE_BAD = [
    ("prompt", ""), ("prompt", "   "), ("prompt", 5), ("prompt", None),
    ("model", 5), ("size", 5), ("size", "huge"),
    ("aspect_ratio", "wide"), ("aspect_ratio", "0:1"), ("aspect_ratio", 5),
    ("seed", -1), ("seed", "1"), ("steps", 0), ("steps", 101),
    ("negative_prompt", 5), ("n", 0), ("n", 5), ("n", "2"),
]
MCP_EDIT_BAD = [
    ("prompt", ""), ("prompt", 7),
    ("images", []), ("images", ["data:,"] * 5), ("images", [1]), ("images", ["  "]),
    ("images", 5), ("mask", 5), ("mask", "  "),
    ("strength", 2), ("strength", "0.5"), ("steps", 0), ("seed", -2), ("n", 9),
    ("size", "huge"), ("aspect_ratio", "wide"), ("model", 5),
]


@pytest.mark.parametrize("field, value", MCP_GENERATE_BAD)
def test_generate_image_arguments(field, value):
    with pytest.raises(InvalidRequest) as caught:
        images_request({"prompt": "a cat", field: value}, 4)
    assert_our_words(caught.value.message, caught.value.param, field)


@pytest.mark.parametrize("field, value", MCP_EDIT_BAD)
def test_edit_image_arguments(field, value):
    with pytest.raises(InvalidRequest) as caught:
        edit_request({"prompt": "make it blue", "images": ["data:,"], field: value}, 4)
    assert_our_words(caught.value.message, caught.value.param, field)


def test_missing_tool_arguments():
    for call, args, field in ((images_request, {}, "prompt"),
                              (edit_request, {"prompt": "x"}, "images"),
                              (edit_request, {"images": ["data:,"]}, "prompt")):
        with pytest.raises(InvalidRequest) as caught:
            call(args, 4)
        assert_our_words(caught.value.message, caught.value.param, field)


@pytest.mark.parametrize("tool, args", [
    ("generate_image", {"prompt": "a cat", "steps": "many"}),
    ("generate_image", {}),
    ("edit_image", {"prompt": "x", "images": "data:,", "strength": -1}),
])
def test_tool_errors_carry_the_same_words(tool, args):
    with app_with() as (_, services):
        caller = ToolCaller(identity="t", link=lambda r: None)
        result = ImageTools(services).call(tool, args, caller)
    assert result.is_error is True
    text = result.content[0].text
    assert text.startswith("invalid_request_error: `")
    assert not any(phrase.lower() in text.lower() for phrase in PYDANTIC), text


# --- bodies that are no object --------------------------------------------------------------

@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/images/generations",
                                  "/v1/images/edits"])
@pytest.mark.parametrize("body", [[1, 2], "a cat", 3, None])
def test_a_body_that_is_no_object(client, path, body):
    resp = client.post(path, headers=AUTH, json=body)
    assert resp.status_code == 400
    message = resp.get_json()["error"]["message"]
    assert not any(phrase.lower() in message.lower() for phrase in PYDANTIC), message
    assert "JSON object" in message
