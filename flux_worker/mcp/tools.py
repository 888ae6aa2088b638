"""The MCP tools at work: run a call against Services and describe its outcome.

Plain, synchronous code on top of Services (no Flask, no event loop): `ImageTools.call` turns one
tool call into a `CallToolResult`. Every failure becomes a tool error (`isError: true`) carrying
the same message the HTTP API gives, so an agent can read what went wrong and what to do.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from typing import Any

import mcp_types as types

from ..cost.money import dollars_text, neurons_text, usd_text
from ..errors import APIError, InvalidRequest, public_error
from ..generation.job import Batch, Caller, ImageJob, ImageOrder, ImageResult
from ..inputs.image import ImageSource
from ..services import Services
from .arguments import edit_request, ignored_options, images_request, no_unknown
from .caller import ToolCaller
from .preview import inline_image
from .schemas import describe_model, duration, edit_tool, generate_tool, list_models_tool

log = logging.getLogger("flux_worker.mcp")


class ImageTools:
    """The tools offered over MCP, bound to one service's parts."""

    def __init__(self, services: Services):
        self.services = services

    def definitions(self) -> list[types.Tool]:
        """The tools with descriptions and JSON schemas written for a model to read."""
        return [generate_tool(self.services), edit_tool(self.services), list_models_tool()]

    # --- calls ------------------------------------------------------------------------------

    def call(self, name: str, arguments: dict[str, Any] | None, caller: ToolCaller,
             cancel: threading.Event | None = None) -> types.CallToolResult:
        """Run one tool; any failure is a tool error with the HTTP API's message."""
        args = arguments or {}
        try:
            if name == "generate_image":
                return self.generate(args, caller, cancel)
            if name == "edit_image":
                return self.edit(args, caller, cancel)
            if name == "list_models":
                no_unknown(args, set())
                return self.list_models()
            raise InvalidRequest(f"There is no tool named `{name}`. The tools are "
                                 "generate_image, edit_image and list_models.")
        except APIError as exc:
            log.info("%s tool %s failed: %s %s", caller.request_id or "-", name,
                     exc.code or exc.type, exc.message)
            return tool_error(public_error(exc, behind_key=caller.key_proved))
        except Exception:
            log.exception("%s tool %s failed unexpectedly", caller.request_id or "-", name)
            return tool_error(None)

    def generate(self, args: dict[str, Any], caller: ToolCaller,
                 cancel: threading.Event | None) -> types.CallToolResult:
        """Generate `n` images and return them inline, linked and described."""
        req = images_request(args, self.services.config.max_images)
        order = ImageOrder(prompt=req.prompt, model=req.model, n=req.n, size=req.size,
                           seed=req.seed, steps=req.steps, negative=req.negative_prompt)
        job, batch, neurons = self._render(order, caller, cancel)
        ignored = ignored_options(job.model, seed=req.seed, steps=req.steps,
                                  negative=req.negative_prompt)
        return self._images_result(job, batch.choice.prompt, batch.results, caller, ignored,
                                   neurons, "Generated", None)

    def edit(self, args: dict[str, Any], caller: ToolCaller,
             cancel: threading.Event | None) -> types.CallToolResult:
        """Change 1-4 images after a prompt and return the results like generate."""
        req, links, mask_link = edit_request(args, self.services.config.max_images)
        order = ImageOrder(
            prompt=req.prompt, model=req.model, n=req.n, size=req.size_spec(), seed=req.seed,
            steps=req.steps, negative=req.negative_prompt, strength=req.strength,
            images=tuple(ImageSource.link(link, f"images[{i}]") for i, link in enumerate(links)),
            mask=ImageSource.link(mask_link, "mask") if mask_link else None)
        job, batch, neurons = self._render(order, caller, cancel)
        ignored = ignored_options(job.model, seed=req.seed, steps=req.steps,
                                  negative=req.negative_prompt)
        if req.strength is not None and not job.model.strength:
            ignored.append("strength")
        inputs = ", ".join(image.size for image in job.images)
        count = len(job.images)
        note = f"From {count} input image{'s' if count > 1 else ''} ({inputs})."
        if job.requested is not None:
            note += (f" {job.requested.short_name} takes no images, so {job.model.short_name} "
                     "(EDIT_MODEL) drew them.")
        return self._images_result(job, batch.choice.prompt, batch.results, caller, ignored,
                                   neurons, "Edited", note)

    def _render(self, order: ImageOrder, caller: ToolCaller, cancel: threading.Event | None
                ) -> tuple[ImageJob, Batch, float | None]:
        """Start the order through the one entry point and render all its images."""
        asking = Caller(identity=caller.identity, key=caller.key,
                        cancel=cancel or threading.Event(), terms=caller.terms)
        with self.services.generations.start(order, asking) as generation:
            caller.model = generation.job.model.id
            batch = generation.render_all()
        return generation.job, batch, generation.neurons

    def _images_result(self, job: ImageJob, used: str, results: list[ImageResult],
                       caller: ToolCaller, ignored: list[str], neurons: float | None, verb: str,
                       note: str | None) -> types.CallToolResult:
        model, size, asked = job.model, job.size, job.original
        content: list[types.ContentBlock] = []
        described = []
        lines = [f"{verb} {len(results)} image{'s' if len(results) > 1 else ''} with "
                 f"{model.short_name} ({model.id}), size {size}."]
        if note:
            lines.append(note)
        fell_back = next((r for r in results if r.fallback is not None), None)
        if fell_back is not None and fell_back.model is not None:
            lines.append(f"{fell_back.model.short_name} ({fell_back.model.id}) drew instead: "
                         f"{model.short_name} could not draw it now ({fell_back.fallback}; "
                         "MODEL_FALLBACKS).")
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
        # The dollars of the images (a provider's dollar price, or the neurons at the paid
        # rate); None when a model is not priced in dollars.
        usd = (sum(r.usd for r in results if r.usd is not None)
               if results and all(r.usd is not None for r in results) else None)
        if neurons is not None and self.services.config.show_cost:
            lines.append(f"Cost: {neurons_text(neurons)} neurons ({usd_text(neurons)} at the "
                         "Workers AI paid rate).")
        elif usd is not None and self.services.config.show_cost:
            lines.append(f"Cost: {dollars_text(usd)}.")
        lifetime = self.services.config.image_expiration
        if caller.links_expire and lifetime:  # 0: images are kept for ever
            lines.append(f"Links expire after {duration(lifetime)}.")
        content.insert(0, types.TextContent(text="\n".join(lines)))
        structured: dict[str, object] = {
            "model": model.id, "size": size, "prompt": used, "images": described,
            "ignored": ignored, "neurons": None if neurons is None else round(neurons, 3),
            "usd": None if usd is None else round(usd, 9)}
        if job.requested is not None:
            structured["requested_model"] = job.requested.id
        if fell_back is not None and fell_back.model is not None:
            # The model that drew, and why not the one planned (README: Fallback).
            structured["model"] = fell_back.model.id
            structured["fallback"] = {"from": model.id, "reason": fell_back.fallback,
                                      "tried": list(fell_back.tried)}
        return types.CallToolResult(content=content, structured_content=structured)

    def list_models(self) -> types.CallToolResult:
        """The offered models and what each accepts, as JSON text and structured content."""
        models = self.services.models
        steps = self.services.config.flux_num_steps
        described = [describe_model(m, m is models.default, steps) for m in models.models]
        data = {"default": models.default.id, "models": described}
        return types.CallToolResult(
            content=[types.TextContent(text=json.dumps(data, indent=1, ensure_ascii=False))],
            structured_content=data)


def tool_error(exc: APIError | None) -> types.CallToolResult:
    """A tool error saying what failed; None: an unexpected fault, without its details."""
    if exc is None:
        text = "server_error: the server hit an unexpected error; try again."
    else:
        text = f"{exc.code or exc.type}: {exc.message}"
    return types.CallToolResult(content=[types.TextContent(text=text)], is_error=True)
