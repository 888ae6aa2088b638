"""The wire models of /v1/images/edits and /v1/images/variations (pydantic v2, no Flask).

Both endpoints come as multipart forms (what OpenAI's SDKs send: text fields plus files) and
edits also as JSON (`images: [{"image_url": ...}]`, `mask: {"image_url": ...}`). The text fields
of either form are validated here once, into typed values; the image bytes are the intake's job.
Form fields arrive as strings, so numbers are read leniently ("2" is 2), as OpenAI does, and an
empty field is a field not sent. The fields shared with the Images API are declared in
fields.py; errors are worded in wording.py, like every other request's.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from ..errors import InvalidRequest
from ..generation.sizes import SizeSpec, parse_size_param
from . import fields
from .fields import MAX_EDIT_IMAGES
from .wording import Say, validate, worded

__all__ = ["MAX_EDIT_IMAGES", "EditRequest", "ImageRef", "VariationRequest", "parse"]

_REF_EXAMPLE = '{"image_url": "data:image/png;base64,..."}'


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


def _at_most_edit_images(refs: list[ImageRef]) -> list[ImageRef]:
    # Worded and coded as the view's count of uploads and links together.
    if len(refs) > MAX_EDIT_IMAGES:
        raise worded(f"At most {MAX_EDIT_IMAGES} images can be edited at once; {len(refs)} "
                     "were sent.", "images", "too_many_images")
    return refs


ImageRefs = Annotated[list[ImageRef], AfterValidator(_at_most_edit_images), Field(
    description=f"JSON form: 1 to {MAX_EDIT_IMAGES} images by URL (`data:` URLs, this service's "
                "own `/image/{key}` links, other links only with FETCH_REMOTE_IMAGES).",
    json_schema_extra={"maxItems": MAX_EDIT_IMAGES}),
    Say(f"must be a list of 1 to {MAX_EDIT_IMAGES} objects such as {_REF_EXAMPLE}.")]

ImageOrRef = Annotated[str | ImageRef | None, Say(
    f"must be an image link, or an object such as {_REF_EXAMPLE}; upload files as multipart "
    "form fields instead.")]


class _Common(BaseModel):
    """Fields shared by edits and variations."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    model: fields.ModelName = Field(
        None, description="An offered model id or alias; one that takes no images means "
                          "EDIT_MODEL.")
    n: fields.Count = 1
    size: fields.SizeText = Field(
        None, description="`WIDTHxHEIGHT`, a ratio such as `16:9`, or `auto` (the input's "
                          "proportions).")
    response_format: fields.ResponseFormat = None   # None: as the model's name says
    output_format: fields.OutputFormat = None
    output_compression: fields.OutputCompression = None
    quality: fields.Quality = None
    background: fields.Background = None
    seed: fields.Seed = None

    @model_validator(mode="before")
    @classmethod
    def _empty_is_not_sent(cls, data: Any) -> Any:
        # A form cannot leave a field out once a client's form has it: "" means not sent.
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v != ""}
        return data

    def size_spec(self) -> SizeSpec | None:
        """The size as the prompt module reads it (None: follow the input's proportions)."""
        return parse_size_param(self.size)


class EditRequest(_Common):
    """An images/edits request's text fields (and, in the JSON form, its image URLs)."""

    BODY_EXAMPLE: ClassVar[str] = '{"prompt": "make it blue", "images": [' + _REF_EXAMPLE + "]}"

    prompt: fields.EditPrompt
    steps: fields.Steps = None
    strength: fields.Strength = None
    guidance: fields.Guidance = None
    negative_prompt: fields.NegativePrompt = None
    moderation: fields.Moderation = None
    input_fidelity: fields.InputFidelity = None
    stream: fields.Stream = False
    partial_images: fields.PartialImages = None
    images: ImageRefs = Field(default_factory=list)
    image: ImageOrRef = Field(None, description="JSON form, one image: a link or "
                                                + _REF_EXAMPLE + ".")
    mask: ImageOrRef = Field(None, description="JSON form: the mask (fully transparent where "
                                               "the image should change), as a link or "
                                               + _REF_EXAMPLE + ".")

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
    """Validate fields into `model` (n up to max_n); raise InvalidRequest naming the field."""
    return validate(model, fields, {"max_n": max_n})
