"""What agents read about the tools: descriptions and JSON input schemas, and the models.

Written for a model to read: what each argument does, its range and default, and which models
take what, built from the configuration (offered models, MAX_IMAGES, IMAGE_EXPIRATION).
"""

from __future__ import annotations

from typing import Any

import mcp_types as types

from ..catalog.spec import SEED_MAX, ModelSpec
from ..openai_api.edit_requests import MAX_EDIT_IMAGES
from ..services import Services
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
        input_schema={
            "type": "object",
            "properties": {
                "prompt": {
                    "type": "string", "minLength": 1,
                    "description": "What the image shows. May end with a size such as "
                                   "`16:9` or `1024x768` (the `size`/`aspect_ratio` "
                                   "arguments win when given)."},
                "model": {
                    "type": "string",
                    "description": "Model id or alias from list_models. Default: "
                                   f"{models.default.short_name}."},
                "size": {
                    "type": "string", "pattern": r"^\s*\d+\s*[xX×]\s*\d+\s*$",
                    "description": "Exact output size `WIDTHxHEIGHT` in pixels, such as "
                                   "`1024x768`; scaled into the model's range when outside "
                                   "it. Give `size` or `aspect_ratio`, not both."},
                "aspect_ratio": {
                    "type": "string", "pattern": r"^\s*\d+\s*:\s*\d+\s*$",
                    "description": "Shape such as `16:9`, `3:2`, `1:1`, `9:16`; the model's "
                                   "usual size for that shape is used. Default: square."},
                "seed": {
                    "type": "integer", "minimum": 0, "maximum": SEED_MAX,
                    "description": "Seed for a reproducible image; the same prompt, model, "
                                   "size and seed give the same image. Only models with "
                                   "seed support use it; default: random (reported back)."},
                "steps": {
                    "type": "integer", "minimum": 1, "maximum": 100,
                    "description": "Diffusion steps: more is slower and often finer. "
                                   "Clamped to the model's maximum; ignored by models with "
                                   f"fixed steps. Default: {svc.config.flux_num_steps}."},
                "negative_prompt": {
                    "type": "string",
                    "description": "What the image must not show. Only Stable Diffusion "
                                   "models and phoenix-1.0 use it."},
                "n": {
                    "type": "integer", "minimum": 1, "maximum": max_n, "default": 1,
                    "description": f"Number of images, 1 to {max_n}; each counts against "
                                   "the rate limit. They share the prompt and differ by "
                                   "seed (seed, seed+1, ...)."},
            },
            "required": ["prompt"],
            "additionalProperties": False,
        },
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
    default = models.edit_model or (takers[0] if takers else models.default)
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
        input_schema={
            "type": "object",
            "properties": {
                "prompt": {
                    "type": "string", "minLength": 1,
                    "description": "The change to make (\"make the sky stormy\", \"put a red "
                                   "hat on the cat\"), or how to combine several references."},
                "images": {
                    "type": "array", "minItems": 1, "maxItems": MAX_EDIT_IMAGES,
                    "items": {"type": "string", "minLength": 1},
                    "description": f"1 to {MAX_EDIT_IMAGES} images: {sources}. Reference "
                                   "models (FLUX.2) take up to 4; img2img and inpainting "
                                   "models take 1."},
                "mask": {
                    "type": "string",
                    "description": "Inpainting models only: an image of the same size whose "
                                   "fully transparent pixels mark the area to repaint. "
                                   "Without it, the first image's own transparency is used."},
                "model": {
                    "type": "string",
                    "description": "Model id or alias (see below and list_models). Default: "
                                   f"{default.short_name}."},
                "strength": {
                    "type": "number", "minimum": 0, "maximum": 1,
                    "description": "img2img and inpainting models: how far the result may "
                                   "move from the source, 0 (unchanged) to 1 (ignore it)."},
                "size": {
                    "type": "string", "pattern": r"^\s*\d+\s*[xX×]\s*\d+\s*$",
                    "description": "Output size `WIDTHxHEIGHT`; default: the first image's "
                                   "proportions at the model's usual size."},
                "aspect_ratio": {
                    "type": "string", "pattern": r"^\s*\d+\s*:\s*\d+\s*$",
                    "description": "Output shape such as `16:9`; give `size` or "
                                   "`aspect_ratio`, not both."},
                "seed": {
                    "type": "integer", "minimum": 0, "maximum": SEED_MAX,
                    "description": "Seed for a reproducible result (models with seed "
                                   "support); default: random, reported back."},
                "steps": {
                    "type": "integer", "minimum": 1, "maximum": 100,
                    "description": "Diffusion steps, clamped to the model's maximum; ignored "
                                   "by models with fixed steps."},
                "negative_prompt": {
                    "type": "string",
                    "description": "What the result must not show (Stable Diffusion models)."},
                "n": {
                    "type": "integer", "minimum": 1, "maximum": max_n, "default": 1,
                    "description": f"Number of results, 1 to {max_n}, differing by seed; "
                                   "each counts against the rate limit."},
            },
            "required": ["prompt", "images"],
            "additionalProperties": False,
        },
        annotations=types.ToolAnnotations(
            title="Edit image", read_only_hint=False, destructive_hint=False,
            idempotent_hint=False, open_world_hint=True),
    )


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
        "description": spec.description, "default": default,
        "size_control": caps["size_control"], "size_range": caps["size_range"],
        "default_size": caps["default_size"],
        "steps": ({"max": spec.steps_max} if spec.steps_field else None),
        "seed": spec.seed, "negative_prompt": spec.negative_prompt,
        "guidance": caps["guidance"], "max_prompt_chars": spec.max_prompt,
        "image_input": spec.image_capabilities(),
        "cost": spec.cost_info(steps),
    }


def model_line(spec: ModelSpec, default: bool) -> str:
    lo, hi = spec.output_limits()
    parts = [f"- {spec.short_name}{' (default)' if default else ''}: {spec.description}."]
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
