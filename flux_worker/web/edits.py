"""POST /v1/images/edits and /v1/images/variations, and the chat's edit detection. Views stay thin.

Uploads have their own limit (MAX_UPLOAD_BYTES): Flask's MAX_CONTENT_LENGTH is one global number
(MAX_BODY_BYTES, for JSON), so these routes raise it per request before the body is read.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from flask import Blueprint, Response, request
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import RequestEntityTooLarge

from ..errors import InvalidRequest
from ..generation.edits import (
    VARIATION_PROMPT,
    EditOptions,
    find_chat_edit,
    load_chat_images,
    plan_edit,
)
from ..generation.pipeline import ImageJob
from ..inputs.intake import ImageIntake, InputImage, upload_too_large
from ..openai_api import edit_requests
from ..openai_api.edit_requests import MAX_EDIT_IMAGES, EditRequest, VariationRequest
from .auth import caller_identity, require_api_key
from .body import json_body
from .context import services
from .image_answers import render_images

log = logging.getLogger(__name__)
bp = Blueprint("edits", __name__)

_IMAGE_FIELD = re.compile(r"^image(\[\d*\])?$")


@bp.before_request
def authenticate_and_allow_uploads() -> None:
    require_api_key()
    # A caller over its rate limit is refused before any image is read or decoded.
    services().admission.check(caller_identity())
    # Per request, before anything reads the body: uploads may be larger than JSON bodies.
    request.max_content_length = services().config.max_upload_bytes


def image_intake() -> ImageIntake:
    """The intake for this app's storage and limits."""
    svc = services()
    return ImageIntake(svc.store, max_bytes=svc.config.max_input_image_bytes,
                       fetch_remote=svc.config.fetch_remote_images,
                       expiration=svc.config.image_expiration,
                       foreign_origin=svc.links.foreign_origin())


@bp.post("/v1/images/edits")
@bp.post("/images/edits")
def images_edits() -> Response:
    """OpenAI Images API edits: 1-4 images (and a mask) changed after a prompt."""
    svc = services()
    fields, files = _read_body()
    req: EditRequest = edit_requests.parse(EditRequest, fields, svc.config.max_images)
    intake = image_intake()
    uploads = [f for name, f in files if _IMAGE_FIELD.match(name)]
    links = req.image_links()
    if len(uploads) + len(links) > MAX_EDIT_IMAGES:
        raise InvalidRequest(f"At most {MAX_EDIT_IMAGES} images can be edited at once; "
                             f"{len(uploads) + len(links)} were sent.", param="image",
                             code="too_many_images")
    images = [intake.from_upload(_read(f, intake), f"image[{i}]")
              for i, f in enumerate(uploads)]
    images += [intake.from_url(link, f"images[{i}]") for i, link in enumerate(links)]
    if not images:
        raise InvalidRequest("`image` is required: upload 1 to 4 images as `image` or "
                             "`image[]`, or send `images: [{\"image_url\": ...}]`.",
                             param="image")
    mask_file = next((f for name, f in files if name == "mask"), None)
    mask_link = req.mask_link()
    mask = (intake.from_upload(_read(mask_file, intake), "mask") if mask_file is not None
            else intake.from_url(mask_link, "mask") if mask_link else None)
    options = EditOptions(model=req.model, size=req.size_spec(), seed=req.seed, steps=req.steps,
                          negative=req.negative_prompt, guidance=req.guidance,
                          strength=req.strength, output_format=req.output_format)
    job = plan_edit(svc.pipeline, svc.models, req.prompt, images, mask, options)
    return _render(job, req.n, req.response_format, req.model)


@bp.post("/v1/images/variations")
@bp.post("/images/variations")
def images_variations() -> Response:
    """OpenAI Images API variations: `n` new takes on one image, each with its own seed."""
    svc = services()
    fields, files = _read_body()
    req: VariationRequest = edit_requests.parse(VariationRequest, fields, svc.config.max_images)
    intake = image_intake()
    uploads = [f for name, f in files if _IMAGE_FIELD.match(name)]
    link = fields.get("image") if isinstance(fields.get("image"), str) else None
    if len(uploads) + (1 if link else 0) != 1:
        raise InvalidRequest("Send exactly one image as `image` (a PNG, JPEG, WebP or GIF "
                             "file).", param="image")
    image = (intake.from_upload(_read(uploads[0], intake), "image") if uploads
             else intake.from_url(str(link), "image"))
    options = EditOptions(model=req.model, size=req.size_spec(), seed=req.seed,
                          output_format=req.output_format)
    job = plan_edit(svc.pipeline, svc.models, VARIATION_PROMPT, [image], None, options,
                    variation=True)
    return _render(job, req.n, req.response_format, req.model)


def _render(job: ImageJob, n: int, response_format: str | None,
            model_name: str | None) -> Response:
    """Render `n` images of the job and answer exactly like /v1/images/generations."""
    extra = {"model": job.model.id}  # which model drew; OpenAI's answer allows extra fields
    if job.requested is not None:
        # Say which model drew: the one asked for takes no images, EDIT_MODEL stood in.
        extra["requested_model"] = job.requested.id
    return render_images(job, n, response_format, model_name, extra=extra)


def _read_body() -> tuple[dict[str, Any], list[tuple[str, FileStorage]]]:
    """The text fields and files of a multipart form, or the fields of a JSON body."""
    limit = services().config.max_upload_bytes
    if request.content_length is not None and request.content_length > limit:
        raise upload_too_large(limit)
    try:
        if request.mimetype == "multipart/form-data":
            fields: dict[str, Any] = {k: v for k, v in request.form.items(multi=False)}
            return fields, list(request.files.items(multi=True))
        return json_body(), []
    except RequestEntityTooLarge:
        raise upload_too_large(limit) from None


def _read(upload: FileStorage, intake: ImageIntake) -> bytes:
    """An uploaded file's bytes, reading at most one byte past the image limit."""
    return upload.stream.read(intake.max_bytes + 1)


# --- chat -----------------------------------------------------------------------------------------

def chat_edit_job(messages: list[Any], text: str, model_name: str | None) -> ImageJob | None:
    """The job of a chat message that edits (attached images or `--edit`), else None."""
    svc = services()
    translator = svc.pipeline.translator
    # CHAT_EDITS=auto needs an LLM to decide; without one it behaves as explicit.
    decide = (translator.decide_edit if svc.config.chat_edits == "auto" and translator
              else None)
    edit = find_chat_edit(messages, text, decide, svc.links.foreign_origin())
    if edit is None:
        return None
    images: list[InputImage] = load_chat_images(image_intake(), edit)
    return plan_edit(svc.pipeline, svc.models, edit.text, images, None,
                     EditOptions(model=model_name), chat_model=True)
