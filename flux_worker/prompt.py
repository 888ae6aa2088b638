"""Read a chat prompt: the user's text, its size token and its inline options.

A chat client can only send text, so the size and a few generation options travel inside it:

    a cute cat 16:9                     ratio at the end (a time such as `at 10:30` is not one)
    a cute cat 1920x1080                explicit size at the end
    a cute cat --ar 21:9 --seed 42      options anywhere: --ar/--aspect, --seed, --steps, --no

`parse_prompt` never raises: whatever it does not recognise stays in the prompt, so a typo costs
the user nothing worse than a word the model sees. `resolve_size` turns the size request into the
pixel size the client will get for a given model. Pure functions only; no Flask here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from .catalog import ModelSpec
from .errors import InvalidRequest

# The original Worker's size presets, unchanged, so its users get the sizes they know.
PRESETS: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "1:2": (512, 1024),
    "3:2": (768, 512),
    "3:4": (768, 1024),
    "16:9": (1024, 576),
    "9:16": (576, 1024),
}
DEFAULT_SIZE: tuple[int, int] = (1024, 1024)

RATIO_TERM_MAX = 64          # each side of a typed ratio: 1..64
RATIO_MAX = 8                # shapes from 1:8 to 8:1
SIDE_MIN, SIDE_MAX = 64, 4096  # each side of a typed WIDTHxHEIGHT
SEED_MAX = 4294967295
STEPS_MAX = 100
RATIO_TOLERANCE = 0.03       # a result this close to the asked ratio is "that ratio"

# A trailing `W:H` whose second part has two digits looks like a clock time (`at 10:30`), so it
# counts as a ratio only when it is a common screen ratio. 16:10 and 10:16 are the usual laptop
# shapes; 9:21 is left out because `9:21` is at least as likely to be a time. (Presets, such as
# 9:16, always count.) A pair that cannot be a time (hour above 24 or minutes above 59, e.g.
# `32:18`) is a ratio too.
_TWO_DIGIT_RATIOS = frozenset({(16, 10), (10, 16)})

# Sizes are checked in Python (ranges, the time rule); the patterns only find candidates.
# ASCII digits only: `\d` would also take Arabic-Indic and other digits.
# Whitespace is taken possessively (`\s*+`, never given back): prompts reach MAX_BODY_BYTES, and
# every pattern over them must run in linear time (tests/test_linear_regex.py).
_TRAILING_RATIO = re.compile(r"(?:^|(?<=\s))([0-9]{1,4})[:：]([0-9]{1,4})\s*+\Z")
_TRAILING_WXH = re.compile(r"(?:^|(?<=\s))([0-9]{1,5})[xX×*]([0-9]{1,5})\s*+\Z")
_RATIO_VALUE = re.compile(r"\s*+([0-9]{1,4})\s*+[:：]\s*+([0-9]{1,4})\s*+\Z")
_WXH_VALUE = re.compile(r"\s*+([0-9]{1,5})\s*+[xX×*]\s*+([0-9]{1,5})\s*+\Z")

# An option starts at a word boundary with `--`, or `—` (phones turn `--` into an em dash).
_OPTION_START = re.compile(r"(?<!\S)(?:--|—)([A-Za-z][A-Za-z0-9_-]*+)")
# Values of --seed, --steps and --ar: separated by spaces or `=`, ending at whitespace or the end.
# At most 10 digits, so int() never meets a huge number.
_INT_VALUE = re.compile(r"(?:\s++|=)([0-9]{1,10})(?=\s|\Z)")
_AR_VALUE = re.compile(r"(?:\s++|=)([0-9]{1,4})[:：]([0-9]{1,4})(?=\s|\Z)")
_OPTION_NAMES = {"seed": "seed", "steps": "steps", "no": "no", "ar": "ar", "aspect": "ar"}

_HSPACE = re.compile(r"[^\S\n]++")
_SPACE_AROUND_NEWLINE = re.compile(r" ?\n ?")

_EXAMPLE = "such as `a cute cat 16:9`"
_SIZE_FORMS = ("size must be WIDTHxHEIGHT such as 1024x576 (each side 64 to 4096), "
               "a ratio such as 16:9 (from 1:8 to 8:1), or auto")


@dataclass(frozen=True)
class SizeSpec:
    """A size request: a ratio, or an explicit width and height, with the token as typed."""

    ratio: tuple[int, int] | None
    width: int | None
    height: int | None
    source: str


@dataclass(frozen=True)
class ParsedPrompt:
    """A prompt with its size token and inline options taken out."""

    text: str
    size: SizeSpec | None = None
    seed: int | None = None
    steps: int | None = None
    negative: str | None = None
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class ResolvedSize:
    """The pixel size the client gets, and its shape as a short ratio such as 16:9."""

    width: int
    height: int
    ratio_label: str

    @property
    def dimensions(self) -> str:
        """The size as WIDTHxHEIGHT, e.g. 1024x576."""
        return f"{self.width}x{self.height}"


# --- chat messages ---------------------------------------------------------------------------

def last_user_text(messages: Any) -> str:
    """Return the text of the last user message; raise InvalidRequest when there is none."""
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest(
            "messages must be a non-empty list of chat messages: send at least "
            '{"role": "user", "content": "a cute cat 16:9"}.', param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest(
                f"messages[{index}] must be an object with role and content, such as "
                '{"role": "user", "content": "a cute cat 16:9"}.', param="messages")
    index = next((i for i in range(len(messages) - 1, -1, -1)
                  if messages[i].get("role") == "user"), None)
    if index is None:
        raise InvalidRequest(
            'There is no message with role "user": add one that describes the image you want, '
            f"{_EXAMPLE}.", param="messages")
    text = _content_text(messages[index].get("content"), index)
    if not text.strip():
        raise InvalidRequest(
            "The last user message is empty: send a description of the image you want, "
            f"{_EXAMPLE}.", param="messages")
    return text.strip()


def _content_text(content: Any, index: int) -> str:
    """Return the text of one message's content: a string or a list of content parts."""
    if isinstance(content, str):
        return content
    wrong = (f"messages[{index}].content must be a string or a list of content parts such as "
             '{"type": "text", "text": "a cute cat 16:9"}')
    if not isinstance(content, list):
        raise InvalidRequest(f"{wrong}; got {_json_type(content)}.", param="messages")
    texts = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict):
            if part.get("type") != "text":
                continue  # image_url and other parts carry no prompt text
            if not isinstance(part.get("text"), str):
                raise InvalidRequest(f"{wrong}; a text part has no string `text`.",
                                     param="messages")
            texts.append(part["text"])
        else:
            raise InvalidRequest(f"{wrong}; a part is {_json_type(part)}.", param="messages")
    return "\n".join(texts)


def _json_type(value: Any) -> str:
    """Name a JSON value's type the way the client wrote it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return "a string" if isinstance(value, str) else type(value).__name__


# --- prompt parsing --------------------------------------------------------------------------

@dataclass
class _Options:
    """What the inline options of one prompt said, filled in while reading them."""

    size: SizeSpec | None = None
    seed: int | None = None
    steps: int | None = None
    negatives: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)


def parse_prompt(text: str) -> ParsedPrompt:
    """Split a prompt into its text, size token and inline options; never raise."""
    if not isinstance(text, str):
        return ParsedPrompt(text="")
    found = _Options()
    remaining = _remove_options(text, found)
    size = found.size
    if size is None:
        # An explicit --ar wins; a trailing token is then ordinary text, not a second size.
        remaining, size = _peel_trailing_size(remaining)
    return ParsedPrompt(
        text=_normalise(remaining),
        size=size,
        seed=found.seed,
        steps=found.steps,
        negative=", ".join(found.negatives) if found.negatives else None,
        options=tuple(found.names),
    )


def _remove_options(text: str, found: _Options) -> str:
    """Return text without the recognised options, recording what they said in found."""
    starts = list(_OPTION_START.finditer(text))
    kept: list[str] = []
    cursor = 0
    for i, option in enumerate(starts):
        name = _OPTION_NAMES.get(option.group(1).lower())
        if name is None:
            continue  # unknown --foo stays in the prompt
        if name == "no":
            # The negative prompt runs to the next option, known or not, or to the end.
            segment_end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
            end = _take_negative(text, option.end(), segment_end, found)
        else:
            end = _take_value(name, text, option, found)
        if end is None:
            continue  # malformed value: leave the option as typed
        if name not in found.names:
            found.names.append(name)
        kept.append(text[cursor:option.start()])
        cursor = end
    kept.append(text[cursor:])
    return "".join(kept)


def _take_value(name: str, text: str, option: re.Match, found: _Options) -> int | None:
    """Read the value of --seed, --steps or --ar after option; return where it ends, or None."""
    if name == "ar":
        match = _AR_VALUE.match(text, option.end())
        if not match:
            return None
        # The source is the option as typed, from its dashes to the end of the value.
        spec = _ratio_spec(int(match.group(1)), int(match.group(2)),
                           text[option.start():match.end()])
        if spec is None:
            return None
        found.size = spec
        return match.end()
    match = _INT_VALUE.match(text, option.end())
    if not match:
        return None
    value = int(match.group(1))
    if name == "seed" and value <= SEED_MAX:
        found.seed = value
    elif name == "steps" and 1 <= value <= STEPS_MAX:
        found.steps = value
    else:
        return None  # out of range counts as malformed: it stays in the prompt
    return match.end()


def _take_negative(text: str, pos: int, end: int, found: _Options) -> int | None:
    """Read the text of --no from pos up to end; return where the removed part ends, or None."""
    value = text[pos:end]
    if not value or not (value[0].isspace() or value[0] == "="):
        return None
    if end == len(text):
        # `a cat --no dogs 16:9`: the size at the very end belongs to the prompt, not to --no.
        rest, size = _peel_trailing_size(value)
        if size is not None:
            value, end = rest, pos + len(rest)
    words = " ".join(value.removeprefix("=").split())
    if not words:
        return None
    found.negatives.append(words)
    return end


def _peel_trailing_size(text: str) -> tuple[str, SizeSpec | None]:
    """Split a size token off the end of text, if there is one."""
    stripped = text.rstrip()
    match = _TRAILING_RATIO.search(stripped)
    if match:
        width, height = match.group(1), match.group(2)
        if _looks_like_ratio(width, height):
            spec = _ratio_spec(int(width), int(height), match.group(0).strip())
            if spec:
                return stripped[:match.start()], spec
        return text, None
    match = _TRAILING_WXH.search(stripped)
    if match and not match.group(1).startswith("0") and not match.group(2).startswith("0"):
        spec = _pixel_spec(int(match.group(1)), int(match.group(2)), match.group(0).strip())
        if spec:
            return stripped[:match.start()], spec
    return text, None


def _looks_like_ratio(first: str, second: str) -> bool:
    """Tell a trailing ratio from a time of day such as 10:30."""
    if first.startswith("0") or second.startswith("0"):
        return False  # 06:45, 1:05: only times are written with leading zeros
    pair = (int(first), int(second))
    if f"{pair[0]}:{pair[1]}" in PRESETS or len(second) == 1:
        return True  # times always have two-digit minutes
    return pair in _TWO_DIGIT_RATIOS or pair[0] > 24 or pair[1] > 59


def _ratio_spec(width: int, height: int, source: str) -> SizeSpec | None:
    """Return a ratio SizeSpec when both terms are 1..64 and the shape is 1:8..8:1."""
    if not (1 <= width <= RATIO_TERM_MAX and 1 <= height <= RATIO_TERM_MAX):
        return None
    if max(width, height) > RATIO_MAX * min(width, height):
        return None
    return SizeSpec(ratio=(width, height), width=None, height=None, source=source)


def _pixel_spec(width: int, height: int, source: str) -> SizeSpec | None:
    """Return an explicit-size SizeSpec when both sides are 64..4096."""
    if SIDE_MIN <= width <= SIDE_MAX and SIDE_MIN <= height <= SIDE_MAX:
        return SizeSpec(ratio=None, width=width, height=height, source=source)
    return None


def _normalise(text: str) -> str:
    """Collapse runs of spaces, keep line breaks, strip the ends."""
    return _SPACE_AROUND_NEWLINE.sub("\n", _HSPACE.sub(" ", text)).strip()


# --- the Images API `size` field -------------------------------------------------------------

def parse_size_param(value: Any) -> SizeSpec | None:
    """Read the Images API size field; raise InvalidRequest for anything not accepted."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{_SIZE_FORMS}; got {_json_type(value)}.", param="size")
    typed = value.strip()
    if typed.lower() in ("", "auto"):
        return None
    spec = None
    if match := _WXH_VALUE.match(typed):
        spec = _pixel_spec(int(match.group(1)), int(match.group(2)), typed)
    elif match := _RATIO_VALUE.match(typed):
        spec = _ratio_spec(int(match.group(1)), int(match.group(2)), typed)
    if spec is None:
        shown = typed if len(typed) <= 40 else typed[:40] + "…"
        raise InvalidRequest(f"{_SIZE_FORMS}; got `{shown}`.", param="size")
    return spec


# --- size resolution -------------------------------------------------------------------------

def resolve_size(spec: SizeSpec | None, model: ModelSpec) -> ResolvedSize:
    """Return the pixel size for a size request, within the model's output limits."""
    lo, hi = model.output_limits()
    if spec is not None and spec.ratio is not None:
        wanted = _reduce(*spec.ratio)
        preset = PRESETS.get(f"{wanted[0]}:{wanted[1]}")
        width, height = _fit(*preset, lo, hi) if preset else _from_ratio(*wanted, lo, hi)
    elif spec is not None and spec.width and spec.height:
        wanted = _reduce(spec.width, spec.height)
        width, height = _fit(spec.width, spec.height, lo, hi)
    else:
        wanted = (1, 1)
        width, height = _fit(*DEFAULT_SIZE, lo, hi)
    return ResolvedSize(width, height, _label(width, height, wanted))


def _fit(width: int, height: int, lo: int, hi: int) -> tuple[int, int]:
    """Return width x height unchanged when it fits lo..hi, else scaled to fit, then clamped."""
    if lo <= width <= hi and lo <= height <= hi:
        return width, height
    scale = min(1.0, hi / max(width, height))
    if min(width, height) * scale < lo:
        scale = lo / min(width, height)  # too thin for both limits: the minimum wins, then clamp
    return _clamp(round(width * scale), lo, hi), _clamp(round(height * scale), lo, hi)


def _from_ratio(width: int, height: int, lo: int, hi: int) -> tuple[int, int]:
    """Return a size of the given ratio: long side 1024 (or less), both multiples of 8."""
    long_term, short_term = max(width, height), min(width, height)
    long_side = _round8(min(1024, hi), lo, hi)
    short_side = _round8(long_side * short_term / long_term, lo, hi)
    if long_side * short_term / long_term < lo:
        # Too thin at 1024: keep the short side at the minimum and grow the long side.
        short_side = _round8(lo, lo, hi)
        long_side = _round8(short_side * long_term / short_term, lo, hi)
    return (long_side, short_side) if width >= height else (short_side, long_side)


def _round8(value: float, lo: int, hi: int) -> int:
    """Round to a multiple of 8 within lo..hi (to lo..hi itself when no multiple of 8 fits)."""
    rounded = round(value / 8) * 8
    if rounded > hi:
        rounded = hi // 8 * 8
    if rounded < lo:
        rounded = -(-lo // 8) * 8
    return _clamp(rounded, lo, hi)


def _clamp(value: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, value))


def _reduce(width: int, height: int) -> tuple[int, int]:
    divisor = math.gcd(width, height) or 1
    return width // divisor, height // divisor


def _label(width: int, height: int, wanted: tuple[int, int]) -> str:
    """Name the shape: the wanted ratio when the result is close to it, else the result's own."""
    if abs((width / height) / (wanted[0] / wanted[1]) - 1) < RATIO_TOLERANCE:
        return _shape(*wanted)
    return _shape(width, height)


def _shape(width: int, height: int) -> str:
    """Name the shape of width x height in small numbers: 1000x700 is 10:7, 1366x768 is 16:9."""
    reduced = _reduce(width, height)
    if max(reduced) <= RATIO_TERM_MAX:
        return "%d:%d" % reduced
    # `683:384` tells a reader (or an LLM) nothing: take the first short term up to 16 that
    # comes within 1%, else the closest.
    ratio = max(width, height) / min(width, height)
    candidates = [(round(ratio * short), short) for short in range(1, 17)]
    long_term, short_term = next(
        (c for c in candidates if abs(c[0] / c[1] / ratio - 1) < 0.01),
        min(candidates, key=lambda c: abs(c[0] / c[1] / ratio - 1)))
    return f"{long_term}:{short_term}" if width >= height else f"{short_term}:{long_term}"
