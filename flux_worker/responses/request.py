"""The body of POST /v1/responses, as a pydantic model (no Flask).

Every Responses request is an image request, as every chat request is: the last user text is the
prompt. The fields that shape the picture come from the `image_generation` tool; OpenAI's fields
that have no meaning here (`include`, `temperature`, `reasoning`, ...) are accepted and ignored,
so every OpenAI client works unchanged. The input items are checked here, field by field, with
messages that name where in `input` the problem is; the prompt itself is found later, when the
input is turned into a chat turn (conversation.py), because an `item_reference` or a
`previous_response_id` may bring more of the conversation from storage.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..errors import InvalidRequest, json_type_name
from ..openai_api import fields
from ..openai_api.fields import one_of
from ..openai_api.wording import Say, validate, worded

METADATA_PAIRS = 16
METADATA_KEY_MAX = 64
METADATA_VALUE_MAX = 512
_ROLES = ("user", "assistant", "system", "developer")


def _choice(*values: str) -> Say:
    return Say(f"must be {one_of(list(values))}.")


class ImageMask(BaseModel):
    """The tool's `input_image_mask`: a link or data: URL (file ids are not kept here)."""

    model_config = ConfigDict(strict=True, frozen=True)

    image_url: Annotated[str | None, Say("must be a string: a data: URL or an image link.")] = None
    file_id: Annotated[str | None, Say("must be a string.")] = None

    @model_validator(mode="after")
    def _url_only(self) -> ImageMask:
        if self.file_id is not None:
            raise worded("`input_image_mask.file_id` is not supported: this service keeps no "
                         "files; send the mask as `image_url` (a data: URL).", "tools")
        if not self.image_url:
            raise worded("`input_image_mask` needs `image_url`: a data: URL of a PNG mask.",
                         "tools")
        return self


class ImageGenerationTool(BaseModel):
    """The `image_generation` tool: the picture's model, size and format."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    type: Literal["image_generation"]
    model: fields.ModelName = Field(
        None, description="An image model id or alias (`gpt-image-1` and the other GPT image "
                          "names mean FLUX_MODEL); unknown names are 404.")
    size: fields.Size = None
    output_format: fields.OutputFormat = None
    quality: fields.Quality = None
    background: fields.Background = None
    output_compression: fields.OutputCompression = None
    moderation: fields.Moderation = None
    input_fidelity: fields.InputFidelity = None
    partial_images: fields.PartialImages = None
    action: Annotated[Literal["generate", "edit", "auto"] | None,
                      _choice("generate", "edit", "auto")] = None
    input_image_mask: Annotated[ImageMask | None,
                                Say('must be an object such as {"image_url": "data:..."}.')] = None


def _tools_error(loc: tuple[int | str, ...], body: Any) -> str:
    return ('`tools` must be a list of tools such as [{"type": "image_generation"}]; '
            f"tools[{loc[1]}] is not one." if len(loc) > 1 else
            '`tools` must be a list such as [{"type": "image_generation"}].')


def _metadata_error(_loc: tuple[int | str, ...], _body: Any) -> str:
    return (f"`metadata` must be an object of at most {METADATA_PAIRS} string pairs (keys up "
            f"to {METADATA_KEY_MAX} characters, values up to {METADATA_VALUE_MAX}).")


class ResponseRequest(BaseModel):
    """A Responses API request; the image comes from its last user text."""

    model_config = ConfigDict(
        strict=True, frozen=True,
        json_schema_extra={"description": "Other OpenAI fields (`include`, `temperature`, "
                                          "`reasoning`, ...) are accepted and ignored."})
    BODY_EXAMPLE: ClassVar[str] = '{"model": "gpt-5.4", "input": "a cute cat 16:9"}'

    input: Annotated[str | list[dict[str, Any]],
                     Say('must be a string or a list of input items such as '
                         '[{"role": "user", "content": "a cute cat"}].')] = Field(
        description="The prompt, or items: messages (`input_text` and `input_image` parts), "
                    "`image_generation_call` items passed back, `item_reference`s.")
    model: fields.ModelName = Field(
        None, description="A chat model name such as `gpt-5.4` (FLUX_MODEL draws), or an "
                          "offered image model id or alias.")
    instructions: Annotated[str | None, Say("must be a string.")] = None
    tools: Annotated[list[dict[str, Any]] | None, Say(_tools_error)] = None
    tool_choice: Annotated[str | dict[str, Any] | None,
                           Say('must be "none", "auto", "required" or an object such as '
                               '{"type": "image_generation"}.')] = Field(
                               None, description=fields.IGNORED)
    previous_response_id: Annotated[str | None, Say("must be a string (a response id).")] = None
    stream: Annotated[bool | None, Say("must be true or false.")] = None
    background: Annotated[bool | None, Say("must be true or false.")] = None
    store: Annotated[bool | None, Say("must be true or false.")] = None
    metadata: Annotated[dict[str, str] | None, Say(_metadata_error)] = None
    # OpenAI's fields with no meaning for a picture: declared so that the document lists them.
    include: fields.Ignored = None
    max_output_tokens: fields.Ignored = None
    temperature: fields.Ignored = None
    top_p: fields.Ignored = None
    text: fields.Ignored = None
    reasoning: fields.Ignored = None
    safety_identifier: fields.Ignored = None
    user: fields.Ignored = None
    parallel_tool_calls: fields.Ignored = None

    @field_validator("input")
    @classmethod
    def _input(cls, value: str | list[dict[str, Any]]) -> str | list[dict[str, Any]]:
        if isinstance(value, str):
            if not value.strip():
                raise worded("`input` is empty: describe the image you want, such as "
                             '"a cute cat 16:9".', "input")
            return value
        if not value:
            raise worded("`input` is an empty list: send at least one message, such as "
                         '[{"role": "user", "content": "a cute cat"}].', "input")
        for index, item in enumerate(value):
            check_item(item, f"input[{index}]")
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return None
        if len(value) > METADATA_PAIRS:
            raise worded(f"`metadata` has {len(value)} pairs; at most {METADATA_PAIRS} are "
                         "allowed.", "metadata")
        for key, text in value.items():
            if len(key) > METADATA_KEY_MAX:
                raise worded(f"`metadata` keys are at most {METADATA_KEY_MAX} characters; "
                             f"{key[:20]!r}... has {len(key)}.", "metadata")
            if len(text) > METADATA_VALUE_MAX:
                raise worded(f"`metadata` values are at most {METADATA_VALUE_MAX} characters; "
                             f"the value of {key!r} has {len(text)}.", "metadata")
        return value

    @model_validator(mode="after")
    def _background_needs_store(self) -> ResponseRequest:
        if self.background and self.store is False:
            raise worded("`background: true` needs `store: true`: a background response is "
                         "read back from storage.", "store")
        return self

    @property
    def image_tool(self) -> ImageGenerationTool | None:
        """The `image_generation` tool, when the request lists one (checked when parsed)."""
        for tool in self.tools or ():
            if tool.get("type") == "image_generation":
                return ImageGenerationTool.model_validate(tool)
        return None

    @property
    def keeps(self) -> bool:
        """Whether the response is stored (`store`, default true)."""
        return self.store is not False


def check_item(item: Any, where: str) -> None:
    """Raise a worded error when an input item cannot be read; other item kinds pass."""
    if not isinstance(item, dict):
        raise worded(f"`{where}` must be an object such as "
                     f'{{"role": "user", "content": "a cute cat"}}, not {json_type_name(item)}.',
                     "input")
    kind = item.get("type", "message")
    if kind == "message":
        if item.get("role") not in _ROLES:
            raise worded(f"`{where}.role` must be {one_of(list(_ROLES))}.", "input")
        _check_content(item.get("content"), f"{where}.content")
    elif kind in ("image_generation_call", "item_reference"):
        if not isinstance(item.get("id"), str) or not item["id"]:
            raise worded(f"`{where}.id` must be the id of an earlier {kind} item.", "input")
        result = item.get("result")
        if result is not None and not isinstance(result, str):
            raise worded(f"`{where}.result` must be the image as a base64 string.", "input")


def _check_content(content: Any, where: str) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise worded(f"`{where}` must be a string or a list of parts such as "
                     '[{"type": "input_text", "text": "a cute cat"}].', "input")
    for index, part in enumerate(content):
        at = f"{where}[{index}]"
        if not isinstance(part, dict):
            raise worded(f"`{at}` must be an object such as "
                         '{"type": "input_text", "text": "a cute cat"}.', "input")
        kind = part.get("type")
        if kind in ("input_text", "output_text") and not isinstance(part.get("text"), str):
            raise worded(f"`{at}` needs a string `text`.", "input")
        if kind == "input_image":
            if part.get("file_id") is not None and part.get("image_url") is None:
                raise worded(f"`{at}.file_id` is not supported: this service keeps no files; "
                             "send `image_url` (a data: URL or a link).", "input")
            url = part.get("image_url")
            if not isinstance(url, str) or not url.strip():
                raise worded(f"`{at}` needs `image_url`: a data: URL or an image link.", "input")


def _tool_errors(tools: list[dict[str, Any]] | None) -> None:
    """Validate the image tool now, so that its errors are the request's 400."""
    for index, tool in enumerate(tools or ()):
        if not isinstance(tool, dict):
            raise worded(f"`tools[{index}]` must be an object such as "
                         '{"type": "image_generation"}.', "tools")


def parse_response_request(body: Any) -> ResponseRequest:
    """Validate a POST /v1/responses body; raise InvalidRequest naming the field."""
    request = validate(ResponseRequest, body)
    _tool_errors(request.tools)
    tools = [t for t in request.tools or () if t.get("type") == "image_generation"]
    if tools:
        # Worded like every other field, with `tools.` before the tool's own field name.
        try:
            validate(_ToolHolder, {"tools": tools[:1]})
        except InvalidRequest as exc:
            if exc.param and not exc.param.startswith("tools"):
                exc.param = "tools." + exc.param      # a shared field's own wording ("size")
            raise
    return request


class _ToolHolder(BaseModel):
    """Validates the image tool with the request's wording (`tools.size must be ...`)."""

    model_config = ConfigDict(strict=True, frozen=True)
    BODY_EXAMPLE: ClassVar[str] = '{"tools": [{"type": "image_generation"}]}'

    tools: list[ImageGenerationTool]
