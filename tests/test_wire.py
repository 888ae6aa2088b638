"""Tests for flux_worker.openai_api.generation_requests: the request models and their 400s."""

from __future__ import annotations

import pytest

from flux_worker.errors import InvalidRequest
from flux_worker.generation.sizes import SizeSpec
from flux_worker.openai_api.generation_requests import (
    ChatCompletionRequest,
    ImageGenerationRequest,
    ImageURLPart,
    OtherPart,
    TextPart,
    parse_chat_completion,
    parse_image_generation,
)

USER = [{"role": "user", "content": "a cute cat 16:9"}]


def chat_error(body) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        parse_chat_completion(body)
    assert caught.value.status == 400
    return caught.value


def images_error(body, max_images: int = 4) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        parse_image_generation(body, max_images)
    assert caught.value.status == 400
    return caught.value


# --- the prompt of a chat: the last user message's text ------------------------------------

def test_prompt_is_the_last_user_message_stripped():
    messages = [
        {"role": "system", "content": "be nice"},
        {"role": "user", "content": "a dog 3:2"},
        {"role": "assistant", "content": "![img](x)"},
        {"role": "user", "content": "  a cute cat 16:9  "},
        {"role": "assistant", "content": "thinking"},
    ]
    chat = parse_chat_completion({"messages": messages})
    assert chat.prompt == "a cute cat 16:9"
    assert chat.last_user_message.content == "  a cute cat 16:9  "


def test_text_parts_are_joined_and_image_parts_kept_typed():
    content = [
        {"type": "text", "text": "a cute cat"},
        {"type": "image_url", "image_url": {"url": "https://example.com/x.png", "detail": "low"}},
        "wearing a hat",
        {"type": "input_audio", "input_audio": {}},
        {"type": "text", "text": "16:9"},
        {"type": "image_url", "image_url": "data:image/png;base64,AAAA"},
    ]
    chat = parse_chat_completion({"messages": [{"role": "user", "content": content}]})
    assert chat.prompt == "a cute cat\nwearing a hat\n16:9"
    message = chat.last_user_message
    assert [type(p) for p in message.content] == [TextPart, ImageURLPart, str, OtherPart,
                                                  TextPart, ImageURLPart]
    images = message.image_parts()
    assert [(p.image_url.url, p.image_url.detail) for p in images] == [
        ("https://example.com/x.png", "low"), ("data:image/png;base64,AAAA", None)]


def test_messages_other_than_the_prompt_may_have_null_content_and_extra_fields():
    messages = [{"role": "assistant", "content": None, "tool_calls": [], "name": "bot"},
                {"role": "tool", "content": [{"type": "text", "text": "done"}]}, *USER]
    assert parse_chat_completion({"messages": messages}).prompt == "a cute cat 16:9"


@pytest.mark.parametrize("messages, words", [
    (None, "non-empty list"),
    ([], "non-empty list"),
    ({"role": "user", "content": "x"}, "non-empty list"),
    ("a cat", "non-empty list"),
    (["a cat"], "messages[0] must be an object"),
    ([{"role": "user", "content": "a"}, 3], "messages[1] must be an object"),
    ([{"role": 5, "content": "a cat"}], "messages[0].role must be a string"),
    ([{"role": "system", "content": "a cat"}], 'no message with role "user"'),
    ([{"content": "a cat"}], 'no message with role "user"'),
    ([{"role": "user", "content": 42}], "content must be a string or a list of content parts "
                                        'such as {"type": "text", "text": "a cute cat 16:9"}; '
                                        "got a number."),
    ([{"role": "user"}], "; got null."),
    ([{"role": "user", "content": {"text": "a cat"}}], "got an object"),
    ([{"role": "user", "content": [{"type": "text", "text": 5}]}],
     "; a text part has no string `text`."),
    ([{"role": "user", "content": [{"type": "text"}]}], "a text part has no string `text`"),
    ([{"role": "user", "content": [None]}], "; a part is null."),
    ([{"role": "user", "content": [{"type": "text", "text": "a cat"},
                                   {"type": "image_url", "image_url": {"url": "x"}}, None]}],
     "; a part is null."),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x", "detail": 1}}]}],
     "an image_url part needs"),
    ([{"role": "user", "content": ["a", 7]}], "; a part is a number."),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"detail": "low"}}]}],
     "an image_url part needs `image_url` with a string `url`"),
    ([{"role": "user", "content": ""}], "is empty"),
    ([{"role": "user", "content": " \n\t "}], "is empty"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
     "is empty"),
    ([{"role": "user", "content": "a cat"}, {"role": "system", "content": 42}],
     "messages[1].content must be a string or a list"),
])
def test_message_errors_say_what_to_send(messages, words):
    err = chat_error({"messages": messages})
    assert err.param == "messages"
    assert words in err.message
    # Every message shows what a good request looks like.
    assert "a cute cat 16:9" in err.message


def test_message_error_wordings():
    assert chat_error({"messages": [{"role": "user", "content": "   "}]}).message == (
        "The last user message is empty: send a description of the image you want, such as "
        "`a cute cat 16:9`.")
    assert chat_error({}).message == (
        '`messages` is required: send a non-empty list such as [{"role": "user", "content": '
        '"a cute cat 16:9"}].')
    assert chat_error({"messages": [{"role": "user", "content": 42}]}).message == (
        'messages[0].content must be a string or a list of content parts such as {"type": '
        '"text", "text": "a cute cat 16:9"}; got a number.')


# --- the other chat fields ---------------------------------------------------------------------

def test_chat_defaults_and_unknown_openai_fields_pass():
    body = {"messages": USER, "temperature": 0.2, "tools": [{"type": "function"}], "user": "u1",
            "modalities": ["text"], "max_tokens": 9, "n": 1, "response_format": {"x": 1}}
    chat = parse_chat_completion(body)
    assert (chat.model, chat.stream, chat.include_usage) == (None, False, False)
    assert not hasattr(chat, "temperature")


@pytest.mark.parametrize("extra, expected", [
    ({"model": "  flux  "}, ("flux", False, False)),
    ({"model": "   "}, (None, False, False)),
    ({"model": None, "stream": None, "stream_options": None}, (None, False, False)),
    ({"stream": True}, (None, True, False)),
    ({"stream": True, "stream_options": {"include_usage": True}}, (None, True, True)),
    ({"stream": True, "stream_options": {"include_usage": None}}, (None, True, False)),
    ({"stream": True, "stream_options": {}}, (None, True, False)),
])
def test_chat_fields(extra, expected):
    chat = parse_chat_completion({"messages": USER, **extra})
    assert (chat.model, chat.stream, chat.include_usage) == expected


@pytest.mark.parametrize("extra, param, message", [
    ({"model": 42}, "model", "`model` must be a string."),
    ({"stream": "yes"}, "stream", "`stream` must be true or false."),
    ({"stream": 1}, "stream", "`stream` must be true or false."),
    ({"stream_options": 5}, "stream_options",
     '`stream_options` must be an object such as {"include_usage": true}.'),
    ({"stream_options": {"include_usage": "true"}}, "stream_options.include_usage",
     "`stream_options.include_usage` must be true or false."),
])
def test_chat_field_errors(extra, param, message):
    err = chat_error({"messages": USER, **extra})
    assert (err.param, err.message) == (param, message)


@pytest.mark.parametrize("body", [[1, 2], "a cat", None, 3])
def test_a_body_that_is_no_object(body):
    for parse in (parse_chat_completion, lambda b: parse_image_generation(b, 4)):
        with pytest.raises(InvalidRequest) as caught:
            parse(body)
        assert caught.value.message.startswith("The request body must be a JSON object")
        assert caught.value.param is None


# --- images ------------------------------------------------------------------------------------

def test_images_defaults_and_ignored_fields():
    req = parse_image_generation({"prompt": " a cat ", "quality": "hd", "style": "vivid",
                                  "user": "u1", "background": "auto", "moderation": "low",
                                  "output_compression": 80, "unknown": {"x": 1}}, 4)
    assert req.prompt == " a cat "  # kept as sent: the prompt parser reads it
    assert (req.n, req.response_format, req.output_format, req.model, req.size, req.seed,
            req.steps, req.negative_prompt, req.guidance) == (
        1, None, None, None, None, None, None, None, None)


def test_images_fields():
    req = parse_image_generation({
        "prompt": "a castle", "model": " sdxl-lightning ", "n": 3, "size": "1024x576",
        "response_format": "b64_json", "output_format": "JPG", "seed": 2**32 - 1, "steps": 100,
        "negative_prompt": "  blurry ", "guidance": 7}, 3)
    assert req.model == "sdxl-lightning" and req.n == 3
    assert req.size == SizeSpec(ratio=None, width=1024, height=576, source="1024x576")
    assert (req.response_format, req.output_format) == ("b64_json", "jpeg")
    assert (req.seed, req.steps, req.negative_prompt) == (2**32 - 1, 100, "blurry")
    assert req.guidance == 7.0 and isinstance(req.guidance, float)


@pytest.mark.parametrize("extra, expected", [
    ({"n": None, "response_format": None, "output_format": None, "size": None}, (1, None, None)),
    ({"response_format": "", "size": "auto"}, (1, None, None)),
    ({"output_format": "WebP", "size": "16:9"}, (1, None, "webp")),
])
def test_images_nulls_and_aliases(extra, expected):
    req = parse_image_generation({"prompt": "a cat", **extra}, 4)
    assert (req.n, req.response_format, req.output_format) == expected


@pytest.mark.parametrize("extra, param, message", [
    ({"prompt": ""}, "prompt", '`prompt` is required: send a text description of the image, '
                               'such as "a cute cat".'),
    ({"prompt": " \n "}, "prompt", None),
    ({"prompt": 5}, "prompt", None),
    ({"prompt": None}, "prompt", None),
    ({"n": 5}, "n", "`n` must be a whole number from 1 to 4."),
    ({"n": 0}, "n", None),
    ({"n": True}, "n", None),
    ({"n": 2.0}, "n", None),
    ({"n": "2"}, "n", None),
    ({"response_format": "gif"}, "response_format",
     '`response_format` must be "url" or "b64_json".'),
    ({"output_format": "gif"}, "output_format", '`output_format` must be "png", "jpeg" or "webp".'),
    ({"output_format": ""}, "output_format", None),
    ({"output_format": 1}, "output_format", None),
    ({"model": 42}, "model", "`model` must be a string."),
    ({"size": "huge"}, "size", "size must be WIDTHxHEIGHT such as 1024x576 (each side 64 to "
                               "4096), a ratio such as 16:9 (from 1:8 to 8:1), or auto; got "
                               "`huge`."),
    ({"size": 1024}, "size", None),
    ({"seed": -1}, "seed", "`seed` must be a whole number from 0 to 4294967295."),
    ({"seed": 2**32}, "seed", None),
    ({"steps": 0}, "steps", "`steps` must be a whole number from 1 to 100."),
    ({"steps": 101}, "steps", None),
    ({"negative_prompt": ["x"]}, "negative_prompt", "`negative_prompt` must be a string."),
    ({"guidance": 100.5}, "guidance", "`guidance` must be a number from 0 to 100."),
    ({"guidance": "7"}, "guidance", None),
    ({"guidance": False}, "guidance", None),
])
def test_images_field_errors(extra, param, message):
    err = images_error({"prompt": "a cat", **extra})
    assert err.param == param
    if message is not None:
        assert err.message == message
    assert err.message.startswith(("`" + param + "`", "size must be"))


def test_n_is_bounded_by_the_max_images_given():
    assert parse_image_generation({"prompt": "a cat", "n": 9}, 9).n == 9
    assert images_error({"prompt": "a cat", "n": 10}, 9).message == (
        "`n` must be a whole number from 1 to 9.")


def test_missing_prompt_is_the_first_error_reported():
    err = images_error({"n": 99, "size": "huge"})
    assert err.param == "prompt"


# --- the models are the schema of the OpenAPI document ------------------------------------

def test_schemas_describe_the_accepted_forms():
    chat = ChatCompletionRequest.model_json_schema()
    assert chat["required"] == ["messages"]
    assert chat["properties"]["messages"]["minItems"] == 1
    images = ImageGenerationRequest.model_json_schema()
    props = images["properties"]
    assert images["required"] == ["prompt"]
    assert {"type": "string", "enum": ["png", "jpeg", "jpg", "webp"]} in \
        props["output_format"]["anyOf"]
    assert {"type": "integer", "minimum": 1} in props["n"]["anyOf"]
    assert {"type": "string"} in props["size"]["anyOf"]
    for ignored in ("style", "user"):
        assert "ignored" in props[ignored]["description"]
    assert {"type": "integer", "minimum": 0, "maximum": 100} in \
        props["output_compression"]["anyOf"]
    assert "transparent" in props["background"]["anyOf"][0]["enum"]
