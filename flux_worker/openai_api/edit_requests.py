"""The wire models of /v1/images/edits and /v1/images/variations (pydantic v2, no Flask).

Both endpoints come as multipart forms (what OpenAI's SDKs send: text fields plus files) and
edits also as JSON (`images: [{"image_url": ...}]`, `mask: {"image_url": ...}`). The text fields
of either form are validated here once, into typed values; the image bytes are the intake's job.
Form fields arrive as strings, so numbers are parsed leniently ("2" is 2), as OpenAI does.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import InvalidRequest
from ..generation.fitting import OUTPUT_FORMATS
from ..generation.sizes import SizeSpec, parse_size_param

MAX_EDIT_IMAGES = 4


class ImageRef(BaseModel):
    """One image given by URL in the JSON form: `{"image_url": "data:..."}` or `{"url": ...}`."""

    model_config = ConfigDict(extra="ignore")

    image_url: str | dict[str, Any] | None = None
    url: str | None = None

    def link(self) -> str:
        """The URL, whichever of the accepted shapes carried it."""
        value = self.image_url if self.image_url is not None else self.url
        if isinstance(value, dict):
            value = value.get("url")
        if not isinstance(value, str) or not value.strip():
            raise InvalidRequest("Each image needs an `image_url` (a data: URL or a link).",
                                 param="images")
        return value.strip()


class _Common(BaseModel):
    """Fields shared by edits and variations."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    model: str | None = None
    n: int = Field(1, ge=1, le=10)
    size: str | None = None
    response_format: Literal["url", "b64_json"] | None = None   # None: as the model's name says
    output_format: str | None = None
    seed: int | None = Field(None, ge=0, le=2**32 - 1)

    @field_validator("model", "size", "output_format", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("response_format", mode="before")
    @classmethod
    def _default_format(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("output_format")
    @classmethod
    def _known_output(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.lower() not in OUTPUT_FORMATS:
            raise ValueError('must be "png", "jpeg" or "webp"')
        return OUTPUT_FORMATS[value.lower()]

    def size_spec(self) -> SizeSpec | None:
        """The size as the prompt module reads it (None: follow the input's proportions)."""
        return parse_size_param(self.size)


class EditRequest(_Common):
    """An images/edits request's text fields (and, in the JSON form, its image URLs)."""

    prompt: str = Field(min_length=1, max_length=32000)
    steps: int | None = Field(None, ge=1, le=100)
    strength: float | None = Field(None, ge=0, le=1)
    guidance: float | None = Field(None, ge=0, le=100)
    negative_prompt: str | None = None
    images: list[ImageRef] = Field(default_factory=list, max_length=16)
    image: str | ImageRef | None = None        # JSON form, one image
    mask: str | ImageRef | None = None

    def image_links(self) -> list[str]:
        """The image URLs of the JSON form, in order."""
        links = [ref.link() for ref in self.images]
        if self.image is not None:
            links.insert(0, self.image if isinstance(self.image, str) else self.image.link())
        return links

    def mask_link(self) -> str | None:
        """The mask URL of the JSON form, if any."""
        if self.mask is None:
            return None
        return self.mask if isinstance(self.mask, str) else self.mask.link()


class VariationRequest(_Common):
    """An images/variations request's text fields."""


def parse(model: type[_Common], fields: dict[str, Any], max_n: int) -> Any:
    """Validate fields into `model`; raise InvalidRequest naming the first bad field."""
    try:
        parsed = model.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(part) for part in first["loc"]) or "body"
        message = first["msg"]
        if first["type"] == "missing":
            message = "is required" + (": describe the change you want, such as \"make it "
                                       "blue\"" if name == "prompt" else "")
        raise InvalidRequest(f"`{name}` {message}.", param=str(first["loc"][0])
                             if first["loc"] else None) from None
    if parsed.n > max_n:
        raise InvalidRequest(f"`n` must be a whole number from 1 to {max_n}.", param="n")
    return parsed
