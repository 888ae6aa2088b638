"""The one place a validation error becomes the 400 a client reads.

Every request kind (chat completions, images generations, edits and variations, as JSON or as
multipart form fields) and every MCP tool call is validated by a pydantic model, and every
failure leaves through `invalid_request`. pydantic's own phrasing ("Input should be ...",
"Field required", ...) never reaches a client: it names pydantic's types, not the field, and
says nothing of what to send. Instead each field declares a `Say` next to its limits (see
fields.py), so the message and the limit come from one declaration.

How a message is chosen, for the first error pydantic reports:
- an error a validator raised with `worded(...)`: its message and param, as they are;
- no location at all: the body is no JSON object;
- otherwise the `Say` of the deepest field on the error's path (`stream_options.include_usage`
  before `stream_options`), whose dotted path is the error's `param`.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from ..errors import InvalidRequest

Model = TypeVar("Model", bound=BaseModel)

_LIMIT_NAMES = ("ge", "le", "gt", "lt", "min_length", "max_length")
# The type of the errors `worded` raises, which `invalid_request` passes on unchanged.
WORDED = "worded"


@dataclass(frozen=True)
class Say:
    """What a client is told when its value for a field is not valid.

    `text` follows the field's name: `Say("must be true or false.")` on `stream` reads
    "`stream` must be true or false.". In it, `{ge}`, `{le}`, `{min_length}` and `{max_length}`
    are the field's own limits, so a limit is written once, in its `Field`; `{max_n}` and any
    other key of the validation's context are filled in from there. A callable gets the error's
    location and the data sent and returns the whole message, for fields whose message depends
    on where inside them it failed.
    """

    text: str | Callable[[tuple[int | str, ...], Any], str]


def worded(message: str, param: str | None, code: str | None = None) -> PydanticCustomError:
    """An error, for a validator to raise, whose message is already what the client reads."""
    return PydanticCustomError(WORDED, "{message}",
                               {"message": message, "param": param, "code": code})


def validate(model: type[Model], data: Any, context: Mapping[str, Any] | None = None) -> Model:
    """Validate `data` into `model`; raise InvalidRequest saying what to send."""
    context = dict(context or {})
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise invalid_request(model, data, exc.errors(), context) from None


def invalid_request(model: type[BaseModel], data: Any, errors: list[ErrorDetails],
                    context: Mapping[str, Any]) -> InvalidRequest:
    """Turn the first validation error into the InvalidRequest a client sees."""
    error = errors[0]
    loc = tuple(error["loc"])
    ctx = error.get("ctx") or {}
    if error["type"] == WORDED:
        return InvalidRequest(ctx["message"], param=ctx["param"], code=ctx.get("code"))
    if not loc:
        example = getattr(model, "BODY_EXAMPLE", '{"prompt": "a cute cat"}')
        return InvalidRequest(f"The request body must be a JSON object, such as {example}.")
    said, param, limits = _say_for(model, loc)
    if said is None:
        # Every field declares a Say (tests/test_fields.py checks it); this is the safety net.
        param = param or str(loc[0])
        return InvalidRequest(f"`{param}` has a value this API does not accept: see its "
                              "description in GET /openapi.json.", param=param)
    if callable(said.text):
        return InvalidRequest(said.text(loc, data), param=param)
    text = said.text
    for name, value in {**limits, **context}.items():  # not str.format: examples hold braces
        text = text.replace("{" + name + "}", str(value))
    return InvalidRequest(f"`{param}` {text}", param=param)


def _say_for(model: type[BaseModel], loc: tuple[int | str, ...]
             ) -> tuple[Say | None, str, dict[str, Any]]:
    """The deepest Say on the error's path, its dotted field path, and that field's limits."""
    said: Say | None = None
    param = ""
    limits: dict[str, Any] = {}
    names: list[str] = []
    candidates: list[type[BaseModel]] = [model]
    for part in loc:
        owner = next((m for m in candidates if isinstance(part, str) and part in m.model_fields),
                     None)
        if owner is None:
            continue  # a list index, or the tag pydantic gives a member of a union
        info = owner.model_fields[str(part)]
        names.append(str(part))
        found = next((m for m in info.metadata if isinstance(m, Say)), None)
        if found is not None:
            said, param, limits = found, ".".join(names), _limits(info.metadata)
        candidates = _models_in(info.annotation)
    return said, param or ".".join(names), limits


def _limits(metadata: list[Any]) -> dict[str, Any]:
    """A field's declared bounds by name (`ge`, `le`, `min_length`, ...), as its Field gave them."""
    limits = {}
    for item in metadata:
        for name in _LIMIT_NAMES:
            if getattr(item, name, None) is not None:
                limits[name] = getattr(item, name)
    return limits


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The models a field's type holds (in lists, unions and Annotated), to follow a path."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Annotated:
        args = args[:1]
    elif not (args and (typing.get_origin(annotation) in (typing.Union, types.UnionType, list,
                                                          tuple))):
        return found
    for arg in args:
        found.extend(_models_in(arg))
    return found
