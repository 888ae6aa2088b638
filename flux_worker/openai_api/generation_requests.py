"""The request bodies of chat completions and /v1/images/generations, as pydantic models.

Each model is the whole truth about a body: validation, typed access, and (through
`model_json_schema`) the request schemas of the OpenAPI document. Validation is strict: JSON
`true` is not the number 1, `"2"` is not a number. Fields the service does not use (OpenAI's
`temperature`, `tools`, `user`, ...) are accepted and ignored, so every OpenAI client works.

The fields the Images API shares with edits and the MCP tools are declared in fields.py; the
chat's own fields are declared here, each with the `Say` that words its errors. A validation
failure becomes InvalidRequest in wording.py only. Everything is checked here, before any
upstream call and before the first byte of a stream, because a stream's status cannot change
once begun.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    field_validator,
    model_validator,
)

from ..errors import json_type_name
from . import fields
from .wording import Say, validate, worded

_EXAMPLE_MESSAGE = '{"role": "user", "content": "a cute cat 16:9"}'
_EXAMPLE = "such as `a cute cat 16:9`"


# --- chat messages ------------------------------------------------------------------------

class TextPart(BaseModel):
    """A text content part: `{"type": "text", "text": "..."}`."""

    model_config = ConfigDict(strict=True, frozen=True)

    type: Literal["text"]
    text: str


class ImageURL(BaseModel):
    """Where an image_url part's image is: an http(s) or `data:` URL."""

    model_config = ConfigDict(strict=True, frozen=True)

    url: str
    detail: str | None = Field(None, description="`auto`, `low` or `high`.")


class ImageURLPart(BaseModel):
    """An image content part: `{"type": "image_url", "image_url": {"url": "..."}}`."""

    model_config = ConfigDict(strict=True, frozen=True)

    type: Literal["image_url"]
    image_url: ImageURL

    @field_validator("image_url", mode="before")
    @classmethod
    def _url_alone(cls, value: Any) -> Any:
        # Some OpenAI-compatible clients send the URL itself instead of {"url": ...}.
        return {"url": value} if isinstance(value, str) else value


class OtherPart(BaseModel):
    """Any other content part (`input_audio`, `file`, ...): it carries no prompt text."""

    model_config = ConfigDict(extra="allow", frozen=True,
                              json_schema_extra={"not": {"properties": {
                                  "type": {"enum": ["text", "image_url"]}},
                                  "required": ["type"]}})

    type: Any = None


def _part_kind(part: Any) -> str | None:
    """Tell which model reads a content part; None for values that are no part at all."""
    if isinstance(part, str):
        return "str"
    if isinstance(part, dict):
        kind = part.get("type")
    elif isinstance(part, BaseModel):  # a part model given again, e.g. by model_validate
        kind = getattr(part, "type", None)
    else:
        return None
    return kind if kind in ("text", "image_url") else "other"


ContentPart = Annotated[
    Annotated[str, Tag("str")] | Annotated[TextPart, Tag("text")]
    | Annotated[ImageURLPart, Tag("image_url")] | Annotated[OtherPart, Tag("other")],
    Discriminator(_part_kind),
]


class ChatMessage(BaseModel):
    """One chat message; fields other than role and content (`name`, ...) are ignored."""

    model_config = ConfigDict(strict=True, frozen=True)

    role: str | None = Field(None, description="`user`, `system`, `assistant`, ...; only the "
                                               "last `user` message is used.",
                             examples=["user", "system", "assistant"])
    content: str | list[ContentPart] | None = Field(
        None, description="Text, or OpenAI content parts whose text parts are joined with line "
                          "breaks (image parts carry no prompt text).")

    def text(self) -> str:
        """Return the message's text: the string content, or its text parts joined by lines."""
        if isinstance(self.content, str):
            return self.content
        texts = []
        for part in self.content or ():
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, TextPart):
                texts.append(part.text)
        return "\n".join(texts)

    def image_parts(self) -> list[ImageURLPart]:
        """Return the message's image_url parts, in order."""
        if not isinstance(self.content, list):
            return []
        return [part for part in self.content if isinstance(part, ImageURLPart)]


class StreamOptions(BaseModel):
    """Options of a streamed answer."""

    model_config = ConfigDict(strict=True, frozen=True)

    include_usage: Annotated[bool, Say("must be true or false.")] = Field(
        False, json_schema_extra={"type": ["boolean", "null"]})

    @field_validator("include_usage", mode="before")
    @classmethod
    def _null_is_false(cls, value: Any) -> Any:
        return False if value is None else value


def _content_message(index: int, problem: str) -> str:
    return (f"messages[{index}].content must be a string or a list of content parts such as "
            f'{{"type": "text", "text": "a cute cat 16:9"}}; {problem}.')


def _content_problem(content: Any) -> str:
    """Say what is wrong with a message's content, as the client wrote it."""
    if not isinstance(content, list):
        return f"got {json_type_name(content)}"
    for part in content:
        if isinstance(part, str):
            continue
        if not isinstance(part, dict):
            return f"a part is {json_type_name(part)}"
        if part.get("type") == "text" and not isinstance(part.get("text"), str):
            return "a text part has no string `text`"
        if part.get("type") == "image_url" and not _image_url_ok(part.get("image_url")):
            return ("an image_url part needs `image_url` with a string `url`, such as "
                    '{"url": "https://example.com/cat.png"}')
    return "see the example"


def _image_url_ok(value: Any) -> bool:
    if isinstance(value, str):
        return True
    return (isinstance(value, dict) and isinstance(value.get("url"), str)
            and isinstance(value.get("detail"), (str, type(None))))


def _message_error(loc: tuple[int | str, ...], body: Any) -> str:
    """Word an error inside `messages` from where it is and what the client sent there."""
    if len(loc) == 1:
        return ("`messages` is required: send a non-empty list such as "
                f"[{_EXAMPLE_MESSAGE}].")
    index = loc[1]
    if len(loc) == 2:
        return (f"messages[{index}] must be an object with role and content, such as "
                f"{_EXAMPLE_MESSAGE}.")
    if loc[2] == "role":
        return f'messages[{index}].role must be a string such as "user" ({_EXAMPLE_MESSAGE}).'
    content = body["messages"][index].get("content")
    return _content_message(int(index), _content_problem(content))


class ChatCompletionRequest(BaseModel):
    """A chat completion request: the last user message's text becomes the image prompt."""

    model_config = ConfigDict(
        strict=True, frozen=True,
        json_schema_extra={"description": "Other OpenAI fields (`temperature`, `max_tokens`, "
                                          "`tools`, ...) are accepted and ignored."})
    BODY_EXAMPLE: ClassVar[str] = '{"model": "...", "messages": [...]}'

    messages: Annotated[list[ChatMessage], Say(_message_error)] = Field(
        min_length=1, description="Must contain a user message with text.")
    model: fields.ModelName = Field(
        None, description="An offered model id or alias picks the image model; any other name "
                          "(such as `gpt-4o`) uses FLUX_MODEL.",
        examples=["flux-1-schnell", "gpt-4o"])
    stream: Annotated[bool, Say("must be true or false.")] = Field(
        False, description="Answer as server-sent events.",
        json_schema_extra={"type": ["boolean", "null"]})
    stream_options: Annotated[StreamOptions | None,
                              Say('must be an object such as {"include_usage": true}.')] = Field(
        None, description="`include_usage: true` adds a usage chunk before `[DONE]`.")
    modalities: Annotated[tuple[str, ...],
                          Say('must be a list of strings such as ["image", "text"].')] = Field(
        (), description="With `image`, the answer also lists its image as `images` "
                        "(OpenRouter's form), in `message` or in the chunk that brings it.",
        json_schema_extra={"type": ["array", "null"], "items": {"type": "string"},
                           "examples": [["image", "text"]]})

    _prompt: str = PrivateAttr("")
    _last_user: int = PrivateAttr(-1)

    @field_validator("stream", mode="before")
    @classmethod
    def _null_is_false(cls, value: Any) -> Any:
        return False if value is None else value

    @field_validator("modalities", mode="before")
    @classmethod
    def _modalities(cls, value: Any) -> Any:
        if value is None:
            return ()
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(v.strip().lower() for v in value)
        return value  # anything else fails the type check, worded by its Say

    @model_validator(mode="after")
    def _find_prompt(self) -> ChatCompletionRequest:
        index = next((i for i in range(len(self.messages) - 1, -1, -1)
                      if self.messages[i].role == "user"), None)
        if index is None:
            raise worded('There is no message with role "user" in `messages`: add one that '
                         f"describes the image you want, {_EXAMPLE}.", "messages")
        message = self.messages[index]
        if message.content is None:
            raise worded(_content_message(index, "got null"), "messages")
        text = message.text().strip()
        if not text:
            raise worded("The last user message is empty: send a description of the image you "
                         f"want, {_EXAMPLE}.", "messages")
        self._prompt, self._last_user = text, index
        return self

    @property
    def prompt(self) -> str:
        """The last user message's text, stripped: never empty."""
        return self._prompt

    def user_texts(self) -> list[str]:
        """The text of every user message, in order (clients' title requests quote them)."""
        return [m.text() for m in self.messages if m.role == "user"]

    @property
    def last_user_message(self) -> ChatMessage:
        """The message the prompt comes from."""
        return self.messages[self._last_user]

    @property
    def include_usage(self) -> bool:
        """Whether a streamed answer ends with a usage chunk."""
        return self.stream_options is not None and self.stream_options.include_usage

    @property
    def wants_images(self) -> bool:
        """Whether the answer also carries the image as `images` parts (OpenRouter's form)."""
        return "image" in self.modalities


# --- images --------------------------------------------------------------------------------



class ImageGenerationRequest(BaseModel):
    """An OpenAI Images API generation request."""

    model_config = ConfigDict(strict=True, frozen=True)
    BODY_EXAMPLE: ClassVar[str] = '{"prompt": "a cute cat", "size": "1024x576"}'

    prompt: fields.Prompt
    n: fields.Count = 1
    response_format: fields.ResponseFormat = None
    output_format: fields.OutputFormat = None
    model: fields.ModelName = Field(
        None, description="An offered model id or alias (`dall-e-2`, `dall-e-3` and the GPT "
                          "image names such as `gpt-image-1` mean FLUX_MODEL); unknown names "
                          "are 404.")
    size: fields.Size = None
    seed: fields.Seed = None
    steps: fields.Steps = None
    negative_prompt: fields.NegativePrompt = None
    guidance: fields.Guidance = None
    quality: fields.Quality = None
    background: fields.Background = None
    output_compression: fields.OutputCompression = None
    moderation: fields.Moderation = None
    stream: fields.Stream = False
    partial_images: fields.PartialImages = None
    # OpenAI's fields with no meaning here: declared so that the document lists them.
    style: fields.Ignored = None
    user: fields.Ignored = None


# --- parsing --------------------------------------------------------------------------------

def parse_chat_completion(body: Any) -> ChatCompletionRequest:
    """Validate a chat completion body; raise InvalidRequest saying what to send."""
    return validate(ChatCompletionRequest, body)


def parse_image_generation(body: Any, max_images: int) -> ImageGenerationRequest:
    """Validate an images/generations body (n up to max_images); raise InvalidRequest."""
    return validate(ImageGenerationRequest, body, {"max_n": max_images})
