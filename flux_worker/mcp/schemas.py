"""What agents read about the tools: descriptions and JSON input schemas, and the models.

Written for a model to read: what each argument does, its range and default, and which models
take what, built from the configuration (offered models, MAX_IMAGES, IMAGE_EXPIRATION). The
input schemas are not written here: they are the JSON Schemas of the argument models in
arguments.py, which validate the calls, so a schema states exactly what a call may send.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import mcp_types as types
from pydantic import BaseModel

from ..catalog.registry import model_for_images
from ..catalog.spec import ModelSpec
from ..errors import InvalidRequest
from ..openai_api import fields
from ..openai_api.edit_requests import MAX_EDIT_IMAGES
from ..services import Services
from .arguments import EditImageArguments, GenerateImageArguments
from .preview import PREVIEW_MAX_BYTES, PREVIEW_MAX_SIDE


def generate_tool(svc: Services) -> types.Tool:
    """generate_image: its description lists every offered model with what it takes."""
    max_n = svc.config.max_images
    models = svc.models
    return types.Tool(
        name="generate_image",
        title="Generate image",
        description=(
            "Create images from a text prompt with a text-to-image model and return them: each "
            "image inline (a JPEG preview when it is larger than "
            f"{PREVIEW_MAX_SIDE} px or {PREVIEW_MAX_BYTES // 1000} KB), a link to the full "
            f"image, and its model, size and seed. {_kept(svc.config.image_expiration)} "
            "Write the prompt in English as a "
            "visual description (subject, setting, style, lighting). Call list_models for what "
            "each model accepts.\n\nModels offered (first name is what to pass as `model`):\n"
            + "\n".join(model_line(m, m is models.default) for m in models.models
                        if not m.needs_image)),
        input_schema=input_schema(GenerateImageArguments, max_n, {
            "default_model": models.default.short_name, "max_n": max_n,
            "steps": svc.config.flux_num_steps}),
        annotations=types.ToolAnnotations(
            title="Generate image", read_only_hint=False, destructive_hint=False,
            idempotent_hint=False, open_world_hint=True),
    )


def edit_tool(svc: Services) -> types.Tool:
    """edit_image: which models take images, how many, and which take a mask or strength."""
    config, models = svc.config, svc.models
    max_n = config.max_images
    takers = [m for m in models.models if m.max_images]
    sources = ("links this service returned (`.../image/<key>`, while they last), or "
               "`data:image/png;base64,...` URLs")
    if config.fetch_remote_images:
        sources += ", or links to images on other public sites"
    else:
        sources += " (links to other sites are not fetched by this server)"
    fallback = (f" A model that takes no images hands the edit to {models.edit_model.short_name} "
                "(the result says so)." if models.edit_model else
                " A model that takes no images is refused.")
    # What draws when no model is named: the planner's one rule, as for /v1/images/edits.
    try:
        default = model_for_images(models.default, 1, False, models.edit_model)
    except InvalidRequest:
        default = takers[0] if takers else models.default
    return types.Tool(
        name="edit_image",
        title="Edit image",
        description=(
            "Change existing images after an instruction, or combine up to "
            f"{MAX_EDIT_IMAGES} reference images into a new one, and return the results like "
            "generate_image (inline image, link to the full image, model, size, seed). Images "
            f"are {sources}. The output keeps the first image's proportions unless `size` or "
            f"`aspect_ratio` is given.{fallback}\n\nModels that take images:\n"
            + "\n".join(edit_model_line(m) for m in takers)),
        input_schema=input_schema(EditImageArguments, max_n, {
            "default_model": default.short_name, "max_n": max_n, "sources": sources}),
        annotations=types.ToolAnnotations(
            title="Edit image", read_only_hint=False, destructive_hint=False,
            idempotent_hint=False, open_world_hint=True),
    )


def input_schema(arguments: type[BaseModel], max_n: int, facts: dict[str, Any]) -> dict[str, Any]:
    """A tool's inputSchema: its arguments model's JSON Schema, with the configuration's facts.

    Optional arguments are plain types to be left out, not "or null" (see
    `fields.without_nulls`); `{name}` in a description is filled from `facts`.
    """
    schema = fields.bound_n(fields.without_nulls(copy.deepcopy(_json_schema(arguments))), max_n)
    for prop in schema["properties"].values():
        text = prop.get("description", "")
        for name, value in facts.items():
            text = text.replace("{" + name + "}", str(value))
        prop["description"] = text
    return schema


@functools.cache
def _json_schema(arguments: type[BaseModel]) -> dict[str, Any]:
    # Made once per model (a few ms each); every caller gets its own copy to fill in.
    return arguments.model_json_schema()


def list_models_tool() -> types.Tool:
    """list_models: no arguments."""
    return types.Tool(
        name="list_models",
        title="List image models",
        description=(
            "List the image models this server offers and what each accepts: size range "
            "and default size, whether the size can be chosen, maximum steps, seed and "
            "negative-prompt support, prompt length limit, image input (reference images, "
                "source image, mask, strength: what edit_image can use), price and estimated "
                "cost of one image, and which one is the default. "
            "Takes no arguments."),
        input_schema={"type": "object", "properties": {}, "additionalProperties": False},
        annotations=types.ToolAnnotations(
            title="List image models", read_only_hint=True, idempotent_hint=True,
            open_world_hint=False),
    )


def describe_model(spec: ModelSpec, default: bool, steps: int) -> dict[str, Any]:
    """One model for list_models: names, what it does and what it accepts."""
    caps = spec.capabilities()
    return {
        "id": spec.id, "name": spec.short_name, "aliases": list(spec.aliases),
        "provider": spec.provider, "description": spec.description, "default": default,
        "size_control": caps["size_control"], "size_range": caps["size_range"],
        "default_size": caps["default_size"], "sizes": caps["sizes"],
        "aspect_ratios": caps["aspect_ratios"],
        "steps": ({"max": spec.steps_max} if spec.steps_field else None),
        "seed": spec.seed, "negative_prompt": spec.negative_prompt,
        "guidance": caps["guidance"], "max_prompt_chars": spec.max_prompt,
        "image_input": spec.image_capabilities(),
        "cost": spec.cost_info(steps),
    }


def model_line(spec: ModelSpec, default: bool) -> str:
    lo, hi = spec.output_limits()
    parts = [f"- {spec.short_name}{' (default)' if default else ''} [{spec.provider}]: "
             f"{spec.description}."]
    parts.append(f"Sizes {lo}-{hi} px" + ("" if spec.size else " (cropped and scaled from "
                                                              "%dx%d)" % spec.native_size))
    parts.append(f"steps up to {spec.steps_max}" if spec.steps_field else "fixed steps")
    parts.append("seed" if spec.seed else "no seed")
    if spec.negative_prompt:
        parts.append("negative_prompt")
    return parts[0] + " " + "; ".join(parts[1:]) + "."


def edit_model_line(spec: ModelSpec) -> str:
    """One line about what an image-taking model accepts."""
    if spec.reference_images:
        takes = f"up to {spec.reference_images} reference images"
    else:
        takes = "one source image" + (" and a mask" if spec.mask else "")
    extras = ["strength"] if spec.strength else []
    if spec.seed:
        extras.append("seed")
    return (f"- {spec.short_name}: {takes}" + (f"; {', '.join(extras)}" if extras else "")
            + f". {spec.description}.")


def _kept(seconds: int) -> str:
    return (f"Images are kept for {duration(seconds)}." if seconds
            else "Images are kept without a time limit.")


def duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} hour{'s' if seconds != 3600 else ''}"
    if seconds % 60 == 0:
        return f"{seconds // 60} minute{'s' if seconds != 60 else ''}"
    return f"{seconds} seconds"
