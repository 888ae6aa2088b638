"""Builders for every answer in OpenAI's formats: completions, chunks, images, models, errors.

Plain dictionaries and strings; no Flask. Each answer validates against OpenAI's published
schema of it (tests/test_conformance.py checks them all), so any OpenAI client can read it.
Usage numbers are estimates (see `estimate_tokens`), because no language model produces this
text: clients only need plausible, stable counts.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any, Callable, Protocol, Sequence

DONE = "data: [DONE]\n\n"

# The only `size` and `output_format` values OpenAI's ImagesResponse allows. Other sizes (this
# service makes any WIDTHxHEIGHT) are left out of the answer rather than break strict clients.
OPENAI_IMAGE_SIZES = frozenset({"1024x1024", "1024x1536", "1536x1024"})
OPENAI_OUTPUT_FORMATS = frozenset({"png", "jpeg", "webp"})
OPENAI_QUALITIES = frozenset({"low", "medium", "high"})
OPENAI_BACKGROUNDS = frozenset({"transparent", "opaque"})
# The tokens one 512x512 image tile counts in an Images `usage` (OpenAI's vision tile figure).
IMAGE_TOKENS_PER_TILE = 170
# An SSE comment: keeps proxies from timing out a stream; every SSE reader skips it.
SSE_HEARTBEAT = ": keep-alive\n\n"


def completion_id() -> str:
    """Return a fresh `chatcmpl-...` id."""
    return "chatcmpl-" + secrets.token_hex(12)


def estimate_tokens(text: str) -> int:
    """Estimate tokens as one per four UTF-8 bytes (CJK text counts about one per character)."""
    return max(1, (len(text.encode("utf-8")) + 3) // 4) if text else 0


def usage(prompt: str, completion: str) -> dict[str, int]:
    """Return an OpenAI `usage` object with estimated token counts."""
    p, c = estimate_tokens(prompt), estimate_tokens(completion)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def image_parts(urls: list[str]) -> list[dict[str, Any]]:
    """Return OpenRouter's `images` list: one `image_url` part per image link."""
    return [{"type": "image_url", "image_url": {"url": url}} for url in urls]


def chat_completion(cid: str, created: int, model: str, content: str,
                    usage_obj: dict[str, int], images: list[str] | None = None) -> dict[str, Any]:
    """Return a non-stream `chat.completion` object; `images` adds `message.images`."""
    # No `system_fingerprint`: OpenAI types it as a string, and there is no backend
    # configuration to fingerprint; leaving it out is what the schema allows.
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if images:
        message["images"] = image_parts(images)
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": "stop",
        }],
        "usage": usage_obj,
    }


class ChunkWriter:
    """Formats the chunks of one streamed chat completion as SSE events."""

    def __init__(self, cid: str, created: int, model: str, include_usage: bool):
        self.base = {"id": cid, "object": "chat.completion.chunk", "created": created,
                     "model": model}
        self.include_usage = include_usage

    def chunk(self, choices: list[dict[str, Any]],
              usage_obj: dict[str, int] | None = None) -> dict[str, Any]:
        """Return one `chat.completion.chunk` object."""
        chunk = dict(self.base, choices=choices)
        if self.include_usage:
            # OpenAI sends `usage: null` on every chunk but the last when usage was asked for.
            chunk["usage"] = usage_obj
        return chunk

    def role(self) -> str:
        """The first chunk: the assistant role with empty content."""
        return sse(self.chunk([_choice({"role": "assistant", "content": ""})]))

    def content(self, text: str, images: list[str] | None = None) -> str:
        """A chunk carrying a piece of the answer; `images` adds `delta.images`."""
        delta: dict[str, Any] = {"content": text}
        if images:
            delta["images"] = image_parts(images)
        return sse(self.chunk([_choice(delta)]))

    def finish(self, reason: str = "stop") -> str:
        """The chunk that closes the choice."""
        return sse(self.chunk([_choice({}, reason)]))

    def usage(self, usage_obj: dict[str, int]) -> str:
        """The usage chunk (only when the request set stream_options.include_usage)."""
        return sse(self.chunk([], usage_obj))


def _choice(delta: dict[str, str], finish_reason: str | None = None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}


def sse(obj: dict[str, Any]) -> str:
    """Encode one SSE `data:` event."""
    return "data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n\n"


def model_object(model_id: str, owned_by: str, created: int, **extra: Any) -> dict[str, Any]:
    """Return an OpenAI `model` object; extra keys describe capabilities."""
    return {"id": model_id, "object": "model", "created": created, "owned_by": owned_by, **extra}


def model_list(models: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the `/v1/models` list object."""
    return {"object": "list", "data": models}


def images_response(items: list[dict[str, Any]], *, size: str | None = None,
                    output_format: str | None = None, quality: str | None = None,
                    background: str | None = None, usage: dict[str, Any] | None = None,
                    created: int | None = None) -> dict[str, Any]:
    """Return an Images API answer `{created, data}`, with size and format where OpenAI has them."""
    answer: dict[str, Any] = {"created": created or int(time.time()), "data": items}
    if background in OPENAI_BACKGROUNDS:
        answer["background"] = background
    if output_format in OPENAI_OUTPUT_FORMATS:
        answer["output_format"] = output_format
    if size in OPENAI_IMAGE_SIZES:
        answer["size"] = size
    if quality in OPENAI_QUALITIES:
        answer["quality"] = quality
    if usage is not None:
        answer["usage"] = usage
    return answer


def image_usage(prompt: str, input_tiles: int, output_tiles: int) -> dict[str, Any]:
    """An Images `usage` object: the prompt's estimated tokens, and images counted by tile.

    No model here counts tokens; an image counts IMAGE_TOKENS_PER_TILE for each 512x512 tile
    it covers (the inputs of an edit as input, the images made as output), so a bigger image
    counts more, stably, as clients that track usage expect.
    """
    text = estimate_tokens(prompt)
    images_in = input_tiles * IMAGE_TOKENS_PER_TILE
    images_out = output_tiles * IMAGE_TOKENS_PER_TILE
    return {"input_tokens": text + images_in, "output_tokens": images_out,
            "total_tokens": text + images_in + images_out,
            "input_tokens_details": {"text_tokens": text, "image_tokens": images_in},
            "output_tokens_details": {"image_tokens": images_out, "text_tokens": 0}}


def image_event(kind: str, b64_json: str, *, size: str, quality: str, background: str,
                output_format: str, usage: dict[str, Any], url: str | None = None,
                created_at: int | None = None) -> str:
    """One `image_generation.completed` or `image_edit.completed` SSE event.

    `event:` and `data:` lines and no `id:` (a lone id line breaks openai-python's reader).
    `size` must be one of the event's enum: another size is sent as `auto` (the answer's
    X-Image-Size header has it). `url`, the stored image's link, is this service's extra.
    """
    event: dict[str, Any] = {
        "type": kind, "b64_json": b64_json, "created_at": created_at or int(time.time()),
        "size": size if size in OPENAI_IMAGE_SIZES else "auto", "quality": quality,
        "background": background, "output_format": output_format,
        "usage": {k: v for k, v in usage.items() if k != "output_tokens_details"}}
    if url is not None:
        event["url"] = url
    return named_sse(kind, event)


def named_sse(kind: str, obj: dict[str, Any]) -> str:
    """Encode one SSE event with its `event:` name, as OpenAI's Images and Responses streams."""
    return (f"event: {kind}\ndata: "
            + json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n\n")


def error_event(body: dict[str, Any]) -> str:
    """A failure after a stream began: an `error` event whose JSON has a top-level `error`
    object, which openai-python raises as APIError whatever the stream."""
    return named_sse("error", {"type": "error", **body})


class _Image(Protocol):
    # Read-only, so frozen dataclasses (the pipeline's ImageResult) satisfy it.
    @property
    def key(self) -> str: ...

    @property
    def data(self) -> bytes: ...

    @property
    def seed(self) -> int | None: ...


def image_items(results: Sequence[_Image], response_format: str, link: Callable[[str], str], *,
                revised_prompt: str | None = None,
                show_seed: bool = False) -> list[dict[str, Any]]:
    """The `data` items of an Images answer: raw base64 (no `data:` prefix), absolute links,
    or both (`response_format` "both": OpenAI's Image schema allows the two together)."""
    items = []
    for result in results:
        item: dict[str, Any] = {}
        if response_format in ("url", "both"):
            item["url"] = link(result.key)
        if response_format in ("b64_json", "both"):
            item["b64_json"] = base64.b64encode(result.data).decode("ascii")
        if revised_prompt is not None:
            item["revised_prompt"] = revised_prompt
        if show_seed and result.seed is not None:
            item["seed"] = result.seed
        items.append(item)
    return items
