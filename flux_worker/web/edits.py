"""POST /v1/images/edits and /v1/images/variations. Views stay thin.

Uploads have their own limit (MAX_UPLOAD_BYTES): Flask's MAX_CONTENT_LENGTH is one global number
(MAX_BODY_BYTES, for JSON), so these routes raise it for a multipart form before it is read. A
JSON body keeps MAX_BODY_BYTES here too.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, request
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import RequestEntityTooLarge

from ..errors import InvalidRequest, PayloadTooLarge
from ..generation.job import ImageOrder
from ..generation.planner import VARIATION_PROMPT
from ..inputs.image import ImageSource
from ..inputs.intake import upload_too_large
from ..openai_api import edit_requests
from ..openai_api.edit_requests import MAX_EDIT_IMAGES, EditRequest, VariationRequest
from .auth import caller_identity, caller_terms, require_api_key
from .body import incomplete, json_body, with_length
from .context import services
from .image_answers import images_answer

bp = Blueprint("edits", __name__)

_IMAGE_FIELD = re.compile(r"^image(\[\d*\])?$")


@bp.before_request
def authenticate() -> None:
    require_api_key()
    # A caller over its rate limit is refused before any image is read or decoded.
    services().admission.check(caller_identity(), caller_terms())


@bp.post("/images/edits")
def images_edits() -> Response:
    """OpenAI Images API edits: 1-4 images (and a mask) changed after a prompt."""
    svc = services()
    fields, files = _read_body()
    req: EditRequest = edit_requests.parse(EditRequest, fields, svc.config.max_images)
    uploads = [f for name, f in files if _IMAGE_FIELD.match(name)]
    links = req.image_links()
    if len(uploads) + len(links) > MAX_EDIT_IMAGES:
        raise InvalidRequest(f"At most {MAX_EDIT_IMAGES} images can be edited at once; "
                             f"{len(uploads) + len(links)} were sent.", param="image",
                             code="too_many_images")
    images = [ImageSource.upload(_read(f), f"image[{i}]") for i, f in enumerate(uploads)]
    images += [ImageSource.link(link, f"images[{i}]") for i, link in enumerate(links)]
    if not images:
        raise InvalidRequest("`image` is required: upload 1 to 4 images as `image` or "
                             "`image[]`, or send `images: [{\"image_url\": ...}]`.",
                             param="image")
    mask_file = next((f for name, f in files if name == "mask"), None)
    mask_link = req.mask_link()
    mask = (ImageSource.upload(_read(mask_file), "mask") if mask_file is not None
            else ImageSource.link(mask_link, "mask") if mask_link else None)
    order = ImageOrder(prompt=req.prompt, model=req.model, n=req.n, size=req.size_spec(),
                       seed=req.seed, steps=req.steps, negative=req.negative_prompt,
                       guidance=req.guidance, strength=req.strength,
                       output_format=req.output_format,
                       output_compression=req.output_compression, quality=req.quality,
                       background=req.background, moderation=req.moderation,
                       images=tuple(images), mask=mask)
    return images_answer(order, req.response_format, name_models=True, stream=req.stream,
                         event="image_edit")


@bp.post("/images/variations")
def images_variations() -> Response:
    """OpenAI Images API variations: `n` new takes on one image, each with its own seed."""
    svc = services()
    fields, files = _read_body()
    req: VariationRequest = edit_requests.parse(VariationRequest, fields, svc.config.max_images)
    uploads = [f for name, f in files if _IMAGE_FIELD.match(name)]
    link = fields.get("image") if isinstance(fields.get("image"), str) else None
    if len(uploads) + (1 if link else 0) != 1:
        raise InvalidRequest("Send exactly one image as `image` (a PNG, JPEG, WebP or GIF "
                             "file).", param="image")
    image = (ImageSource.upload(_read(uploads[0]), "image") if uploads
             else ImageSource.link(str(link), "image"))
    order = ImageOrder(prompt=VARIATION_PROMPT, model=req.model, n=req.n, size=req.size_spec(),
                       seed=req.seed, output_format=req.output_format,
                       output_compression=req.output_compression, quality=req.quality,
                       background=req.background, images=(image,), variation=True)
    return images_answer(order, req.response_format, name_models=True)


def _read_body() -> tuple[dict[str, Any], list[tuple[str, FileStorage]]]:
    """The text fields and files of a multipart form, or the fields of a JSON body."""
    if request.mimetype != "multipart/form-data":
        return json_body(), []       # at most MAX_BODY_BYTES, as on every JSON route
    limit = services().config.max_upload_bytes
    if request.content_length is not None and request.content_length > limit:
        raise upload_too_large(limit)
    # Uploads may be larger than JSON bodies: raised per request, before the form is read.
    request.max_content_length = limit
    with_length(request.environ, limit, lambda: upload_too_large(limit))
    try:
        fields: dict[str, Any] = {k: v for k, v in request.form.items(multi=False)}
        return fields, list(request.files.items(multi=True))
    except RequestEntityTooLarge:
        # The body is within MAX_UPLOAD_BYTES (checked above): Werkzeug refused the form's shape.
        raise _form_too_complex() from None
    except OSError:
        raise incomplete() from None


def _form_too_complex() -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The form has more than {request.max_form_parts} parts, or a text field or part "
        f"header over {request.max_form_memory_size} bytes. Send the options as short text "
        "fields and each image as one file part.")


def _read(upload: FileStorage) -> bytes:
    """An uploaded file's bytes, reading at most one byte past the image limit."""
    return upload.stream.read(services().config.max_input_image_bytes + 1)
