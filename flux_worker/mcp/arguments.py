"""Tool arguments, validated once into typed values with the HTTP API's rules and messages."""

from __future__ import annotations

from typing import Any

from ..catalog.spec import ModelSpec
from ..errors import InvalidRequest
from ..generation.sizes import parse_size_param
from ..openai_api import edit_requests
from ..openai_api.edit_requests import MAX_EDIT_IMAGES, EditRequest
from ..openai_api.generation_requests import ImageGenerationRequest, parse_image_generation

_GENERATE_ARGS = {"prompt", "model", "size", "aspect_ratio", "seed", "steps", "negative_prompt",
                  "n"}
_EDIT_ARGS = _GENERATE_ARGS | {"images", "mask", "strength"}


def images_request(args: dict[str, Any], max_n: int) -> ImageGenerationRequest:
    """Validate generate_image's arguments with the Images API's own rules and messages."""
    no_unknown(args, _GENERATE_ARGS)
    body = {k: v for k, v in args.items() if k != "aspect_ratio"}
    body["size"] = _size_argument(args)
    return parse_image_generation(body, max_n)


def edit_request(args: dict[str, Any], max_n: int) -> tuple[EditRequest, list[str], str | None]:
    """Validate edit_image's arguments: the request, its image links and its mask link."""
    no_unknown(args, _EDIT_ARGS)
    links = args.get("images")
    if isinstance(links, str):
        links = [links]  # one link where a list was meant: the intent is plain
    if (not isinstance(links, list) or not 1 <= len(links) <= MAX_EDIT_IMAGES
            or not all(isinstance(link, str) and link.strip() for link in links)):
        raise InvalidRequest(
            f"`images` is required: a list of 1 to {MAX_EDIT_IMAGES} image links, such as the "
            "links generate_image returned, or data: URLs.", param="images")
    mask = args.get("mask")
    if mask is not None and (not isinstance(mask, str) or not mask.strip()):
        raise InvalidRequest("`mask` must be an image link or a data: URL.", param="mask")
    fields = {k: v for k, v in args.items() if k not in ("images", "mask", "aspect_ratio")}
    fields["size"] = _size_argument(args)
    req = edit_requests.parse(EditRequest, fields, max_n)
    return req, [link.strip() for link in links], mask.strip() if mask else None


def _size_argument(args: dict[str, Any]) -> str | None:
    """The `size` or `aspect_ratio` argument as the Images API's size field."""
    size, ratio = args.get("size"), args.get("aspect_ratio")
    if size is not None and ratio is not None:
        raise InvalidRequest("Give either `size` (such as 1024x768) or `aspect_ratio` (such as "
                             "16:9), not both.", param="size")
    if ratio is None:
        return size
    if not isinstance(ratio, str) or ":" not in ratio:
        raise InvalidRequest("`aspect_ratio` must look like 16:9, 3:2, 1:1 or 9:16.",
                             param="aspect_ratio")
    try:
        parse_size_param(ratio)
    except InvalidRequest:
        raise InvalidRequest("`aspect_ratio` must look like 16:9, 3:2, 1:1 or 9:16, with "
                             "both numbers above 0.", param="aspect_ratio") from None
    return ratio


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
