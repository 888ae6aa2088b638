"""The images a chat message brings: attached `image_url` parts, or `--edit` (no Flask, no I/O).

A chat client can only send text and image parts, so an edit travels in the conversation:

    attached images      the last user message's `image_url` (or `input_image`) parts
    `--edit`             the newest image of this service in the conversation (an earlier
                         answer's link), changed after the instruction beside the flag
    CHAT_EDITS=auto      the translation LLM may also call a follow-up without `--edit` an edit

What is found are sources; they are read only once the generation is admitted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import InvalidRequest
from .image import ImageSource
from .intake import own_image_key

MAX_CHAT_IMAGES = 4
_EDIT_FLAG = re.compile(r"(?<!\S)(?:--|—)edit(?=\s|\Z)", re.I)
_LINKS = re.compile(r"""(?:https?://[^\s<>()"'\]]+|(?<![\w/])/image/[A-Za-z0-9_-]{22,64})""")


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


def chat_sources(edit: ChatEdit) -> tuple[ImageSource, ...]:
    """The images a chat edit refers to, unread; raise InvalidRequest for too many."""
    if len(edit.urls) > MAX_CHAT_IMAGES:
        raise InvalidRequest(f"A message may attach at most {MAX_CHAT_IMAGES} images to edit; "
                             f"it has {len(edit.urls)}.", param="messages",
                             code="too_many_images")
    if edit.previous:
        return (ImageSource.link(edit.urls[0], "the previous image"),)
    return tuple(ImageSource.link(url, f"attached image {i + 1}")
                 for i, url in enumerate(edit.urls))
