"""The MCP tools: their descriptions and input schemas, argument parsing and execution.

Plain, synchronous code on top of Services (no Flask, no event loop): `ImageTools.call` turns one
tool call into a `CallToolResult`. Every failure becomes a tool error (`isError: true`) carrying
the same message the HTTP API gives, so an agent can read what went wrong and what to do.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable

import mcp_types as types

from ..budget import Hold, neurons_text, usd_text
from ..catalog import SEED_MAX, ModelSpec
from ..errors import APIError, InvalidRequest
from ..pipeline import ImageJob, ImageResult
from ..prompt import parse_prompt
from ..services import Services
from ..sizes import parse_size_param
from ..wire import ImageGenerationRequest, parse_image_generation
from .preview import PREVIEW_MAX_BYTES, PREVIEW_MAX_SIDE, PREVIEW_SIDE, inline_image

log = logging.getLogger("flux_worker.mcp")


@dataclass
class Caller:
    """Who calls a tool, and where links to its images point.

    `link` turns a stored image into the URL the agent is given. `model` is filled in by the
    tool so the HTTP access log can name the model, as it does for the API.
    """

    identity: str = field(repr=False)   # the API key when keys are configured: never shown
    link: Callable[[ImageResult], str | None]
    request_id: str | None = None
    key: str | None = field(default=None, repr=False)  # whose budget: the API key, if any
    links_expire: bool = True     # False: links to files of the local user, kept until removed
    model: str = field(default="-")


class ImageTools:
    """The tools offered over MCP, bound to one service's parts."""

    def __init__(self, services: Services):
        self.services = services

    # --- definitions ------------------------------------------------------------------------

    def definitions(self) -> list[types.Tool]:
        """The tools with descriptions and JSON schemas written for a model to read."""
        return [self._generate_tool(), self._list_models_tool()]

    def _generate_tool(self) -> types.Tool:
        svc = self.services
        max_n = svc.config.max_images
        models = svc.models
        return types.Tool(
            name="generate_image",
            title="Generate image",
            description=(
                "Create images from a text prompt with a text-to-image model and return them: each "
                "image inline (a JPEG preview when it is larger than "
                f"{PREVIEW_MAX_SIDE} px or {PREVIEW_MAX_BYTES // 1000} KB), a link to the full "
                "image, and its model, size and seed. Images are kept for "
                f"{_duration(svc.config.image_expiration)}. Write the prompt in English as a "
                "visual description (subject, setting, style, lighting). Call list_models for what "
                "each model accepts.\n\nModels offered (first name is what to pass as `model`):\n"
                + "\n".join(_model_line(m, m is models.default) for m in models.models)),
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

    def _list_models_tool(self) -> types.Tool:
        return types.Tool(
            name="list_models",
            title="List image models",
            description=(
                "List the image models this server offers and what each accepts: size range "
                "and default size, whether the size can be chosen, maximum steps, seed and "
                "negative-prompt support, prompt length limit, and which one is the default. "
                "Takes no arguments."),
            input_schema={"type": "object", "properties": {}, "additionalProperties": False},
            annotations=types.ToolAnnotations(
                title="List image models", read_only_hint=True, idempotent_hint=True,
                open_world_hint=False),
        )

    # --- calls ------------------------------------------------------------------------------

    def call(self, name: str, arguments: dict[str, Any] | None, caller: Caller,
             cancel: threading.Event | None = None) -> types.CallToolResult:
        """Run one tool; any failure is a tool error with the HTTP API's message."""
        args = arguments or {}
        try:
            if name == "generate_image":
                return self.generate(args, caller, cancel)
            if name == "list_models":
                _no_unknown(args, set())
                return self.list_models()
            raise InvalidRequest(f"There is no tool named `{name}`. The tools are "
                                 "generate_image and list_models.")
        except APIError as exc:
            log.info("%s tool %s failed: %s %s", caller.request_id or "-", name,
                     exc.code or exc.type, exc.message)
            return tool_error(exc)
        except Exception:
            log.exception("%s tool %s failed unexpectedly", caller.request_id or "-", name)
            return tool_error(None)

    def generate(self, args: dict[str, Any], caller: Caller,
                 cancel: threading.Event | None) -> types.CallToolResult:
        """Generate `n` images and return them inline, linked and described."""
        svc = self.services
        req = _images_request(args, svc.config.max_images)
        model = svc.models.require(req.model)
        caller.model = model.id
        job = svc.pipeline.plan(parse_prompt(req.prompt), req.prompt, model, size=req.size,
                                seed=req.seed, steps=req.steps, negative=req.negative_prompt)
        svc.pipeline.check_storage()  # refuse before charging the caller's limit
        with svc.admission.admit(caller.identity, req.n):
            # The budgets as in the Images API: reserve the estimate, book each image's figure.
            hold = (svc.books.reserve(caller.key, job.estimate * req.n)
                    if job.estimate is not None else None)
            with hold or nullcontext():
                batch = svc.pipeline.render_batch(job, req.n, cancel)
                neurons = _settle(hold, job, batch.results)
        return self._images_result(model, job.size, req.prompt, batch.choice.prompt,
                                   batch.results, caller, _ignored(req, model), neurons)

    def _images_result(self, model: ModelSpec, size: str, asked: str, used: str,
                       results: list[ImageResult], caller: Caller, ignored: list[str],
                       neurons: float | None) -> types.CallToolResult:
        content: list[types.ContentBlock] = []
        described = []
        lines = [f"Generated {len(results)} image{'s' if len(results) > 1 else ''} with "
                 f"{model.short_name} ({model.id}), size {size}."]
        lines.append(f"Prompt used: {used}")
        if used != asked:
            lines.append(f"Prompt given: {asked}")
        if ignored:
            lines.append(f"Ignored: {', '.join(ignored)} ({model.short_name} does not take "
                         f"{'it' if len(ignored) == 1 else 'them'}; see list_models).")
        for index, result in enumerate(results, 1):
            shown = inline_image(result.data, result.content_type, result.width, result.height)
            link = caller.link(result)
            item = {"url": link, "width": result.width, "height": result.height,
                    "content_type": result.content_type, "seed": result.seed,
                    "preview": {"width": shown.width, "height": shown.height} if shown.preview
                    else None}
            described.append(item)
            head = f"Image {index}: {result.width}x{result.height}"
            if result.seed is not None and model.seed:
                head += f", seed {result.seed}"
            if shown.preview:
                head += (f"; shown as a {shown.width}x{shown.height} JPEG preview "
                         f"(full image at the link)")
            lines.append(head)
            lines.append(f"Full image: {link}" if link else
                         "Full image: not linked (set PUBLIC_BASE_URL to get links)")
            content.append(types.ImageContent(
                data=base64.b64encode(shown.data).decode("ascii"), mime_type=shown.content_type))
        if neurons is not None and self.services.config.show_cost:
            lines.append(f"Cost: {neurons_text(neurons)} neurons ({usd_text(neurons)} at the "
                         "Workers AI paid rate).")
        if caller.links_expire:
            lines.append(f"Links expire after "
                         f"{_duration(self.services.config.image_expiration)}.")
        content.insert(0, types.TextContent(text="\n".join(lines)))
        structured = {"model": model.id, "size": size, "prompt": used, "images": described,
                      "ignored": ignored,
                      "neurons": None if neurons is None else round(neurons, 3)}
        return types.CallToolResult(content=content, structured_content=structured)

    def list_models(self) -> types.CallToolResult:
        """The offered models and what each accepts, as JSON text and structured content."""
        models = self.services.models
        steps = self.services.config.flux_num_steps
        described = [_describe(m, m is models.default, steps) for m in models.models]
        data = {"default": models.default.id, "models": described}
        return types.CallToolResult(
            content=[types.TextContent(text=json.dumps(data, indent=1, ensure_ascii=False))],
            structured_content=data)


def _settle(hold: Hold | None, job: ImageJob, results: list[ImageResult]) -> float | None:
    """Book each image's neurons on the hold; their sum (None when nothing is priced)."""
    if hold is None:
        return None
    for result in results:
        if result.neurons is not None:
            hold.settle(result.neurons, estimate=job.estimate or 0.0, model=job.model.id,
                        account=result.account)
    return hold.neurons


def tool_error(exc: APIError | None) -> types.CallToolResult:
    """A tool error saying what failed; None: an unexpected fault, without its details."""
    if exc is None:
        text = "server_error: the server hit an unexpected error; try again."
    else:
        text = f"{exc.code or exc.type}: {exc.message}"
    return types.CallToolResult(content=[types.TextContent(text=text)], is_error=True)


_GENERATE_ARGS = {"prompt", "model", "size", "aspect_ratio", "seed", "steps", "negative_prompt",
                  "n"}


def _images_request(args: dict[str, Any], max_n: int) -> ImageGenerationRequest:
    """Validate generate_image's arguments with the Images API's own rules and messages."""
    _no_unknown(args, _GENERATE_ARGS)
    size, ratio = args.get("size"), args.get("aspect_ratio")
    if size is not None and ratio is not None:
        raise InvalidRequest("Give either `size` (such as 1024x768) or `aspect_ratio` (such as "
                             "16:9), not both.", param="size")
    if ratio is not None:
        if not isinstance(ratio, str) or ":" not in ratio:
            raise InvalidRequest("`aspect_ratio` must look like 16:9, 3:2, 1:1 or 9:16.",
                                 param="aspect_ratio")
        try:
            parse_size_param(ratio)
        except InvalidRequest:
            raise InvalidRequest("`aspect_ratio` must look like 16:9, 3:2, 1:1 or 9:16, with "
                                 "both numbers above 0.", param="aspect_ratio") from None
    body = {k: v for k, v in args.items() if k != "aspect_ratio"}
    body["size"] = size if size is not None else ratio
    return parse_image_generation(body, max_n)


def _ignored(req: ImageGenerationRequest, model: ModelSpec) -> list[str]:
    """The arguments given that `model` cannot use, so the agent is not misled."""
    ignored = []
    if req.seed is not None and not model.seed:
        ignored.append("seed")
    if req.steps is not None and not model.steps_field:
        ignored.append("steps")
    if req.negative_prompt is not None and not model.negative_prompt:
        ignored.append("negative_prompt")
    return ignored


def _no_unknown(args: dict[str, Any], known: set[str]) -> None:
    unknown = sorted(set(args) - known)
    if unknown:
        accepted = ", ".join(f"`{k}`" for k in sorted(known)) or "none"
        raise InvalidRequest(f"Unknown argument {', '.join(f'`{k}`' for k in unknown)}; the "
                             f"accepted arguments are {accepted}.", param=unknown[0])


def _describe(spec: ModelSpec, default: bool, steps: int) -> dict[str, Any]:
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
        "cost": spec.cost_info(steps),
    }


def _model_line(spec: ModelSpec, default: bool) -> str:
    lo, hi = spec.output_limits()
    parts = [f"- {spec.short_name}{' (default)' if default else ''}: {spec.description}."]
    parts.append(f"Sizes {lo}-{hi} px" + ("" if spec.size else " (cropped and scaled from "
                                                              "%dx%d)" % spec.native_size))
    parts.append(f"steps up to {spec.steps_max}" if spec.steps_field else "fixed steps")
    parts.append("seed" if spec.seed else "no seed")
    if spec.negative_prompt:
        parts.append("negative_prompt")
    return parts[0] + " " + "; ".join(parts[1:]) + "."


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} hour{'s' if seconds != 3600 else ''}"
    if seconds % 60 == 0:
        return f"{seconds // 60} minute{'s' if seconds != 60 else ''}"
    return f"{seconds} seconds"


__all__ = ["Caller", "ImageTools", "tool_error", "PREVIEW_SIDE"]
