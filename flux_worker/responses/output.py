"""The Response object and its items, as OpenAI's schemas shape them (no Flask).

A response holds at most two output items: the `image_generation_call` (its `result` the image
as base64) and then a `message` whose `output_text` is the text a chat answer gives, with the
link to the stored image, so clients that render either one show the picture. A chat client's
background request (a title) is answered by the message alone.

Ids share one random token: `resp_<t>`, its call `ig_<t>`, its message `msg_<t>` and its input
items `msg_<t>_<i>`, so an item id passed back (an `image_generation_call` with only its id, an
`item_reference`) leads to the stored response it came from.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from ..errors import APIError
from ..openai_api.answers import estimate_tokens

RESPONSE_PREFIX = "resp_"
CALL_PREFIX = "ig_"
MESSAGE_PREFIX = "msg_"
FINAL = ("completed", "failed", "cancelled", "incomplete")
# Response.error.code takes only these; other errors are told by their status (see error_of).
ERROR_CODES = frozenset((
    "server_error", "rate_limit_exceeded", "invalid_prompt", "invalid_image",
    "invalid_image_format", "invalid_base64_image", "invalid_image_url", "image_too_large",
    "image_too_small", "image_parse_error", "image_content_policy_violation",
    "invalid_image_mode", "image_file_too_large", "unsupported_image_media_type",
    "empty_image_file", "failed_to_download_image", "image_file_not_found"))


def new_response_id() -> str:
    return RESPONSE_PREFIX + secrets.token_hex(24)


def token_of(item_id: str) -> str | None:
    """The shared token of a response id or item id this service made, else None."""
    for prefix in (RESPONSE_PREFIX, CALL_PREFIX, MESSAGE_PREFIX):
        if item_id.startswith(prefix):
            token = item_id[len(prefix):].split("_", 1)[0]
            return token if len(token) == 48 else None
    return None


def call_id(response_id: str) -> str:
    return CALL_PREFIX + response_id[len(RESPONSE_PREFIX):]


def message_id(response_id: str) -> str:
    return MESSAGE_PREFIX + response_id[len(RESPONSE_PREFIX):]


@dataclass(frozen=True)
class Picture:
    """What the image call reports about the image it drew."""

    size: str                       # WIDTHxHEIGHT as delivered
    output_format: str              # png, jpeg, webp
    revised_prompt: str             # the prompt the image model got
    action: str                     # generate or edit
    quality: str = "auto"
    background: str = "auto"


def image_call(response_id: str, status: str, result: str | None = None,
               picture: Picture | None = None) -> dict[str, Any]:
    """The `image_generation_call` item; `picture` adds what live answers report about it."""
    item: dict[str, Any] = {"type": "image_generation_call", "id": call_id(response_id),
                            "status": status, "result": result}
    if picture is not None:
        item.update(revised_prompt=picture.revised_prompt, size=picture.size,
                    output_format=picture.output_format, quality=picture.quality,
                    background=picture.background, action=picture.action)
    return item


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message(response_id: str, text: str | None, status: str = "completed") -> dict[str, Any]:
    """The assistant's `message` item; `text` None: no content yet (a stream's first view)."""
    return {"type": "message", "id": message_id(response_id), "status": status,
            "role": "assistant", "content": [] if text is None else [text_part(text)]}


def usage(prompt: str, text: str) -> dict[str, Any]:
    """Token counts estimated as a chat answer's are (no tokenizer is involved)."""
    given, said = estimate_tokens(prompt), estimate_tokens(text)
    return {"input_tokens": given,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": said, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": given + said}


def error_of(exc: APIError) -> dict[str, str]:
    """A failed response's `error`: OpenAI's codes only, the message as the error says it."""
    code = exc.code if exc.code in ERROR_CODES else (
        "rate_limit_exceeded" if exc.status == 429 else
        "invalid_image" if exc.code and "image" in exc.code else
        "invalid_prompt" if exc.status < 500 else "server_error")
    return {"code": code, "message": exc.message}


@dataclass(frozen=True)
class Shell:
    """What every view of one response shares: from the request, fixed when it is made."""

    id: str
    created_at: int
    model: str
    instructions: str | None
    tools: list[dict[str, Any]]
    tool_choice: Any
    metadata: dict[str, str]
    background: bool
    store: bool
    previous_response_id: str | None

    def response(self, status: str, output: list[dict[str, Any]] | None = None, *,
                 usage_obj: dict[str, Any] | None = None,
                 error: dict[str, str] | None = None) -> dict[str, Any]:
        """The Response object in `status` (its schema: the reference's minimal example)."""
        body: dict[str, Any] = {
            "id": self.id, "object": "response", "created_at": self.created_at,
            "status": status, "background": self.background, "error": error,
            "incomplete_details": None, "instructions": self.instructions,
            "model": self.model, "output": output or [], "parallel_tool_calls": True,
            "previous_response_id": self.previous_response_id, "store": self.store,
            "tools": self.tools, "tool_choice": self.tool_choice,
            "metadata": self.metadata, "temperature": 1, "top_p": 1,
            "text": {"format": {"type": "text"}}, "truncation": "disabled",
        }
        if status in ("completed", "failed", "cancelled"):
            body["completed_at"] = int(time.time()) if status == "completed" else None
        if usage_obj is not None:
            body["usage"] = usage_obj
        return body


def tool_choice_of(value: Any) -> Any:
    """The request's `tool_choice` as the answer echoes it (default `auto`)."""
    return "auto" if value is None else value


def tools_of(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The request's tools as the answer echoes them: the image tool is always there."""
    listed = list(tools or ())
    if not any(t.get("type") == "image_generation" for t in listed):
        listed.append({"type": "image_generation"})
    return listed


def fill_result(response: dict[str, Any], result: str | None) -> dict[str, Any]:
    """A copy of a stored response with the image's base64 put back into its image call."""
    output = [dict(item, result=result) if item.get("type") == "image_generation_call"
              and item.get("status") == "completed" else item
              for item in response.get("output", [])]
    return {**response, "output": output}


def without_result(response: dict[str, Any]) -> dict[str, Any]:
    """A copy without the image's base64: what is stored (the image is kept once, as itself)."""
    return fill_result(response, None)
