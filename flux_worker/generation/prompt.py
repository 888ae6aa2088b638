"""Read a prompt: its trailing size token and its inline options.

A chat client can only send text, so the size and a few generation options travel inside it:

    a cute cat 16:9                     ratio at the end (a time such as `at 10:30` is not one)
    a cute cat 1920x1080                explicit size at the end
    a cute cat --ar 21:9 --seed 42      options anywhere: --ar/--aspect, --seed, --steps, --no

`parse_prompt` never raises: whatever it does not recognise stays in the prompt, so a typo costs
the user nothing worse than a word the model sees. What a size request means in pixels for a
model is `sizes.py`'s business. Pure functions only; no Flask here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..catalog.spec import SEED_MAX
from .sizes import PRESETS, SizeSpec, pixel_spec, ratio_spec

STEPS_MAX = 100

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

# An option starts at a word boundary with `--`, or `—` (phones turn `--` into an em dash).
_OPTION_START = re.compile(r"(?<!\S)(?:--|—)([A-Za-z][A-Za-z0-9_-]*+)")
# Values of --seed, --steps and --ar: separated by spaces or `=`, ending at whitespace or the end.
# At most 10 digits, so int() never meets a huge number.
_INT_VALUE = re.compile(r"(?:\s++|=)([0-9]{1,10})(?=\s|\Z)")
_AR_VALUE = re.compile(r"(?:\s++|=)([0-9]{1,4})[:：]([0-9]{1,4})(?=\s|\Z)")
_OPTION_NAMES = {"seed": "seed", "steps": "steps", "no": "no", "ar": "ar", "aspect": "ar"}

_HSPACE = re.compile(r"[^\S\n]++")
_SPACE_AROUND_NEWLINE = re.compile(r" ?\n ?")


@dataclass(frozen=True)
class ParsedPrompt:
    """A prompt with its size token and inline options taken out."""

    text: str
    size: SizeSpec | None = None
    seed: int | None = None
    steps: int | None = None
    negative: str | None = None
    options: tuple[str, ...] = ()


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
        spec = ratio_spec(int(match.group(1)), int(match.group(2)),
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
            spec = ratio_spec(int(width), int(height), match.group(0).strip())
            if spec:
                return stripped[:match.start()], spec
        return text, None
    match = _TRAILING_WXH.search(stripped)
    if match and not match.group(1).startswith("0") and not match.group(2).startswith("0"):
        spec = pixel_spec(int(match.group(1)), int(match.group(2)), match.group(0).strip())
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


def _normalise(text: str) -> str:
    """Collapse runs of spaces, keep line breaks, strip the ends."""
    return _SPACE_AROUND_NEWLINE.sub("\n", _HSPACE.sub(" ", text)).strip()


