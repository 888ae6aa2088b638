"""The OpenAPI description: a valid document, true to the routes and to real answers."""

from __future__ import annotations

import copy
import json
import re

import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from openapi_spec_validator import validate

from flux_worker import create_app
from flux_worker.openai_api.generation_requests import (
    ChatCompletionRequest,
    ImageGenerationRequest,
    parse_chat_completion,
    parse_image_generation,
)
from flux_worker.openai_api.openapi import openapi_spec
from flux_worker.web.routes import unprefixed_aliases
from tests.support import app_with, make_config

# The document as the app serves it: the root aliases come from the app's own routes.
with app_with() as (_app, _):
    ALIASES = unprefixed_aliases(_app)
SPEC = openapi_spec(aliases=ALIASES)


def test_spec_is_a_valid_openapi_document():
    validate(SPEC)
    validate(openapi_spec("https://img.example.com", max_images=9, max_body_bytes=4096))


def test_spec_is_plain_json():
    assert json.loads(json.dumps(SPEC)) == SPEC


def test_operation_ids_are_unique():
    ids = [op["operationId"] for item in SPEC["paths"].values() for method, op in item.items()
           if method != "parameters"]
    assert len(ids) == len(set(ids))


def test_every_error_status_answers_with_the_error_schema():
    responses = SPEC["components"]["responses"]
    for path, item in SPEC["paths"].items():
        for method, op in item.items():
            if method in ("parameters", "head"):  # HEAD answers carry no body
                continue
            for status, response in op["responses"].items():
                if int(status) < 400:
                    continue
                if "$ref" in response:
                    response = responses[response["$ref"].rsplit("/", 1)[1]]
                schema = response["content"]["application/json"]["schema"]
                refs = [schema] + schema.get("allOf", [])
                assert {"$ref": "#/components/schemas/Error"} in refs, (path, method, status)


def test_api_routes_need_the_bearer_key_and_the_others_do_not():
    for path, item in SPEC["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            api = path.startswith(("/v1/", "/chat/", "/images/", "/models", "/usage",
                                   "/responses"))
            assert op["security"] == ([{"bearerAuth": []}] if api else []), (path, method)
            assert ("401" in op["responses"]) == api, (path, method)


# --- kept true by construction: request schemas are the wire models' --------------------------

def test_request_schemas_are_generated_from_the_wire_models():
    schemas = openapi_spec(max_images=7)["components"]["schemas"]
    for model in (ChatCompletionRequest, ImageGenerationRequest):
        generated = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, part in generated.pop("$defs", {}).items():
            assert schemas[name] == part, name
        documented = schemas[model.__name__]
        if model is ImageGenerationRequest:
            # The one addition: MAX_IMAGES, which is configuration, bounds `n`.
            documented = copy.deepcopy(documented)
            integer = next(choice for choice in documented["properties"]["n"]["anyOf"]
                           if choice.get("type") == "integer")
            assert integer.pop("maximum") == 7
        assert documented == generated


def test_request_examples_are_accepted_by_the_wire_models():
    parsers = {"/v1/chat/completions": parse_chat_completion,
               "/v1/images/generations": lambda body: parse_image_generation(body, 4)}
    for path, parse in parsers.items():
        body = SPEC["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        assert body["examples"]
        for example in body["examples"].values():
            parse(example["value"])


# --- kept true by a test: routes and paths match --------------------------------------------

def _spec_path(rule: str) -> str:
    """A Flask rule such as /v1/models/<path:model_id> as an OpenAPI path."""
    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule)


def test_every_route_is_described_and_every_path_is_a_route(app):
    routes = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        routes.setdefault(_spec_path(rule.rule), set()).update(rule.methods - {"OPTIONS"})
    described = {path: {m.upper() for m in item if m != "parameters"}
                 for path, item in SPEC["paths"].items()}
    assert set(described) == set(routes)
    for path, methods in routes.items():
        # Flask adds HEAD to every GET route; the spec lists HEAD only where it is meant.
        assert described[path] - {"HEAD"} == methods - {"HEAD"}, path
        assert described[path] <= methods, path


# --- real answers validate against the spec ------------------------------------------------

def _schema_validator(schema: dict) -> Draft202012Validator:
    # The spec's components ride along, so "#/components/..." references resolve.
    return Draft202012Validator({**schema, "components": SPEC["components"]})


def _response_object(path: str, method: str, status: int) -> dict:
    responses = SPEC["paths"][path][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {path} does not document {status}"
    return _resolve(responses[str(status)])


def _resolve(response: dict) -> dict:
    if "$ref" in response:
        return SPEC["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    return response


def assert_conforms(resp, path: str, method: str | None = None, *, response: dict | None = None):
    """Assert that a test-client answer has a documented status, media type, headers and body."""
    method = method or resp.request.method
    documented = response or _response_object(path, method, resp.status_code)
    for name, header in documented.get("headers", {}).items():
        header = SPEC["components"]["headers"][header["$ref"].rsplit("/", 1)[1]]
        if name in resp.headers and header["schema"].get("type") == "integer":
            assert resp.headers[name].isdigit(), name
    content = documented.get("content")
    if content is None or method == "HEAD":
        assert not resp.data
        return
    assert resp.mimetype in content, f"{resp.mimetype} not documented for {method} {path}"
    schema = content[resp.mimetype]["schema"]
    if resp.mimetype == "application/json":
        _schema_validator(schema).validate(resp.get_json())
    elif resp.mimetype == "text/event-stream":
        _assert_events_conform(resp.get_data(as_text=True), schema)
    else:
        assert schema["type"] == "string"


def _assert_events_conform(text: str, event_schema: dict):
    """Each event matches the event schema, and its JSON data the chunk schema; [DONE] ends."""
    blocks = [b for b in text.split("\n\n") if b.strip()]
    datas = []
    for block in blocks:
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        _schema_validator(event_schema).validate(fields)
        datas.append(fields["data"])
    assert datas[-1] == "[DONE]"
    chunk = _schema_validator({"$ref": "#/components/schemas/ChatCompletionChunk"})
    for data in datas[:-1]:
        chunk.validate(json.loads(data))


def test_schema_checks_catch_a_wrong_body():
    bad = {"error": {"message": "x", "type": "y", "param": None}}  # no code
    with pytest.raises(ValidationError):
        _schema_validator({"$ref": "#/components/schemas/Error"}).validate(bad)


CHAT = {"model": "flux", "messages": [{"role": "user", "content": "a cute cat 16:9"}]}


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/chat/completions"])
def test_chat_completion_conforms(client, auth, path):
    resp = client.post(path, json=CHAT, headers=auth)
    assert resp.status_code == 200
    assert_conforms(resp, path)


@pytest.mark.parametrize("stream", [False, True])
def test_chat_housekeeping_answer_conforms(client, auth, stream):
    body = {"stream": stream, "messages": [
        {"role": "user", "content": "a cat"}, {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "Generate a four to five word title summarizing our "
                                    "conversation"}]}
    resp = client.post("/v1/chat/completions", json=body, headers=auth)
    assert resp.status_code == 200
    assert "/image/" not in resp.get_data(as_text=True)  # answered with text, no image
    assert_conforms(resp, "/v1/chat/completions")


@pytest.mark.parametrize("include_usage", [False, True])
def test_chat_stream_conforms(client, auth, include_usage):
    body = dict(CHAT, stream=True, stream_options={"include_usage": include_usage})
    resp = client.post("/v1/chat/completions", json=body, headers=auth)
    assert resp.status_code == 200 and resp.mimetype == "text/event-stream"
    assert_conforms(resp, "/v1/chat/completions")


def test_models_conform(client, auth):
    resp = client.get("/v1/models", headers=auth)
    assert_conforms(resp, "/v1/models")
    for model in resp.get_json()["data"]:
        one = client.get("/v1/models/" + model["id"], headers=auth)
        assert one.status_code == 200
        assert_conforms(one, "/v1/models/{model_id}")
    encoded = client.get("/models/%40cf%2Fleonardo%2Fphoenix-1.0", headers=auth)
    assert encoded.status_code == 200
    assert_conforms(encoded, "/models/{model_id}")


@pytest.mark.parametrize("body", [
    {"prompt": "a red fox", "n": 2, "size": "1024x576"},
    {"prompt": "a red fox", "response_format": "b64_json", "output_format": "png"},
    {"prompt": "a castle", "model": "sdxl-lightning", "seed": 42, "steps": 4,
     "negative_prompt": "blurry", "guidance": 7.5, "quality": "hd", "style": "vivid",
     "user": "u1", "background": "auto", "moderation": "low"},
])
def test_images_conform(client, auth, body):
    resp = client.post("/v1/images/generations", json=body, headers=auth)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert_conforms(resp, "/v1/images/generations")


def test_image_get_head_and_not_modified_conform(client, auth):
    made = client.post("/v1/images/generations", json={"prompt": "a cat"}, headers=auth)
    path = "/image/" + made.get_json()["data"][0]["url"].rsplit("/", 1)[1]
    got = client.get(path)
    assert got.status_code == 200 and got.mimetype == "image/jpeg"
    assert_conforms(got, "/image/{key}")
    documented = _response_object("/image/{key}", "GET", 200)["headers"]
    assert set(documented) <= set(got.headers.keys())
    head = client.head(path)
    assert head.status_code == 200
    assert_conforms(head, "/image/{key}")
    again = client.get(path, headers={"If-None-Match": got.headers["ETag"]})
    assert again.status_code == 304
    assert_conforms(again, "/image/{key}")


def test_pages_and_probes_conform(client):
    for path in ("/healthz", "/readyz", "/openapi.json", "/metrics"):
        resp = client.get(path)
        assert resp.status_code == 200, path
        assert_conforms(resp, path)
    assert_conforms(client.get("/", headers={"Accept": "application/json"}), "/")
    html = client.get("/", headers={"Accept": "text/html"})
    assert html.mimetype == "text/html"
    assert_conforms(html, "/")


def test_served_document_is_the_spec_with_the_request_root(client, app):
    resp = client.get("/openapi.json", base_url="https://api.example.com")
    cfg = app.extensions["flux_worker"].config
    assert resp.get_json() == openapi_spec("https://api.example.com", max_images=cfg.max_images,
                                           max_body_bytes=cfg.max_body_bytes, aliases=ALIASES)
    assert "Authorization" not in resp.request.headers  # no key needed


def test_readyz_unavailable_conforms(app, client, monkeypatch):
    from flux_worker.errors import StorageError

    def down():
        raise StorageError("storage is down")

    monkeypatch.setattr(app.extensions["flux_worker"].store, "ping", down)
    resp = client.get("/readyz")
    assert resp.status_code == 503
    assert_conforms(resp, "/readyz")


@pytest.mark.parametrize("method,path,body,status", [
    ("POST", "/v1/chat/completions", b"{not json", 400),
    ("POST", "/v1/chat/completions", {"messages": []}, 400),
    ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "x" * 3000}]}, 400),
    ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "a"}],
                                      "stream": "yes"}, 400),
    ("POST", "/v1/images/generations", {"prompt": "a cat", "n": 99}, 400),
    ("POST", "/v1/images/generations", {"prompt": "a cat", "size": "huge"}, 400),
    ("POST", "/v1/images/generations", {"prompt": "a cat", "model": "nope"}, 404),
    ("GET", "/v1/models/@cf/nobody/nothing", None, 404),
    ("GET", "/image/AAAAAAAAAAAAAAAAAAAAAA", None, 404),
    ("GET", "/image/not-a-key", None, 404),
])
def test_error_answers_conform(client, auth, method, path, body, status):
    kwargs = {"data": body} if isinstance(body, bytes) else {"json": body}
    resp = client.open(path, method=method, headers=auth, **kwargs)
    assert resp.status_code == status, resp.get_data(as_text=True)
    spec_path = {"/v1/models/@cf/nobody/nothing": "/v1/models/{model_id}"}.get(path, path)
    spec_path = "/image/{key}" if path.startswith("/image/") else spec_path
    assert_conforms(resp, spec_path)


@pytest.mark.parametrize("path", ["/v1/models", "/v1/models/flux", "/models"])
def test_missing_or_wrong_key_conforms(client, path):
    for headers in ({}, {"Authorization": "Bearer sk-wrong"}):
        resp = client.get(path, headers=headers)
        assert resp.status_code == 401
        assert resp.get_json()["error"]["code"] == "invalid_api_key"
        assert_conforms(resp, "/v1/models/{model_id}" if "flux" in path else path)


def test_unknown_route_and_method_conform(client, auth):
    unknown = client.get("/v2/nothing", headers=auth)
    assert unknown.status_code == 404
    assert_conforms(unknown, "/v2/nothing", response=SPEC["components"]["responses"]["NotFound"])
    wrong = client.put("/v1/models", headers=auth)
    assert wrong.status_code == 405
    assert_conforms(wrong, "/v1/models",
                    response=SPEC["components"]["responses"]["MethodNotAllowed"])
    assert "GET" in wrong.headers["Allow"]


def test_body_over_the_limit_conforms(auth):
    application = create_app(make_config(MAX_BODY_BYTES=1024))
    try:
        resp = application.test_client().post(
            "/v1/images/generations", json={"prompt": "x" * 5000}, headers=auth)
        assert resp.status_code == 413
        assert_conforms(resp, "/v1/images/generations")
    finally:
        application.extensions["flux_worker"].close()


def test_every_api_route_is_registered_once_and_served_with_and_without_v1():
    assert ALIASES == {
        "/v1/chat/completions": "/chat/completions",
        "/v1/images/generations": "/images/generations",
        "/v1/images/edits": "/images/edits",
        "/v1/images/variations": "/images/variations",
        "/v1/models": "/models",
        "/v1/models/{model_id}": "/models/{model_id}",
        "/v1/usage": "/usage",
        "/v1/images/history": "/images/history",
        "/v1/images/history/{entry_id}": "/images/history/{entry_id}",
        "/v1/responses": "/responses",
        "/v1/responses/{response_id}": "/responses/{response_id}",
        "/v1/responses/{response_id}/cancel": "/responses/{response_id}/cancel",
        "/v1/responses/{response_id}/input_items": "/responses/{response_id}/input_items",
    }
    for alias in ALIASES.values():
        assert all("alias" in operation["tags"] for operation in SPEC["paths"][alias].values())
