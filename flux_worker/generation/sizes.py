"""Image sizes: the presets, the size a request asks for, and the pixel size a model gives.

A size request is a ratio (`16:9`) or an explicit `WIDTHxHEIGHT`, typed in a chat prompt (see
`prompt.py`) or sent in the Images API `size` field (`parse_size_param`). `resolve_size` turns it
into the pixel size the client will get from a given model: the Worker's presets where they fit,
else a size of the asked shape within the model's limits, in multiples of 8. Pure functions.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from ..catalog.spec import ModelSpec, round8
from ..errors import InvalidRequest, json_type_name

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
RATIO_TOLERANCE = 0.03       # a result this close to the asked ratio is "that ratio"

_RATIO_VALUE = re.compile(r"\s*+([0-9]{1,4})\s*+[:：]\s*+([0-9]{1,4})\s*+\Z")
_WXH_VALUE = re.compile(r"\s*+([0-9]{1,5})\s*+[xX×*]\s*+([0-9]{1,5})\s*+\Z")

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
class ResolvedSize:
    """The pixel size the client gets, and its shape as a short ratio such as 16:9."""

    width: int
    height: int
    ratio_label: str


def ratio_spec(width: int, height: int, source: str) -> SizeSpec | None:
    """Return a ratio SizeSpec when both terms are 1..64 and the shape is 1:8..8:1."""
    if not (1 <= width <= RATIO_TERM_MAX and 1 <= height <= RATIO_TERM_MAX):
        return None
    if max(width, height) > RATIO_MAX * min(width, height):
        return None
    return SizeSpec(ratio=(width, height), width=None, height=None, source=source)


def pixel_spec(width: int, height: int, source: str) -> SizeSpec | None:
    """Return an explicit-size SizeSpec when both sides are 64..4096."""
    if SIDE_MIN <= width <= SIDE_MAX and SIDE_MIN <= height <= SIDE_MAX:
        return SizeSpec(ratio=None, width=width, height=height, source=source)
    return None


# --- the Images API `size` field -------------------------------------------------------------

def parse_size_param(value: Any) -> SizeSpec | None:
    """Read the Images API size field; raise InvalidRequest for anything not accepted."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{_SIZE_FORMS}; got {json_type_name(value)}.", param="size")
    typed = value.strip()
    if typed.lower() in ("", "auto"):
        return None
    spec = None
    if match := _WXH_VALUE.match(typed):
        spec = pixel_spec(int(match.group(1)), int(match.group(2)), typed)
    elif match := _RATIO_VALUE.match(typed):
        spec = ratio_spec(int(match.group(1)), int(match.group(2)), typed)
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
    long_side = round8(min(1024, hi), lo, hi)
    short_side = round8(long_side * short_term / long_term, lo, hi)
    if long_side * short_term / long_term < lo:
        # Too thin at 1024: keep the short side at the minimum and grow the long side.
        short_side = round8(lo, lo, hi)
        long_side = round8(short_side * long_term / short_term, lo, hi)
    return (long_side, short_side) if width >= height else (short_side, long_side)


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
    # comes within 1%, else the closest; only when that is 2% off or more, terms up to 64
    # (a near-square 826x851 is 33:34, not a 3%-off 1:1).
    ratio = max(width, height) / min(width, height)

    def off(c: tuple[int, int]) -> float:
        return abs(c[0] / c[1] / ratio - 1)

    candidates = [(round(ratio * short), short) for short in range(1, RATIO_TERM_MAX + 1)]
    small = candidates[:16]
    long_term, short_term = next((c for c in small if off(c) < 0.01), min(small, key=off))
    if off((long_term, short_term)) >= 0.02:
        long_term, short_term = min(candidates, key=off)
    return f"{long_term}:{short_term}" if width >= height else f"{short_term}:{long_term}"
