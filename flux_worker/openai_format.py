"""Builders for the OpenAI wire formats: chat completions, stream chunks, images, models, SSE.

Plain dictionaries and strings; no Flask. Usage numbers are estimates (see `estimate_tokens`),
because no language model produces this text: clients only need plausible, stable counts.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Callable, Protocol

DONE = "data: [DONE]\n\n"


def completion_id() -> str:
    """Return a fresh `chatcmpl-...` id."""
    return "chatcmpl-" + secrets.token_hex(12)


def estimate_tokens(text: str) -> int:
    """Estimate tokens as one per four UTF-8 bytes (CJK text counts about one per character)."""
    return max(1, (len(text.encode("utf-8")) + 3) // 4) if text else 0


def usage(prompt: str, completion: str) -> dict:
    """Return an OpenAI `usage` object with estimated token counts."""
    p, c = estimate_tokens(prompt), estimate_tokens(completion)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def chat_completion(cid: str, created: int, model: str, content: str, usage_obj: dict) -> dict:
    """Return a non-stream `chat.completion` object."""
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "logprobs": None,
            "finish_reason": "stop",
        }],
        "usage": usage_obj,
        "system_fingerprint": None,
    }


class ChunkWriter:
    """Formats the chunks of one streamed chat completion as SSE events."""

    def __init__(self, cid: str, created: int, model: str, include_usage: bool):
        self.base = {"id": cid, "object": "chat.completion.chunk", "created": created,
                     "model": model, "system_fingerprint": None}
        self.include_usage = include_usage

    def _event(self, choices: list, usage_obj: dict | None = None) -> str:
        chunk = dict(self.base, choices=choices)
        if self.include_usage:
            # OpenAI sends `usage: null` on every chunk but the last when usage was asked for.
            chunk["usage"] = usage_obj
        return sse(chunk)

    def role(self) -> str:
        """The first chunk: the assistant role with empty content."""
        return self._event([{"index": 0, "delta": {"role": "assistant", "content": ""},
                             "logprobs": None, "finish_reason": None}])

    def content(self, text: str) -> str:
        """A chunk carrying a piece of the answer."""
        return self._event([{"index": 0, "delta": {"content": text}, "logprobs": None,
                             "finish_reason": None}])

    def finish(self, reason: str = "stop") -> str:
        """The chunk that closes the choice."""
        return self._event([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": reason}])

    def usage(self, usage_obj: dict) -> str:
        """The usage chunk (only when the request set stream_options.include_usage)."""
        return self._event([], usage_obj)


def sse(obj: dict) -> str:
    """Encode one SSE `data:` event."""
    return "data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n\n"


def model_object(model_id: str, owned_by: str, created: int, **extra) -> dict:
    """Return an OpenAI `model` object; extra keys describe capabilities."""
    return {"id": model_id, "object": "model", "created": created, "owned_by": owned_by, **extra}


def model_list(models: list[dict]) -> dict:
    """Return the `/v1/models` list object."""
    return {"object": "list", "data": models}


def images_response(items: list[dict], created: int | None = None, **extra) -> dict:
    """Return an Images API answer `{created, data}`."""
    return {"created": created or int(time.time()), "data": items, **extra}


class _Image(Protocol):
    key: str
    data: bytes
    seed: int | None


def image_items(results: list[_Image], response_format: str, link: Callable[[str], str], *,
                revised_prompt: str | None = None, show_seed: bool = False) -> list[dict]:
    """The `data` items of an Images answer: raw base64 (no `data:` prefix) or absolute links."""
    items = []
    for result in results:
        item: dict = ({"b64_json": base64.b64encode(result.data).decode("ascii")}
                      if response_format == "b64_json" else {"url": link(result.key)})
        if revised_prompt is not None:
            item["revised_prompt"] = revised_prompt
        if show_seed and result.seed is not None:
            item["seed"] = result.seed
        items.append(item)
    return items
