"""Tool arguments: declared once as models that both validate a call and are its inputSchema.

The arguments the tools share with the Images API are the fields declared in
openai_api/fields.py, so a limit and its message are the HTTP API's own; the tool-only ones
(`aspect_ratio`, `images`, `mask`) are declared here. Descriptions are written for a model to
read; `{...}` in them is a fact of the running configuration that schemas.py fills in.
A valid call then becomes the very request object the HTTP API builds, so the tools and the
API share one path from there.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from ..catalog.spec import ModelSpec
from ..errors import InvalidRequest
from ..generation.sizes import parse_size_param
from ..openai_api import edit_requests, fields
from ..openai_api.edit_requests import MAX_EDIT_IMAGES, EditRequest
from ..openai_api.generation_requests import ImageGenerationRequest, parse_image_generation
from ..openai_api.wording import Say, validate, worded


def _a_ratio(value: str | None) -> str | None:
    if value is not None:
        try:
            parse_size_param(value)
        except InvalidRequest:
            raise ValueError("no ratio") from None  # worded by the Say below
    return value


AspectRatio = Annotated[str | None, Field(pattern=r"^\s*[0-9]+\s*:\s*[0-9]+\s*$"),
                        AfterValidator(_a_ratio),
                        Say("must look like 16:9, 3:2, 1:1 or 9:16, with both numbers above 0.")]


def _one_link_is_a_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value  # the intent is plain


Link = Annotated[str, Field(min_length=1, pattern=r"\S")]

ImageLinks = Annotated[list[Link], BeforeValidator(_one_link_is_a_list),
                       Field(min_length=1, max_length=MAX_EDIT_IMAGES),
                       Say("is required: a list of {min_length} to {max_length} image links, "
                           "such as the links generate_image returned, or data: URLs.")]

MaskLink = Annotated[str | None, Field(pattern=r"\S"),
                     Say("must be an image link or a data: URL.")]


class _ToolArguments(BaseModel):
    """What generate_image's and edit_image's arguments have in common beyond their fields."""

    # Strict, as JSON bodies are: tool arguments are JSON too.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    @model_validator(mode="after")
    def _size_or_ratio(self) -> _ToolArguments:
        if (getattr(self, "size", None) is not None
                and getattr(self, "aspect_ratio", None) is not None):
            raise worded("Give either `size` (such as 1024x768) or `aspect_ratio` (such as "
                         "16:9), not both.", "size")
        return self

    def request_fields(self) -> dict[str, Any]:
        """The arguments as the Images API's fields: `aspect_ratio` is its `size`."""
        out = self.model_dump(exclude={"aspect_ratio", "images", "mask"}, exclude_none=True)
        ratio = getattr(self, "aspect_ratio", None)
        if ratio is not None:
            out["size"] = ratio
        return out


class GenerateImageArguments(_ToolArguments):
    """generate_image's arguments."""

    prompt: fields.Prompt = Field(description=(
        "What the image shows. May end with a size such as `16:9` or `1024x768` (the "
        "`size`/`aspect_ratio` arguments win when given)."))
    model: fields.ModelName = Field(None, description=(
        "Model id or alias from list_models. Default: {default_model}."))
    size: fields.SizeText = Field(None, description=(
        "Exact output size `WIDTHxHEIGHT` in pixels, such as `1024x768`; scaled into the "
        "model's range when outside it. Give `size` or `aspect_ratio`, not both."))
    aspect_ratio: AspectRatio = Field(None, description=(
        "Shape such as `16:9`, `3:2`, `1:1`, `9:16`; the model's usual size for that shape is "
        "used. Default: square."))
    seed: fields.Seed = Field(None, description=(
        "Seed for a reproducible image; the same prompt, model, size and seed give the same "
        "image. Only models with seed support use it; default: random (reported back)."))
    steps: fields.Steps = Field(None, description=(
        "Diffusion steps: more is slower and often finer. Clamped to the model's maximum; "
        "ignored by models with fixed steps. Default: {steps}."))
    negative_prompt: fields.NegativePrompt = Field(None, description=(
        "What the image must not show. Only Stable Diffusion models and phoenix-1.0 use it."))
    n: fields.Count = Field(1, description=(
        "Number of images, 1 to {max_n}; each counts against the rate limit. They share the "
        "prompt and differ by seed (seed, seed+1, ...)."))


class EditImageArguments(_ToolArguments):
    """edit_image's arguments."""

    prompt: fields.EditPrompt = Field(description=(
        "The change to make (\"make the sky stormy\", \"put a red hat on the cat\"), or how "
        "to combine several references."))
    images: ImageLinks = Field(description=(
        f"1 to {MAX_EDIT_IMAGES} images: {{sources}}. Reference models (FLUX.2) take up to "
        f"{MAX_EDIT_IMAGES}; img2img and inpainting models take 1."))
    mask: MaskLink = Field(None, description=(
        "Inpainting models only: an image of the same size whose fully transparent pixels mark "
        "the area to repaint. Without it, the first image's own transparency is used."))
    model: fields.ModelName = Field(None, description=(
        "Model id or alias (see below and list_models). Default: {default_model}."))
    strength: fields.Strength = Field(None, description=(
        "img2img and inpainting models: how far the result may move from the source, 0 "
        "(unchanged) to 1 (ignore it)."))
    size: fields.SizeText = Field(None, description=(
        "Output size `WIDTHxHEIGHT`; default: the first image's proportions at the model's "
        "usual size."))
    aspect_ratio: AspectRatio = Field(None, description=(
        "Output shape such as `16:9`; give `size` or `aspect_ratio`, not both."))
    seed: fields.Seed = Field(None, description=(
        "Seed for a reproducible result (models with seed support); default: random, reported "
        "back."))
    steps: fields.Steps = Field(None, description=(
        "Diffusion steps, clamped to the model's maximum; ignored by models with fixed steps."))
    negative_prompt: fields.NegativePrompt = Field(None, description=(
        "What the result must not show (Stable Diffusion models)."))
    n: fields.Count = Field(1, description=(
        "Number of results, 1 to {max_n}, differing by seed; each counts against the rate "
        "limit."))


def images_request(args: dict[str, Any], max_n: int) -> ImageGenerationRequest:
    """Validate generate_image's arguments with the Images API's own rules and messages."""
    no_unknown(args, set(GenerateImageArguments.model_fields))
    given = validate(GenerateImageArguments, args, {"max_n": max_n})
    return parse_image_generation(given.request_fields(), max_n)


def edit_request(args: dict[str, Any], max_n: int) -> tuple[EditRequest, list[str], str | None]:
    """Validate edit_image's arguments: the request, its image links and its mask link."""
    no_unknown(args, set(EditImageArguments.model_fields))
    given = validate(EditImageArguments, args, {"max_n": max_n})
    req = edit_requests.parse(EditRequest, given.request_fields(), max_n)
    mask = given.mask.strip() if given.mask is not None else None
    return req, [link.strip() for link in given.images], mask


def ignored_options(model: ModelSpec, *, seed: int | None, steps: int | None,
                    negative: str | None) -> list[str]:
    """The arguments given that `model` cannot use, so the agent is not misled."""
    ignored = []
    if seed is not None and not model.seed:
        ignored.append("seed")
    if steps is not None and not model.steps_field:
        ignored.append("steps")
    if negative is not None and not model.negative_prompt:
        ignored.append("negative_prompt")
    return ignored


def no_unknown(args: dict[str, Any], known: set[str]) -> None:
    """Raise InvalidRequest naming any argument that is not in `known`."""
    unknown = sorted(set(args) - known)
    if unknown:
        accepted = ", ".join(f"`{k}`" for k in sorted(known)) or "none"
        raise InvalidRequest(f"Unknown argument {', '.join(f'`{k}`' for k in unknown)}; the "
                             f"accepted arguments are {accepted}.", param=unknown[0])
