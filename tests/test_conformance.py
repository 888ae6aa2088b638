"""Every answer validates against OpenAI's published schemas (tests/reference/openai-schemas.json).

The schemas are the `components.schemas` of OpenAI's own OpenAPI description (the file says
which commit). Each answer kind is checked twice: as `openai_format` builds it, and as the live
app sends it through the Flask test client. A few known-bad shapes are checked to fail, so the
validation is known to bite.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from flux_worker import errors
from flux_worker.openai_api import answers
from tests.support import sse_chunks

SCHEMAS_FILE = Path(__file__).parent / "reference" / "openai-schemas.json"
BASE = "urn:openai-schemas"


def _null_where_nullable(node: Any) -> Any:
    """Read OpenAPI 3.0's `nullable: true`, which the file still uses in places, as JSON Schema.

    OpenAI's document mixes 3.1 (`anyOf [..., {"type": "null"}]`) with 3.0's `nullable`, which
    a JSON Schema validator ignores: without this, `finish_reason: null` and `usage: null` in
    stream chunks, which OpenAI itself sends, would fail.
    """
    if isinstance(node, list):
        return [_null_where_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _null_where_nullable(value) for key, value in node.items()}
    if out.pop("nullable", False):
        return {"anyOf": [out, {"type": "null"}]}
    return out


DOCUMENT = _null_where_nullable(json.loads(SCHEMAS_FILE.read_text(encoding="utf-8")))
REGISTRY: Registry = Registry().with_resource(BASE, Resource(DOCUMENT, DRAFT202012))


def validator(name: str) -> Draft202012Validator:
    """A validator for one of OpenAI's component schemas, its $refs resolved in the file."""
    assert name in DOCUMENT["components"]["schemas"], name
    return Draft202012Validator({"$ref": f"{BASE}#/components/schemas/{name}"},
                                registry=REGISTRY,
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


COMPLETION = validator("CreateChatCompletionResponse")
CHUNK = validator("CreateChatCompletionStreamResponse")
IMAGES = validator("ImagesResponse")
MODEL = validator("Model")
MODELS = validator("ListModelsResponse")
ERROR = validator("ErrorResponse")


# --- the validation bites ----------------------------------------------------------------------

def test_the_known_defects_of_the_old_answers_fail():
    good = answers.chat_completion("chatcmpl-1", 1, "m", "hi", answers.usage("a", "b"))
    COMPLETION.validate(good)
    no_refusal = json.loads(json.dumps(good))
    del no_refusal["choices"][0]["message"]["refusal"]
    null_fingerprint = dict(good, system_fingerprint=None)
    for bad in (no_refusal, null_fingerprint, dict(good, object="chat.completions")):
        with pytest.raises(ValidationError):
            COMPLETION.validate(bad)
    with pytest.raises(ValidationError):
        IMAGES.validate({"created": 1, "data": [{"url": "x"}], "size": "1024x576"})
    with pytest.raises(ValidationError):
        IMAGES.validate({"created": 1, "data": [], "output_format": "jpg"})
    with pytest.raises(ValidationError):
        ERROR.validate({"error": {"message": "x", "type": "y", "param": None}})  # no code
    with pytest.raises(ValidationError):
        CHUNK.validate({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                        "choices": [{"index": 0, "delta": {}, "finish_reason": "done"}]})


def test_nullable_is_read_as_null_allowed():
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [{"index": 0, "delta": {"content": "x"}, "logprobs": None,
                          "finish_reason": None}], "usage": None}
    CHUNK.validate(chunk)


# --- the builders -----------------------------------------------------------------------------

def test_chat_completion_conforms():
    answer = answers.chat_completion(answers.completion_id(), 1700000000, "flux",
                                           "![image](https://x/image/k)",
                                           answers.usage("a cat", "![image](...)"))
    COMPLETION.validate(answer)
    assert answer["choices"][0]["message"]["refusal"] is None
    assert "system_fingerprint" not in answer


@pytest.mark.parametrize("include_usage", [False, True])
def test_every_chunk_kind_conforms(include_usage):
    writer = answers.ChunkWriter(answers.completion_id(), 1700000000, "flux",
                                       include_usage)
    events = [writer.role(), writer.content("🎨 painting"), writer.content(""),
              writer.finish("stop"), writer.finish("length")]
    if include_usage:
        events.append(writer.usage(answers.usage("a cat", "🎨 painting")))
    chunks = sse_chunks("".join(events) + answers.DONE)
    assert len(chunks) == len(events)
    for chunk in chunks:
        CHUNK.validate(chunk)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    if include_usage:
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
        assert all(chunk["usage"] is None for chunk in chunks[:-1])
    else:
        assert all("usage" not in chunk for chunk in chunks)


@dataclass
class Rendered:
    """What image_items reads of a rendered image."""

    key: str
    data: bytes
    seed: int | None


RENDERED = [Rendered("abc", b"\xff\xd8\xff\xe0 jpeg", 42), Rendered("def", b"\x89PNG", None)]


def _link(key: str) -> str:
    return f"http://127.0.0.1:8080/image/{key}"


@pytest.mark.parametrize("items", [
    answers.image_items(RENDERED[:1], "url", _link),
    answers.image_items(RENDERED, "url", _link, revised_prompt="a cat", show_seed=True),
    answers.image_items(RENDERED, "b64_json", _link, show_seed=True),
    answers.image_items(RENDERED[1:], "b64_json", _link, revised_prompt="ein Hund"),
])
@pytest.mark.parametrize("size, output_format", [
    ("1024x1024", "png"), ("1024x576", "jpeg"), ("1536x1024", "webp"), (None, None),
    ("512x512", "gif"),
])
def test_images_answer_conforms(items, size, output_format):
    answer = answers.images_response(items, size=size, output_format=output_format)
    IMAGES.validate(answer)
    assert answer["data"] == items
    assert answer.get("size") == (size if size in ("1024x1024", "1536x1024") else None)
    assert answer.get("output_format") == (None if output_format in (None, "gif")
                                           else output_format)


def test_model_and_model_list_conform():
    detail = answers.model_object(
        "@cf/black-forest-labs/flux-1-schnell", "black-forest-labs", 1720000000,
        backend="cloudflare", aliases=["flux"], description="FLUX.1 [schnell]",
        capabilities={"seed": True}, default=True)
    MODEL.validate(detail)
    plain = answers.model_object("@cf/leonardo/phoenix-1.0", "leonardo", 1730000000,
                                       backend="demo")
    MODELS.validate(answers.model_list([plain, detail]))
    MODELS.validate(answers.model_list([]))


def _error_classes() -> list[type[errors.APIError]]:
    return [cls for _, cls in inspect.getmembers(errors, inspect.isclass)
            if issubclass(cls, errors.APIError)]


def test_every_error_class_is_covered():
    names = {cls.__name__ for cls in _error_classes()}
    assert {"APIError", "InvalidRequest", "AuthenticationError", "ModelNotFound", "RateLimited",
            "StorageFull", "ServerError"} <= names


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda cls: cls.__name__)
def test_every_error_answer_conforms(cls):
    ERROR.validate(cls("Something went wrong: do this instead.").body())
    ERROR.validate(cls("Bad field.", param="n", code="custom", retry_after=3).body())
    ERROR.validate(cls("m").body())


# --- the live app -----------------------------------------------------------------------------

CHAT = {"model": "flux", "messages": [{"role": "user", "content": "a cute cat 16:9"}],
        "temperature": 0.7, "user": "u1"}


def test_live_chat_completion_conforms(client, auth):
    resp = client.post("/v1/chat/completions", json=CHAT, headers=auth)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    COMPLETION.validate(resp.get_json())


@pytest.mark.parametrize("include_usage", [False, True])
def test_live_stream_chunks_conform(client, auth, include_usage):
    body = dict(CHAT, stream=True, stream_options={"include_usage": include_usage})
    resp = client.post("/v1/chat/completions", json=body, headers=auth)
    assert resp.status_code == 200 and resp.mimetype == "text/event-stream"
    chunks = sse_chunks(resp.get_data(as_text=True))
    assert len(chunks) >= 3  # role, content, finish
    for chunk in chunks:
        CHUNK.validate(chunk)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    if include_usage:
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] is not None


def test_live_housekeeping_answer_conforms(client, auth):
    body = {"messages": [{"role": "user", "content": "a cat"},
                         {"role": "assistant", "content": "ok"},
                         {"role": "user", "content": "Generate a four to five word title "
                                                     "summarizing our conversation"}]}
    resp = client.post("/v1/chat/completions", json=body, headers=auth)
    assert resp.status_code == 200
    COMPLETION.validate(resp.get_json())


@pytest.mark.parametrize("body", [
    {"prompt": "a red fox", "n": 2, "size": "1024x576"},
    {"prompt": "a red fox", "size": "1024x1024", "output_format": "png"},
    {"prompt": "a castle", "response_format": "b64_json", "model": "sdxl-lightning", "seed": 7,
     "quality": "hd", "style": "vivid"},
])
def test_live_images_conform(client, auth, body):
    resp = client.post("/v1/images/generations", json=body, headers=auth)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    answer = resp.get_json()
    IMAGES.validate(answer)
    assert len(answer["data"]) == body.get("n", 1)


def test_live_models_conform(client, auth):
    listed = client.get("/v1/models", headers=auth)
    assert listed.status_code == 200
    MODELS.validate(listed.get_json())
    for model in listed.get_json()["data"]:
        one = client.get("/v1/models/" + model["id"], headers=auth)
        assert one.status_code == 200
        MODEL.validate(one.get_json())


@pytest.mark.parametrize("method, path, kwargs, status", [
    ("post", "/v1/chat/completions", {"json": {"messages": []}}, 400),
    ("post", "/v1/chat/completions", {"data": "{not json", "content_type": "application/json"},
     400),
    ("post", "/v1/images/generations", {"json": {"prompt": "a cat", "n": 99}}, 400),
    ("get", "/v1/models", {"headers": {"Authorization": "Bearer sk-wrong"}}, 401),
    ("get", "/v1/models", {"headers": {}}, 401),
    ("get", "/v1/models/@cf/nobody/nothing", {}, 404),
    ("get", "/v1/nothing-here", {}, 404),
    ("delete", "/v1/models", {}, 405),
])
def test_live_errors_conform(client, auth, method, path, kwargs, status):
    kwargs.setdefault("headers", auth)
    resp = getattr(client, method)(path, **kwargs)
    assert resp.status_code == status, resp.get_data(as_text=True)
    ERROR.validate(resp.get_json())
