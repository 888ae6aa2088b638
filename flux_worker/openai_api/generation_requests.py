"""The request bodies of the API as pydantic models, and the one place their errors are worded.

Each model is the whole truth about a body: validation, typed access, and (through
`model_json_schema`) the request schemas of the OpenAPI document. Validation is strict: JSON
`true` is not the number 1, `"2"` is not a number. Fields the service does not use (OpenAI's
`temperature`, `tools`, `user`, ...) are accepted and ignored, so every OpenAI client works.

A validation failure becomes `InvalidRequest` in `_invalid_request` only, with a message that
says what to send and `param` naming the field. Everything is checked here, before any upstream
call and before the first byte of a stream, because a stream's status cannot change once begun.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from ..catalog.spec import SEED_MAX
from ..errors import InvalidRequest, json_type_name
from ..generation.fitting import OUTPUT_FORMATS
from ..generation.prompt import STEPS_MAX
from ..generation.sizes import SizeSpec, parse_size_param

# What a client may send as `output_format`, and the format each one means.

_EXAMPLE_MESSAGE = '{"role": "user", "content": "a cute cat 16:9"}'
_EXAMPLE = "such as `a cute cat 16:9`"
# A complete message, raised by a validator, that the error mapping passes on as it is.
_WORDED = "worded"


def _worded(message: str, param: str) -> PydanticCustomError:
    """An error whose message is final, for `_invalid_request` to pass on with its param."""
    return PydanticCustomError(_WORDED, "{message}", {"message": message, "param": param})


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

    include_usage: bool = Field(False, json_schema_extra={"type": ["boolean", "null"]})

    @field_validator("include_usage", mode="before")
    @classmethod
    def _null_is_false(cls, value: Any) -> Any:
        return False if value is None else value


class ChatCompletionRequest(BaseModel):
    """A chat completion request: the last user message's text becomes the image prompt."""

    model_config = ConfigDict(
        strict=True, frozen=True,
        json_schema_extra={"description": "Other OpenAI fields (`temperature`, `max_tokens`, "
                                          "`tools`, ...) are accepted and ignored."})

    messages: list[ChatMessage] = Field(
        min_length=1, description="Must contain a user message with text.")
    model: str | None = Field(
        None, description="An offered model id or alias picks the image model; any other name "
                          "(such as `gpt-4o`) uses FLUX_MODEL.",
        examples=["flux-1-schnell", "gpt-4o"])
    stream: bool = Field(False, description="Answer as server-sent events.",
                         json_schema_extra={"type": ["boolean", "null"]})
    stream_options: StreamOptions | None = Field(
        None, description="`include_usage: true` adds a usage chunk before `[DONE]`.")
    modalities: tuple[str, ...] = Field(
        (), description="With `image`, the answer also lists its image as `images` "
                        "(OpenRouter's form), in `message` or in the chunk that brings it.",
        json_schema_extra={"type": ["array", "null"], "items": {"type": "string"},
                           "examples": [["image", "text"]]})

    _prompt: str = PrivateAttr("")
    _last_user: int = PrivateAttr(-1)

    # What to say about a field that fails validation (messages are worded by index below).
    HELP: ClassVar[dict[str, str]] = {
        "model": "`model` must be a string.",
        "stream": "`stream` must be true or false.",
        "stream_options": "`stream_options` must be an object such as "
                          '{"include_usage": true}.',
        "stream_options.include_usage": "`stream_options.include_usage` must be true or false.",
        "modalities": '`modalities` must be a list of strings such as ["image", "text"].',
    }

    @field_validator("model", mode="before")
    @classmethod
    def _blank_model_is_none(cls, value: Any) -> Any:
        return (value.strip() or None) if isinstance(value, str) else value

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
        return value  # anything else fails the type check, worded by HELP

    @model_validator(mode="after")
    def _find_prompt(self) -> ChatCompletionRequest:
        index = next((i for i in range(len(self.messages) - 1, -1, -1)
                      if self.messages[i].role == "user"), None)
        if index is None:
            raise _worded('There is no message with role "user": add one that describes the '
                          f"image you want, {_EXAMPLE}.", "messages")
        message = self.messages[index]
        if message.content is None:
            raise _worded(_content_message(index, "got null"), "messages")
        text = message.text().strip()
        if not text:
            raise _worded("The last user message is empty: send a description of the image you "
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


# --- images --------------------------------------------------------------------------------

class ImageGenerationRequest(BaseModel):
    """An OpenAI Images API generation request."""

    # `n`'s upper bound is the server's MAX_IMAGES, so it comes with each validation as the
    # context {"max_images": ...} (see parse_image_generation) instead of a constant here.
    model_config = ConfigDict(strict=True, frozen=True)

    prompt: str = Field(
        min_length=1, description="What the image shows. Inline options such as `--seed 42` "
                                  "and a trailing ratio work here too.",
        json_schema_extra={"pattern": r"\S"})
    n: int = Field(1, ge=1, description="How many images (1 to MAX_IMAGES).")
    response_format: Literal["url", "b64_json"] | None = Field(
        None, description="Default `url`; `b64_json` for the GPT image names "
                          "(GPT_IMAGE_ALIASES), as OpenAI's GPT image models answer.")
    output_format: Literal["png", "jpeg", "webp"] | None = None
    model: str | None = Field(
        None, description="An offered model id or alias (`dall-e-2`, `dall-e-3` and the GPT "
                          "image names such as `gpt-image-1` mean FLUX_MODEL); unknown names "
                          "are 404.")
    size: SizeSpec | None = Field(
        None, description="`WIDTHxHEIGHT` (each side 64 to 4096, scaled into the model's "
                          "limits), a ratio such as `16:9`, or `auto`.",
        examples=["1024x576", "16:9", "auto"])
    seed: int | None = Field(None, ge=0, le=SEED_MAX, description="Where the model takes a seed.")
    steps: int | None = Field(None, ge=1, le=STEPS_MAX,
                              description="Clamped to the model's range.")
    negative_prompt: str | None = Field(None, description="Where the model takes one.")
    guidance: float | None = Field(None, ge=0, le=100, description="Where the model takes it.")
    # OpenAI's fields with no meaning here: declared so that the document lists them.
    quality: Any = Field(None, description="Accepted and ignored (OpenAI compatibility).")
    style: Any = Field(None, description="Accepted and ignored (OpenAI compatibility).")
    user: Any = Field(None, description="Accepted and ignored (OpenAI compatibility).")
    background: Any = Field(None, description="Accepted and ignored (OpenAI compatibility).")
    moderation: Any = Field(None, description="Accepted and ignored (OpenAI compatibility).")
    output_compression: Any = Field(None, description="Accepted and ignored (OpenAI "
                                                      "compatibility).")

    HELP: ClassVar[dict[str, str]] = {
        "prompt": "`prompt` is required: send a text description of the image, such as "
                  '"a cute cat".',
        "n": "`n` must be a whole number from 1 to {max_images}.",
        "response_format": '`response_format` must be "url" or "b64_json".',
        "output_format": '`output_format` must be "png", "jpeg" or "webp".',
        "model": "`model` must be a string.",
        "seed": f"`seed` must be a whole number from 0 to {SEED_MAX}.",
        "steps": f"`steps` must be a whole number from 1 to {STEPS_MAX}.",
        "negative_prompt": "`negative_prompt` must be a string.",
        "guidance": "`guidance` must be a number from 0 to 100.",
    }

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("blank prompt")
        return value

    @field_validator("n", mode="before",
                     json_schema_input_type=Annotated[int, Field(ge=1)] | None)
    @classmethod
    def _default_n(cls, value: Any) -> Any:
        return 1 if value is None else value

    @field_validator("n")
    @classmethod
    def _at_most_max_images(cls, value: int, info: ValidationInfo) -> int:
        limit = (info.context or {}).get("max_images")
        if limit is not None and value > limit:
            raise ValueError("more than MAX_IMAGES")
        return value

    @field_validator("response_format", mode="before",
                     json_schema_input_type=Literal["url", "b64_json"] | None)
    @classmethod
    def _empty_is_default(cls, value: Any) -> Any:
        # None (or "") leaves the choice to the model's default (ModelRegistry).
        return value or None

    @field_validator("output_format", mode="before",
                     json_schema_input_type=Literal["png", "jpeg", "jpg", "webp"] | None)
    @classmethod
    def _format_alias(cls, value: Any) -> Any:
        # Case-insensitive, and `jpg` is `jpeg`: clients write both.
        return OUTPUT_FORMATS.get(value.lower(), value) if isinstance(value, str) else value

    @field_validator("model", "negative_prompt", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return (value.strip() or None) if isinstance(value, str) else value

    @field_validator("size", mode="plain", json_schema_input_type=str | None)
    @classmethod
    def _parse_size(cls, value: Any) -> SizeSpec | None:
        try:
            return parse_size_param(value)
        except InvalidRequest as exc:
            raise _worded(exc.message, "size") from None


# --- parsing: the one place a validation error is worded ----------------------------------

Request = TypeVar("Request", ChatCompletionRequest, ImageGenerationRequest)


def parse_chat_completion(body: Any) -> ChatCompletionRequest:
    """Validate a chat completion body; raise InvalidRequest saying what to send."""
    return _parse(ChatCompletionRequest, body, {})


def parse_image_generation(body: Any, max_images: int) -> ImageGenerationRequest:
    """Validate an images/generations body (n up to max_images); raise InvalidRequest."""
    return _parse(ImageGenerationRequest, body, {"max_images": max_images})


def _parse(model: type[Request], body: Any, context: dict[str, Any]) -> Request:
    try:
        return model.model_validate(body, context=context)
    except ValidationError as exc:
        raise _invalid_request(model, body, exc.errors(), context) from None


def _invalid_request(model: type[BaseModel], body: Any, errors: list[ErrorDetails],
                     context: dict[str, Any]) -> InvalidRequest:
    """Turn the first validation error into the 400 a client sees."""
    error = errors[0]
    loc = error["loc"]
    ctx = error.get("ctx") or {}
    if error["type"] == _WORDED:
        return InvalidRequest(ctx["message"], param=ctx["param"])
    if not loc:
        return InvalidRequest("The request body must be a JSON object, such as "
                              '{"model": "...", "messages": [...]}.')
    if loc[0] == "messages":
        return InvalidRequest(_message_error(loc, body), param="messages")
    path = ".".join(str(part) for part in loc)
    helps: dict[str, str] = getattr(model, "HELP", {})
    if path not in helps and str(loc[0]) in helps:
        path = str(loc[0])
    if path in helps:
        message = helps[path]
        for name, value in context.items():  # not str.format: the examples hold braces
            message = message.replace("{" + name + "}", str(value))
        return InvalidRequest(message, param=path)
    return InvalidRequest(f"`{path}` is not valid: {error['msg']}.", param=path)
