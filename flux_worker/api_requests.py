"""Validate OpenAI request bodies into plain objects, with errors that say what to send.

Everything that can be checked is checked here, before any upstream call and before the first
byte of a stream, because a stream's status code cannot change once it has begun.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InvalidRequest
from .catalog import SEED_MAX
from .sizes import SizeSpec, parse_size_param

RESPONSE_FORMATS = ("url", "b64_json")
OUTPUT_FORMATS = {"png": "png", "jpeg": "jpeg", "jpg": "jpeg", "webp": "webp"}


@dataclass(frozen=True)
class ChatRequest:
    """The fields of a chat completion request this service uses."""

    messages: list
    model: str | None
    stream: bool
    include_usage: bool

    @classmethod
    def from_json(cls, body: dict) -> "ChatRequest":
        """Validate a chat completion body; raise InvalidRequest naming the bad field."""
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InvalidRequest(
                "`messages` is required: send a non-empty list such as "
                '[{"role": "user", "content": "a cute cat 16:9"}].', param="messages")
        model = _optional_str(body, "model")
        stream = _optional_bool(body, "stream")
        options = body.get("stream_options")
        if options is not None and not isinstance(options, dict):
            raise InvalidRequest("`stream_options` must be an object such as "
                                 '{"include_usage": true}.', param="stream_options")
        include_usage = bool(options and _optional_bool(options, "include_usage",
                                                        "stream_options.include_usage"))
        return cls(messages=messages, model=model, stream=stream, include_usage=include_usage)


@dataclass(frozen=True)
class ImagesRequest:
    """An Images API request, validated."""

    prompt: str
    model: str | None
    n: int
    size: SizeSpec | None
    response_format: str
    output_format: str | None
    seed: int | None
    steps: int | None
    negative_prompt: str | None
    guidance: float | None

    @classmethod
    def from_json(cls, body: dict, max_n: int) -> "ImagesRequest":
        """Validate an images/generations body; raise InvalidRequest naming the bad field."""
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidRequest("`prompt` is required: send a text description of the image, "
                                 "such as \"a cute cat\".", param="prompt")
        n = body.get("n", 1)
        if n is None:
            n = 1
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= max_n:
            raise InvalidRequest(f"`n` must be a whole number from 1 to {max_n}.", param="n")
        fmt = body.get("response_format") or "url"
        if fmt not in RESPONSE_FORMATS:
            raise InvalidRequest("`response_format` must be \"url\" or \"b64_json\".",
                                 param="response_format")
        out = body.get("output_format")
        if out is not None and (not isinstance(out, str) or out.lower() not in OUTPUT_FORMATS):
            raise InvalidRequest("`output_format` must be \"png\", \"jpeg\" or \"webp\".",
                                 param="output_format")
        return cls(
            prompt=prompt,
            model=_optional_str(body, "model"),
            n=n,
            size=parse_size_param(body.get("size")),
            response_format=fmt,
            output_format=OUTPUT_FORMATS[out.lower()] if out else None,
            seed=_optional_int(body, "seed", 0, SEED_MAX),
            steps=_optional_int(body, "steps", 1, 100),
            negative_prompt=_optional_str(body, "negative_prompt"),
            guidance=_optional_number(body, "guidance", 0, 100),
        )


def _optional_str(body: dict, name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"`{name}` must be a string.", param=name)
    return value.strip() or None


def _optional_bool(body: dict, name: str, param: str | None = None) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidRequest(f"`{param or name}` must be true or false.", param=param or name)
    return value


def _optional_int(body: dict, name: str, lo: int, hi: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidRequest(f"`{name}` must be a whole number from {lo} to {hi}.", param=name)
    return value


def _optional_number(body: dict, name: str, lo: float, hi: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise InvalidRequest(f"`{name}` must be a number from {lo:g} to {hi:g}.", param=name)
    return float(value)
