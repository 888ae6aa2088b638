"""A Responses request as a chat turn: the same prompt, options, edits and housekeeping as chat.

The input (a string, or items), the `instructions`, and the conversation a
`previous_response_id` or an `item_reference` brings back from storage become chat messages;
the images to edit become `image_url` parts of the last user message, where the chat turn finds
attached images. So a Responses request is drawn exactly as the same chat request would be
(ratio suffixes, `--seed`, translation, a client's title request answered with text), and the
image tool's fields are laid over the order in one place, `order_options`. No Flask here.

What makes an edit, in order: images in the input (`input_image` parts of the last user message,
`image_generation_call` items passed back with their `result` or, when stored, only their id,
`item_reference`s to such calls); when there are none, the image of `previous_response_id`. The
tool's `action: "generate"` draws a new picture whatever was passed; `"edit"` needs an image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..errors import InvalidRequest
from ..inputs.image import ImageSource
from ..openai_api.generation_requests import ChatCompletionRequest, parse_chat_completion
from .output import RESPONSE_PREFIX, message_id, token_of
from .request import ImageGenerationTool, ResponseRequest
from .store import Record, ResponseStore

_EXAMPLE = '[{"role": "user", "content": "a cute cat 16:9"}]'


@dataclass(frozen=True)
class Conversation:
    """A Responses request turned into a chat request, and its input items as stored."""

    chat: ChatCompletionRequest
    items: list[dict[str, Any]]          # the input items with ids (GET .../input_items)
    previous: Record | None


def order_options(tool: ImageGenerationTool | None) -> dict[str, Any]:
    """The `ImageOrder` fields the image tool sets: the one place the tool meets the order.

    `quality`, `background` and `output_compression` mean what they mean in the Images API.
    """
    if tool is None:
        return {}
    options: dict[str, Any] = {}
    if tool.model:
        # An image model's name, as the Images API takes it: GPT image names mean the default,
        # an unknown name is a 404 (the request's own `model` is a chat model's name).
        options.update(model=tool.model, chat=False)
    if tool.size is not None:
        options["size"] = tool.size
    if tool.output_format:
        options["output_format"] = tool.output_format
    for name in ("quality", "background", "output_compression", "moderation"):
        if getattr(tool, name) is not None:
            options[name] = getattr(tool, name)
    if tool.input_image_mask is not None and tool.input_image_mask.image_url:
        options["mask"] = ImageSource.link(tool.input_image_mask.image_url, "input_image_mask")
    return options


def build(request: ResponseRequest, response_id: str, owner: str, store: ResponseStore,
          image_url: Callable[[str], str]) -> Conversation:
    """Turn `request` into the chat request that draws it; raise InvalidRequest naming `input`."""
    token = response_id.split("_", 1)[1]
    messages: list[dict[str, Any]] = []
    previous = None
    if request.previous_response_id:
        previous = store.load(request.previous_response_id, owner)
        if previous is None:
            raise InvalidRequest(
                f"Previous response {request.previous_response_id!r} was not found: it does "
                "not exist, was made with another key, or has expired with its image.",
                param="previous_response_id", code="previous_response_not_found")
        messages += [_chat_message(item) for item in previous.input
                     if item.get("type") == "message"]
        said = _output_text(previous.response)
        if said:
            messages.append({"role": "assistant", "content": said})
    if request.instructions:
        messages.insert(0, {"role": "system", "content": request.instructions})
    items: list[dict[str, Any]] = []
    passed: list[str] = []               # images passed back: calls and references to them
    raw = ([{"type": "message", "role": "user", "content": request.input}]
           if isinstance(request.input, str) else request.input)
    for index, item in enumerate(raw):
        kind = item.get("type", "message")
        if kind == "message":
            items.append(_input_item(item, f"msg_{token}_{index}"))
            messages.append(_chat_message(item))
        elif kind == "image_generation_call":
            items.append({"type": "image_generation_call", "id": item["id"],
                          "status": "completed", "result": item.get("result")})
            passed.append(_call_image(item, owner, store, image_url))
        elif kind == "item_reference":
            found = _referenced(item["id"], owner, store, image_url)
            if isinstance(found, str):
                passed.append(found)
            else:
                messages.append(found)
        # other item kinds (reasoning, function outputs, ...) carry no prompt and are skipped
    last = next((m for m in reversed(messages) if m["role"] == "user"), None)
    if last is None or not _has_text(last):
        raise InvalidRequest("`input` has no user text: describe the image you want, such as "
                             f"{_EXAMPLE}.", param="input")
    tool = request.image_tool
    action = (tool.action if tool is not None else None) or "auto"
    attached = _attached(last)
    if not attached and not passed and previous is not None and previous.image_key:
        passed.append(image_url(previous.image_key))
    if action == "generate":
        last["content"] = [p for p in _parts(last) if p.get("type") != "image_url"]
    else:
        last["content"] = _parts(last) + [{"type": "image_url", "image_url": {"url": url}}
                                          for url in passed]
        if action == "edit" and not _attached(last):
            raise InvalidRequest("The image tool's `action: \"edit\"` needs an image: pass an "
                                 "`input_image`, an earlier `image_generation_call`, or "
                                 "`previous_response_id`.", param="tools")
    body = {"model": request.model, "messages": messages}
    try:
        chat = parse_chat_completion(body)
    except InvalidRequest as exc:
        raise as_input_error(exc) from None
    return Conversation(chat, items, previous)


def as_input_error(exc: InvalidRequest) -> InvalidRequest:
    """A chat turn's error about `messages`, told about `input` (what this client sent)."""
    if exc.param == "messages":
        exc.param = "input"
        exc.message = exc.message.replace("A message may attach", "The input may bring")
    return exc


def _parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content or [])


def _attached(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in _parts(message) if p.get("type") == "image_url"]


def _has_text(message: dict[str, Any]) -> bool:
    return any(p.get("type") == "text" and str(p.get("text", "")).strip()
               for p in _parts(message))


def _chat_message(item: dict[str, Any]) -> dict[str, Any]:
    """An input message item as a chat message: text parts and image_url parts."""
    content = item.get("content")
    if isinstance(content, str):
        return {"role": item["role"], "content": content}
    parts: list[dict[str, Any]] = []
    for part in content or []:
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": part.get("text", "")})
        elif kind == "input_image":
            parts.append({"type": "image_url", "image_url": {"url": part["image_url"].strip()}})
    return {"role": item["role"], "content": parts}


def _input_item(item: dict[str, Any], item_id: str) -> dict[str, Any]:
    """An input message as GET .../input_items lists it (OpenAI's item shapes, with an id)."""
    content = item.get("content")
    if item["role"] == "assistant":
        text = content if isinstance(content, str) else "\n".join(
            p.get("text", "") for p in content or [] if p.get("type") == "output_text")
        return {"type": "message", "id": item_id, "role": "assistant", "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": [],
                             "logprobs": []}]}
    parts: list[dict[str, Any]] = []
    for part in ([{"type": "input_text", "text": content}] if isinstance(content, str)
                 else content or []):
        if part.get("type") == "input_text":
            parts.append({"type": "input_text", "text": part["text"]})
        elif part.get("type") == "input_image":
            parts.append({"type": "input_image", "image_url": part["image_url"],
                          "detail": part.get("detail") or "auto"})
    return {"type": "message", "id": item_id, "role": item["role"], "status": "completed",
            "content": parts}


def _output_text(response: dict[str, Any]) -> str:
    return "\n".join(part.get("text", "") for item in response.get("output", [])
                     if item.get("type") == "message"
                     for part in item.get("content", []) if part.get("type") == "output_text")


def _record_of(item_id: str, owner: str, store: ResponseStore) -> Record | None:
    token = token_of(item_id)
    return store.load(RESPONSE_PREFIX + token, owner) if token else None


def _call_image(item: dict[str, Any], owner: str, store: ResponseStore,
                image_url: Callable[[str], str]) -> str:
    """The image of a call passed back: its `result`, else the stored response's image."""
    result = item.get("result")
    if isinstance(result, str) and result:
        return "data:image/png;base64," + result.strip()
    record = _record_of(item["id"], owner, store)
    if record is None or not record.image_key:
        raise InvalidRequest(
            f"Image generation call {item['id']!r} was passed back without its `result`, and "
            "no stored response of this key has it (not stored, expired, or another key's). "
            "Pass its `result` too.", param="input", code="image_file_not_found")
    return image_url(record.image_key)


def _referenced(item_id: str, owner: str, store: ResponseStore,
                image_url: Callable[[str], str]) -> str | dict[str, Any]:
    """What an `item_reference` names: an image call's image link, or a message."""
    record = _record_of(item_id, owner, store)
    missing = InvalidRequest(f"Item {item_id!r} was not found among the stored responses of "
                             "this key (not stored, expired, or another key's).", param="input",
                             code="item_not_found")
    if record is None:
        raise missing
    if item_id.startswith("ig_"):
        if not record.image_key:
            raise missing
        return image_url(record.image_key)
    if item_id == message_id(record.id):
        return {"role": "assistant", "content": _output_text(record.response)}
    for item in record.input:
        if item.get("id") == item_id and item.get("type") == "message":
            return _chat_message(item)
    raise missing
