"""The Responses API in the OpenAPI document: its paths and the schemas they refer to.

The request is described by hand, in OpenAI's terms (the wire model lives in
`flux_worker.responses.request`, above this package, and says the same); the answers are
described as loosely as OpenAI's own Response object allows extra keys, so that the document
never contradicts what OpenAI's schemas accept.
"""

from __future__ import annotations

from typing import Any, Callable

from .openapi_components import header_ref, json_content, obj, ref, string

_RESPONSE_ID = {"name": "response_id", "in": "path", "required": True,
                "description": "A response id (`resp_...`).",
                "schema": {"type": "string", "minLength": 1}}


def paths(operation: Callable[..., dict], ok: Callable[..., dict],
          errors: Callable[..., dict], generation_errors: tuple[int, ...]) -> dict[str, dict]:
    """The Responses API's path items, built with the document's own helpers."""
    def response(description: str) -> dict:
        return ok(description, json_content(ref("Response")))

    create = operation(
        "createResponse", "responses", "Generate an image as a Response",
        "The last user text of `input` is the prompt (with the chat's ratio suffixes and "
        "options). The answer's `output` holds an `image_generation_call` (the image as base64 "
        "in `result`) and a `message` with the chat's text and the image link. "
        "`previous_response_id`, `input_image` parts, or an `image_generation_call` passed back "
        "make it an edit. `stream: true` answers server-sent events; `background: true` "
        "answers at once with `status: \"queued\"`.",
        {"200": ok("The Response, or its events.", {
            **json_content(ref("Response")),
            "text/event-stream": {"schema": ref("ResponseStreamEvent")}},
            {"X-Neurons": header_ref("X-Neurons")}),
         **errors(*generation_errors, 404)},
        secured=True,
        requestBody={"required": True, "description": "An OpenAI Responses API request.",
                     "content": json_content(ref("CreateResponse"), examples={
                         "plain": {"summary": "plain", "value": {
                             "model": "gpt-5.4", "input": "a cute cat 16:9",
                             "tools": [{"type": "image_generation"}]}}})})
    return {
        "/v1/responses": {"post": create},
        "/v1/responses/{response_id}": {
            "get": operation("getResponse", "responses", "A stored response",
                             "As it stands: a background response is `queued`, `in_progress`, "
                             "then final. `stream=true` sends its events from the first, "
                             "following a running one to its end. 404 for another key's, a "
                             "deleted or expired one.",
                             {"200": ok("The Response, or its events.", {
                                 **json_content(ref("Response")),
                                 "text/event-stream": {"schema": ref("ResponseStreamEvent")}}),
                              **errors(400, 401, 404, 500, 503)},
                             secured=True, parameters=[
                                 _RESPONSE_ID,
                                 {"name": "stream", "in": "query", "required": False,
                                  "schema": {"type": "boolean"}},
                                 {"name": "starting_after", "in": "query", "required": False,
                                  "schema": {"type": "integer"}}]),
            "delete": operation("deleteResponse", "responses", "Delete a stored response",
                                "The record goes; its image stays until it expires.",
                                {"200": ok("Deleted.", json_content(ref("DeletedResponse"))),
                                 **errors(401, 404, 500, 503)}, secured=True,
                                parameters=[_RESPONSE_ID])},
        "/v1/responses/{response_id}/cancel": {
            "post": operation("cancelResponse", "responses", "Cancel a background response",
                              "Stops it before its upstream call when it can; after that it "
                              "ends `completed` and its cost stands.",
                              {"200": response("The Response as the cancel left it."),
                               **errors(400, 401, 404, 500, 503)}, secured=True,
                              parameters=[_RESPONSE_ID])},
        "/v1/responses/{response_id}/input_items": {
            "get": operation("listInputItems", "responses", "The input items of a response",
                             "OpenAI's list: `limit` 1-100 (20), `order` asc/desc (desc), "
                             "`after` an item id.",
                             {"200": ok("The items.", json_content(ref("ResponseItemList"))),
                              **errors(400, 401, 404, 500, 503)}, secured=True,
                             parameters=[
                                 _RESPONSE_ID,
                                 {"name": "limit", "in": "query", "required": False,
                                  "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                                 {"name": "order", "in": "query", "required": False,
                                  "schema": {"type": "string", "enum": ["asc", "desc"]}},
                                 {"name": "after", "in": "query", "required": False,
                                  "schema": {"type": "string"}}])},
    }


def schemas() -> dict[str, Any]:
    """The schemas the Responses API's paths refer to."""
    item = {"type": "object", "required": ["type"], "properties": {"type": string()}}
    return {
        "CreateResponse": obj(
            {"input": {"anyOf": [string("The prompt."), {"type": "array", "items": item}]},
             "model": string("A chat model name (FLUX_MODEL draws) or an image model id."),
             "instructions": {"type": ["string", "null"]},
             "tools": {"type": ["array", "null"], "items": item},
             "tool_choice": {"anyOf": [string(), {"type": "object"}, {"type": "null"}]},
             "previous_response_id": {"type": ["string", "null"]},
             "stream": {"type": ["boolean", "null"]},
             "background": {"type": ["boolean", "null"]},
             "store": {"type": ["boolean", "null"]},
             "metadata": {"type": ["object", "null"], "maxProperties": 16,
                          "additionalProperties": {"type": "string", "maxLength": 512}}},
            ["input"], description="Other OpenAI fields (`include`, `temperature`, `reasoning`, "
                                   "...) are accepted and ignored."),
        "Response": obj(
            {"id": string(), "object": string(enum=["response"]),
             "status": string(enum=["completed", "failed", "in_progress", "cancelled",
                                    "queued", "incomplete"]),
             "output": {"type": "array", "items": item}},
            ["id", "object", "output"]),
        "DeletedResponse": obj({"id": string(), "object": string(enum=["response"]),
                                "deleted": {"type": "boolean"}}, ["id", "object", "deleted"]),
        "ResponseItemList": obj(
            {"object": string(enum=["list"]), "data": {"type": "array", "items": item},
             "first_id": {"type": ["string", "null"]}, "last_id": {"type": ["string", "null"]},
             "has_more": {"type": "boolean"}}, ["object", "data", "has_more"]),
        "ResponseStreamEvent": {
            "type": "object", "required": ["data"],
            "description": "One server-sent event: `event` is its type, `data` its JSON with "
                           "`type` and an increasing `sequence_number`.",
            "properties": {"event": {"type": "string"}, "data": {
                "type": "string", "contentMediaType": "application/json",
                "contentSchema": obj({"type": string(),
                                      "sequence_number": {"type": "integer"}},
                                     ["type", "sequence_number"])}}},
    }
