"""Edits: plan a generation from input images, find the images of a chat, and answer it (no Flask).

Three entrances share one plan:

    POST /v1/images/edits        images (1-4) + prompt, optional mask
    POST /v1/images/variations   one image, no prompt: the image redrawn with different seeds
    chat                         a user message with `image_url` parts, or `--edit` (the newest
                                 image of this service in the conversation)

`plan_edit` picks the model (EDIT_MODEL when the named one takes no images), converts the mask,
keeps the input's proportions unless a size is asked for, and returns the ImageJob the pipeline
renders like any other. Every check happens here, before anything is sent upstream.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable, Iterator

from ..catalog.registry import ModelRegistry, model_for_images
from ..chat.answer import image_pieces, plan_lines
from ..chat.phrases import Phrasebook
from ..cost.books import Hold
from ..errors import InvalidRequest
from ..inputs.intake import ImageIntake, InputImage, mask_from_alpha, own_image_key, sd_mask
from .pipeline import ImageJob, ImageResult, Pipeline
from .prompt import parse_prompt
from .sizes import SizeSpec

# What a variation asks the model for: there is no user prompt, and the picture is the subject.
VARIATION_PROMPT = ("A new variation of this image: the same subject, composition, colours and "
                    "style, with small natural differences in the details.")
MAX_CHAT_IMAGES = 4
_RATIO_DENOMINATOR = 16       # the input's proportions, to the nearest x/16
_EDIT_FLAG = re.compile(r"(?<!\S)(?:--|—)edit(?=\s|\Z)", re.I)
_LINKS = re.compile(r"""(?:https?://[^\s<>()"'\]]+|(?<![\w/])/image/[A-Za-z0-9_-]{22,64})""")


@dataclass(frozen=True)
class EditOptions:
    """What a client may set besides the images (all optional)."""

    model: str | None = None
    size: SizeSpec | None = None
    seed: int | None = None
    steps: int | None = None
    negative: str | None = None
    guidance: float | None = None
    strength: float | None = None
    output_format: str | None = None


def plan_edit(pipeline: Pipeline, models: ModelRegistry, prompt: str,
              images: list[InputImage], mask: InputImage | None, options: EditOptions, *,
              variation: bool = False, chat_model: bool = False) -> ImageJob:
    """Plan one edit; raise InvalidRequest when no offered model can draw it.

    `chat_model`: a chat client names its "model" freely, so an unknown name means the default.
    """
    if not images:
        raise InvalidRequest("Send at least one image to edit.", param="image")
    requested = (models.for_chat(options.model) if chat_model
                 else models.require(options.model))
    model = model_for_images(requested, len(images), mask is not None, models.edit_model)
    sd = sd_mask(mask, images[0]) if mask is not None else None
    if model.mask and sd is None:
        # OpenAI's rule: without a mask, the image's own transparency marks what to change.
        sd = mask_from_alpha(images[0])
        # Only an inpainting model cannot work without one (an upstream edits API can).
        if sd is None and model.needs_image:
            raise InvalidRequest(
                f"{model.short_name} repaints only a masked area: send a `mask` (fully "
                "transparent where the image should change), or an image with transparent "
                "pixels there.", param="mask", code="mask_required")
    parsed = parse_prompt(prompt)
    size = options.size or parsed.size or input_ratio(images[0])
    return pipeline.plan(parsed, prompt, model, size=size, seed=options.seed,
                         steps=options.steps, negative=options.negative,
                         guidance=options.guidance, output_format=options.output_format,
                         images=tuple(images), mask=sd, strength=options.strength,
                         variation=variation, requested=requested)


def input_ratio(image: InputImage) -> SizeSpec:
    """A size request with the proportions of the input (within 1:8 to 8:1)."""
    ratio = Fraction(image.width, image.height).limit_denominator(_RATIO_DENOMINATOR)
    ratio = max(Fraction(1, 8), min(Fraction(8, 1), ratio))
    terms = (ratio.numerator, ratio.denominator)
    return SizeSpec(ratio=terms, width=None, height=None, source="%d:%d" % terms)


# --- chat ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChatEdit:
    """A chat message that edits: its instruction and the URLs of the images it refers to."""

    text: str
    urls: tuple[str, ...]
    previous: bool           # the image came from an earlier answer (`--edit`), not attached


def find_chat_edit(messages: list[Any], text: str,
                   decide: Callable[[str], bool] | None = None,
                   foreign_origin: str | None = None) -> ChatEdit | None:
    """The edit a chat asks for, or None for a new picture; raise InvalidRequest if unclear.

    A last user message with `image_url` parts edits those images; `--edit` edits the newest
    image of this service found in the conversation (an earlier answer's link). `decide`
    (CHAT_EDITS=auto: the LLM) may also call a follow-up without `--edit` an edit.
    """
    attached = _attached_urls(_last_user(messages))
    wants_previous = bool(_EDIT_FLAG.search(text))
    instruction = _EDIT_FLAG.sub(" ", text).strip() if wants_previous else text
    if attached:
        return ChatEdit(instruction, tuple(attached), previous=False)
    if not wants_previous:
        if decide is None:
            return None
        previous = newest_own_image(messages, foreign_origin)
        if previous is None or not decide(text):
            return None
        return ChatEdit(text, (previous,), previous=True)
    if not instruction:
        raise InvalidRequest("`--edit` needs an instruction beside it, such as "
                             "`make it blue --edit`.", param="messages")
    previous = newest_own_image(messages, foreign_origin)
    if previous is None:
        raise InvalidRequest(
            "`--edit` changes the newest image of this service in the conversation, and there "
            "is none yet: describe a picture first, or attach the image to edit.",
            param="messages", code="no_image_to_edit")
    return ChatEdit(instruction, (previous,), previous=True)


def _last_user(messages: list[Any]) -> dict:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return message
    return {}


def _attached_urls(message: dict) -> list[str]:
    """The image URLs of a message's `image_url` parts, in order."""
    content = message.get("content")
    if not isinstance(content, list):
        return []
    urls = []
    for part in content:
        if not isinstance(part, dict) or part.get("type") not in ("image_url", "input_image"):
            continue
        value = part.get("image_url")
        if isinstance(value, dict):
            value = value.get("url")
        if not isinstance(value, str) or not value.strip():
            raise InvalidRequest("An `image_url` part has no `url`: send "
                                 '{"type": "image_url", "image_url": {"url": "data:..."}}.',
                                 param="messages")
        urls.append(value.strip())
    return urls


def newest_own_image(messages: list[Any], foreign_origin: str | None = None) -> str | None:
    """The newest link to an image of this service in the conversation, or None."""
    for message in reversed(messages[:-1] if messages else []):
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        texts = [content] if isinstance(content, str) else [
            part.get("text", "") for part in content or []
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        ] if isinstance(content, list) else []
        for text in texts:
            found = [link for link in _LINKS.findall(text)
                     if own_image_key(link, foreign_origin)]
            if found:
                return found[-1]
    return None


def load_chat_images(intake: ImageIntake, edit: ChatEdit) -> list[InputImage]:
    """Read the images a chat edit refers to; raise InvalidRequest for too many or bad ones."""
    if len(edit.urls) > MAX_CHAT_IMAGES:
        raise InvalidRequest(f"A message may attach at most {MAX_CHAT_IMAGES} images to edit; "
                             f"it has {len(edit.urls)}.", param="messages",
                             code="too_many_images")
    if edit.previous:
        return [intake.from_url(edit.urls[0], "the previous image")]
    return [intake.from_url(url, f"attached image {i + 1}") for i, url in enumerate(edit.urls)]


# --- the chat answer ------------------------------------------------------------------------------

def edit_answer(job: ImageJob, pipeline: Pipeline, words: Phrasebook,
                image_url: Callable[[str], str],
                cancel: threading.Event | None = None, hold: Hold | None = None,
                show_cost: bool = False) -> Iterator[str]:
    """Yield the answer to a chat edit: references, instruction, model, size, then the image."""
    refs = []
    for index, image in enumerate(job.images, start=1):
        refs.append(f"[{index}]({image.link})" if image.link
                    else words("attached", n=index, size=image.size))
    yield words("references", " ".join(refs)) + "\n"
    lines = [words("instruction", job.prompt)]
    choice = pipeline.choose_prompt(job, cancel)
    if choice.model:
        lines += [words("prompt_model", choice.model), words("translated", choice.prompt)]
    if choice.skipped:
        lines.append(words("skipped", reason=choice.skipped))
    if job.requested is not None:
        lines.append(words("model_instead", model=job.model.short_name,
                           requested=job.requested.short_name))
    else:
        lines.append(words("model", job.model.short_name))
    yield "\n".join(lines + plan_lines(job, words)) + "\n"
    result: ImageResult = pipeline.render(job, choice.prompt, cancel=cancel, hold=hold)
    yield from image_pieces(result, words, image_url, show_cost)
