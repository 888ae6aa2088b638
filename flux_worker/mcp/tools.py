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

from ..cost.money import neurons_text, usd_text
from ..errors import APIError, InvalidRequest
from ..generation.edits import EditOptions, plan_edit
from ..generation.pipeline import ImageJob, ImageResult
from ..generation.prompt import parse_prompt
from ..inputs.intake import ImageIntake
from ..services import Services
from .arguments import edit_request, ignored_options, images_request, no_unknown
from .caller import Caller
from .preview import inline_image
from .schemas import describe_model, duration, edit_tool, generate_tool, list_models_tool

log = logging.getLogger("flux_worker.mcp")


class ImageTools:
    """The tools offered over MCP, bound to one service's parts."""

    def __init__(self, services: Services):
        self.services = services
        config = services.config
        self.intake = ImageIntake(services.store, max_bytes=config.max_input_image_bytes,
                                  fetch_remote=config.fetch_remote_images,
                                  expiration=config.image_expiration,
                                  foreign_origin=services.links.foreign_origin())

    def definitions(self) -> list[types.Tool]:
        """The tools with descriptions and JSON schemas written for a model to read."""
        return [generate_tool(self.services), edit_tool(self.services), list_models_tool()]

    # --- calls ------------------------------------------------------------------------------

    def call(self, name: str, arguments: dict[str, Any] | None, caller: Caller,
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
            return tool_error(exc)
        except Exception:
            log.exception("%s tool %s failed unexpectedly", caller.request_id or "-", name)
            return tool_error(None)

    def generate(self, args: dict[str, Any], caller: Caller,
                 cancel: threading.Event | None) -> types.CallToolResult:
        """Generate `n` images and return them inline, linked and described."""
        svc = self.services
        req = images_request(args, svc.config.max_images)
        model = svc.models.require(req.model)
        job = svc.pipeline.plan(parse_prompt(req.prompt), req.prompt, model, size=req.size,
                                seed=req.seed, steps=req.steps, negative=req.negative_prompt)
        ignored = ignored_options(model, seed=req.seed, steps=req.steps,
                                  negative=req.negative_prompt)
        return self._render(job, req.n, caller, cancel, ignored, "Generated")

    def edit(self, args: dict[str, Any], caller: Caller,
             cancel: threading.Event | None) -> types.CallToolResult:
        """Change 1-4 images after a prompt and return the results like generate."""
        svc = self.services
        req, links, mask_link = edit_request(args, svc.config.max_images)
        images = [self.intake.from_url(link, f"images[{i}]") for i, link in enumerate(links)]
        mask = self.intake.from_url(mask_link, "mask") if mask_link else None
        # No model named: EDIT_MODEL, the model meant for edits (as the schema says).
        model = req.model or (svc.models.edit_model.id if svc.models.edit_model else None)
        options = EditOptions(model=model, size=req.size_spec(), seed=req.seed,
                              steps=req.steps, negative=req.negative_prompt,
                              strength=req.strength)
        job = plan_edit(svc.pipeline, svc.models, req.prompt, images, mask, options)
        ignored = ignored_options(job.model, seed=req.seed, steps=req.steps,
                                  negative=req.negative_prompt)
        if req.strength is not None and not job.model.strength:
            ignored.append("strength")
        inputs = ", ".join(image.size for image in images)
        note = f"From {len(images)} input image{'s' if len(images) > 1 else ''} ({inputs})."
        if job.requested is not None:
            note += (f" {job.requested.short_name} takes no images, so {job.model.short_name} "
                     "(EDIT_MODEL) drew them.")
        return self._render(job, req.n, caller, cancel, ignored, "Edited", note)

    def _render(self, job: ImageJob, n: int, caller: Caller, cancel: threading.Event | None,
                ignored: list[str], verb: str, note: str | None = None) -> types.CallToolResult:
        """Admit, charge and render `n` images of `job`, then describe them."""
        svc = self.services
        caller.model = job.model.id
        svc.pipeline.check_storage()  # refuse before charging the caller's limit
        # Rate limit, in-flight slots and budgets, as for the Images API.
        with svc.admission.admit(caller.identity, n, key=caller.key,
                                 estimate=job.estimate) as ticket:
            batch = svc.pipeline.render_batch(job, n, cancel, hold=ticket.hold)
        neurons = ticket.hold.neurons if ticket.hold else None
        return self._images_result(job, batch.choice.prompt, batch.results, caller, ignored,
                                   neurons, verb, note)

    def _images_result(self, job: ImageJob, used: str, results: list[ImageResult],
                       caller: Caller, ignored: list[str], neurons: float | None, verb: str,
                       note: str | None) -> types.CallToolResult:
        model, size, asked = job.model, job.size, job.original
        content: list[types.ContentBlock] = []
        described = []
        lines = [f"{verb} {len(results)} image{'s' if len(results) > 1 else ''} with "
                 f"{model.short_name} ({model.id}), size {size}."]
        if note:
            lines.append(note)
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
        lifetime = self.services.config.image_expiration
        if caller.links_expire and lifetime:  # 0: images are kept for ever
            lines.append(f"Links expire after {duration(lifetime)}.")
        content.insert(0, types.TextContent(text="\n".join(lines)))
        structured = {"model": model.id, "size": size, "prompt": used, "images": described,
                      "ignored": ignored,
                      "neurons": None if neurons is None else round(neurons, 3)}
        if job.requested is not None:
            structured["requested_model"] = job.requested.id
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
