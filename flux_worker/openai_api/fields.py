"""Every request field that more than one request kind takes, declared once.

A declaration is an `Annotated` type: the value's type, its limits and description (a pydantic
`Field`, which also writes the JSON Schema of the OpenAPI document and of the MCP tools), and a
`Say`: what a client is told when its value is not valid, written from the same limits. The
request models (generation_requests, edit_requests) and the MCP tools' arguments
(mcp.arguments) are made of these types and restate no limit; a model may give a field its own
description where the field means something particular there.

Three limits have owners outside the wire layer, which read them too, and are imported here:
STEPS_MAX (generation.prompt, for an inline `--steps`), SEED_MAX (catalog.spec, for the seeds
the pipeline draws) and OUTPUT_FORMATS (generation.fitting, which encodes them). MAX_IMAGES is
configuration: `Count` reads it from the validation's context as `max_n`, and `bound_n` writes
it into a schema.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BeforeValidator, Field, PlainValidator, ValidationInfo

from ..catalog.spec import SEED_MAX
from ..errors import InvalidRequest
from ..generation.fitting import OUTPUT_FORMATS
from ..generation.prompt import STEPS_MAX
from ..generation.sizes import RATIO_MAX, SIDE_MAX, SIDE_MIN, SizeSpec, parse_size_param
from .wording import Say, worded

# At most this many images go into one edit (FLUX.2 takes four references).
MAX_EDIT_IMAGES = 4
# The widest guidance scale any model's range reaches; each model clamps to its own.
GUIDANCE_MAX = 100
# A bound on an edit's instruction, far above any model's prompt limit, so that a form field
# cannot carry megabytes into the pipeline before the model's own limit is checked.
EDIT_PROMPT_MAX = 32000

# The output formats, as answered (`jpg` is accepted and means `jpeg`).
FORMATS = tuple(dict.fromkeys(OUTPUT_FORMATS.values()))


def one_of(values: tuple[str, ...] | list[str]) -> str:
    """Quote choices for a message: `"a", "b" or "c"`."""
    quoted = [f'"{value}"' for value in values]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _blank_is_none(value: Any) -> Any:
    """Strip a string; an empty one means the field was not given."""
    return (value.strip() or None) if isinstance(value, str) else value


def _empty_is_none(value: Any) -> Any:
    """An empty string means the field was not given (forms and some clients send one)."""
    return None if value == "" else value


# `{ge}` and `{le}` are filled in from the field's own limits (see wording.py).
WHOLE_NUMBER = Say("must be a whole number from {ge} to {le}.")

# OpenAI's fields with no meaning here: declared so that the OpenAPI document lists them.
IGNORED = "Accepted and ignored (OpenAI compatibility)."
Ignored = Annotated[Any, Field(description=IGNORED)]
NUMBER = Say("must be a number from {ge} to {le}.")


# --- the prompt -------------------------------------------------------------------------------

# `\S`: a prompt of spaces is as empty as no prompt. (pydantic searches, it does not match.)
Prompt = Annotated[str, Field(
    min_length=1, pattern=r"\S",
    description="What the image shows. Inline options such as `--seed 42` and a trailing ratio "
                "work here too."),
    Say('is required: send a text description of the image, such as "a cute cat".')]

EditPrompt = Annotated[str, Field(
    min_length=1, max_length=EDIT_PROMPT_MAX, pattern=r"\S",
    description="The change to make, such as `make it blue`."),
    Say('is required: describe the change you want (at most {max_length} characters), such as '
        '"make it blue".')]

NegativePrompt = Annotated[str | None, BeforeValidator(_blank_is_none), Field(
    description="What the image must not show, for models that take one."),
    Say("must be a string.")]


# --- which model, how many, which size ----------------------------------------------------

ModelName = Annotated[str | None, BeforeValidator(_blank_is_none), Field(
    description="An offered model id or alias."),
    Say("must be a string.")]


def _one_if_null(value: Any) -> Any:
    return 1 if value is None else value


def _at_most_max_n(value: int, info: ValidationInfo) -> int:
    limit = (info.context or {}).get("max_n")
    if limit is not None and value > limit:
        raise ValueError("more than MAX_IMAGES")  # worded by the Say below
    return value


# The upper bound is the server's MAX_IMAGES, so it comes with each validation as the context
# {"max_n": ...} and is written into schemas by `bound_n`, never fixed here.
Count = Annotated[int, Field(ge=1, description="How many images (1 to MAX_IMAGES)."),
                  BeforeValidator(_one_if_null,
                                  json_schema_input_type=Annotated[int, Field(ge=1)] | None),
                  AfterValidator(_at_most_max_n),
                  Say("must be a whole number from {ge} to {max_n}.")]


def _size_spec(value: Any) -> SizeSpec | None:
    try:
        return parse_size_param(value)
    except InvalidRequest as exc:  # sizes.py words what a size may be
        raise worded(exc.message, "size") from None


def _size_text(value: Any) -> str | None:
    _size_spec(value)
    return (value.strip() or None) if isinstance(value, str) else None


_SIZE_SAY = Say('must be `WIDTHxHEIGHT` such as "1024x576", a ratio such as "16:9", or "auto".')

# The size as the generation pipeline takes it.
Size = Annotated[SizeSpec | None, PlainValidator(_size_spec, json_schema_input_type=str | None),
                 Field(description=f"`WIDTHxHEIGHT` (each side {SIDE_MIN} to {SIDE_MAX}, "
                                   "scaled into the model's limits), a ratio such as `16:9` "
                                   f"(from 1:{RATIO_MAX} to {RATIO_MAX}:1), or `auto`.",
                       examples=["1024x576", "16:9", "auto"]),
                 _SIZE_SAY]

# The same field kept as the text sent (edits read it later, with the input's proportions).
SizeText = Annotated[str | None, PlainValidator(_size_text, json_schema_input_type=str | None),
                     Field(description="`WIDTHxHEIGHT`, a ratio such as `16:9`, or `auto`."),
                     _SIZE_SAY]


# --- the answer's form ----------------------------------------------------------------------

ResponseFormat = Annotated[Literal["url", "b64_json"] | None, BeforeValidator(_empty_is_none),
                           Field(description="Unset: `b64_json` for the GPT image names "
                                             "(GPT_IMAGE_ALIASES), `url` for the DALL·E names, "
                                             "and IMAGE_RESPONSE_FORMAT (default both fields in "
                                             "each item) for this service's own model names."),
                           Say(f"must be {one_of(['url', 'b64_json'])}.")]


def _format_alias(value: Any) -> Any:
    # Case-insensitive, and `jpg` is `jpeg`: clients write both.
    return OUTPUT_FORMATS.get(value.lower(), value) if isinstance(value, str) else value


if TYPE_CHECKING:
    OutputName = str
    OutputAlias = str
else:  # the Literals are made from OUTPUT_FORMATS, which mypy cannot read as types
    OutputName = Literal[FORMATS]
    OutputAlias = Literal[tuple(OUTPUT_FORMATS)]

OutputFormat = Annotated[OutputName | None,
                         BeforeValidator(_format_alias,
                                         json_schema_input_type=OutputAlias | None),
                         Field(description="The image format: " + one_of(FORMATS)
                                           + " (`jpg` means `jpeg`)."),
                         Say(f"must be {one_of(FORMATS)}.")]


# --- GPT-image options (OpenAI's names; what each means here is in the README) ------------

# `quality` as clients send it: GPT image tiers, and DALL·E 3's `hd`/`standard`.
QualityName = Literal["auto", "low", "medium", "high", "hd", "standard"]
BackgroundName = Literal["auto", "opaque", "transparent"]
ModerationName = Literal["auto", "low"]
FidelityName = Literal["low", "high"]
QUALITIES: tuple[str, ...] = get_args(QualityName)
BACKGROUNDS: tuple[str, ...] = get_args(BackgroundName)
MODERATIONS: tuple[str, ...] = get_args(ModerationName)
FIDELITIES: tuple[str, ...] = get_args(FidelityName)
PARTIAL_IMAGES_MAX = 3


def _lower(value: Any) -> Any:
    """Strip and lower a string; an empty one means the field was not given."""
    return (value.strip().lower() or None) if isinstance(value, str) else value


Quality = Annotated[QualityName | None, BeforeValidator(_lower), Field(
    description="`low`, `medium` or `high` pick the model's diffusion steps (half, FLUX_NUM_STEPS, "
                "twice; an explicit `steps` wins; fixed-step models draw the same); `auto` is "
                "`medium`; DALL·E's `hd` is `high` and `standard` is `medium`."),
    Say(f"must be {one_of(QUALITIES)}.")]

Background = Annotated[BackgroundName | None, BeforeValidator(_lower), Field(
    description="`auto` and `opaque` draw as usual; `transparent` is refused by models that "
                "cannot draw transparency (all of Workers AI's)."),
    Say(f"must be {one_of(BACKGROUNDS)}.")]

OutputCompression = Annotated[int | None, Field(
    ge=0, le=100, description="JPEG and WebP encoding quality, 0 (smallest file) to 100 (best "
                              "image); no effect on PNG."),
    WHOLE_NUMBER]

Moderation = Annotated[ModerationName | None, BeforeValidator(_lower), Field(
    description="Accepted for compatibility: Workers AI applies its own filters."),
    Say(f"must be {one_of(MODERATIONS)}.")]

InputFidelity = Annotated[FidelityName | None, BeforeValidator(_lower), Field(
    description="Accepted for compatibility: an edit always keeps what its model keeps."),
    Say(f"must be {one_of(FIDELITIES)}.")]

def _false_if_null(value: Any) -> Any:
    return False if value is None else value


Stream = Annotated[bool, BeforeValidator(_false_if_null, json_schema_input_type=bool | None),
                   Field(
    description="Answer as server-sent events: one `*.completed` event per image (the image as "
                "`b64_json`, its link as `url`), comments as heartbeats while it is drawn."),
                   Say("must be true or false.")]

PartialImages = Annotated[int | None, Field(
    ge=0, le=PARTIAL_IMAGES_MAX, description="Accepted; no partial image is ever sent (Workers "
                                             "AI makes none), only the final one."),
    WHOLE_NUMBER]


# --- generation options ---------------------------------------------------------------------

Seed = Annotated[int | None, Field(ge=0, le=SEED_MAX, description="Where the model takes a seed."),
                 WHOLE_NUMBER]
Steps = Annotated[int | None, Field(ge=1, le=STEPS_MAX,
                                    description="Diffusion steps, clamped to the model's range."),
                  WHOLE_NUMBER]
Guidance = Annotated[float | None, Field(ge=0, le=GUIDANCE_MAX,
                                         description="Where the model takes it."),
                     NUMBER]
Strength = Annotated[float | None, Field(ge=0, le=1, description=(
    "img2img and inpainting: how far the result may move from the source, 0 (unchanged) to 1 "
    "(ignore it).")), NUMBER]


# --- the fields in a schema ---------------------------------------------------------------

def bound_n(schema: dict[str, Any], max_n: int) -> dict[str, Any]:
    """Write MAX_IMAGES into the `n` property of an object schema (in place, and returned)."""
    n = schema.get("properties", {}).get("n")
    if n is not None:
        for choice in n.get("anyOf", [n]):
            if choice.get("type") == "integer":
                choice["maximum"] = max_n
    return schema


def without_nulls(schema: dict[str, Any]) -> dict[str, Any]:
    """An object schema whose optional properties may be left out but are never null.

    For inputs where null cannot be written (form fields) or is best not offered (tool
    arguments, which models fill more reliably from plain types). Titles go too: the property
    names say it.
    """
    properties = {}
    for name, prop in schema.get("properties", {}).items():
        prop = {k: v for k, v in prop.items() if k != "title"}
        if "anyOf" in prop:
            choices = [c for c in prop.pop("anyOf") if c != {"type": "null"}]
            prop = {**choices[0], **prop} if len(choices) == 1 else {**prop, "anyOf": choices}
        if isinstance(prop.get("type"), list):
            kinds = [kind for kind in prop["type"] if kind != "null"]
            prop["type"] = kinds[0] if len(kinds) == 1 else kinds
        if "default" in prop and prop["default"] is None:
            del prop["default"]
        properties[name] = prop
    rest = {k: v for k, v in schema.items()
            if k not in ("type", "title", "description", "properties")}
    return {"type": "object", "properties": properties, **rest}
