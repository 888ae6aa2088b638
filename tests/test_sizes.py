"""flux_worker.generation.sizes on its own: the bounds of a size request, the size field's
messages, and what resolve_size gives for every model of the catalog.

tests/test_prompt.py covers sizes as prompts and the size field use them (presets on four
models, scaling, thin shapes, the ratio label's small numbers, a property test over limits);
this file covers what it leaves out.
"""

from __future__ import annotations

import pytest

from flux_worker.catalog.workers_ai import CATALOG
from flux_worker.errors import InvalidRequest
from flux_worker.generation.sizes import (
    PRESETS,
    ResolvedSize,
    SizeSpec,
    parse_size_param,
    pixel_spec,
    ratio_spec,
    resolve_size,
)

MODELS = {spec.short_name: spec for spec in CATALOG}
LUCID = MODELS["lucid-origin"]              # size control: 256..2500
SDXL = MODELS["sdxl-lightning"]             # size control: 256..2048

# Every ratio a request may ask for: both terms 1..64, from 1:8 to 8:1.
ALL_RATIOS = [(w, h) for w in range(1, 65) for h in range(1, 65) if max(w, h) <= 8 * min(w, h)]


def _reduced(width: int, height: int) -> tuple[int, int]:
    for divisor in range(min(width, height), 0, -1):
        if width % divisor == 0 and height % divisor == 0:
            return width // divisor, height // divisor
    raise AssertionError("unreachable")


# --- the bounds of a request -----------------------------------------------------------------

@pytest.mark.parametrize("width, height", [(1, 1), (64, 64), (64, 8), (8, 64), (1, 8), (8, 1)])
def test_ratio_terms_up_to_64_and_shapes_up_to_8_to_1_are_ratios(width, height):
    assert ratio_spec(width, height, "t") == SizeSpec((width, height), None, None, "t")


@pytest.mark.parametrize("width, height", [(0, 1), (1, 0), (65, 65), (65, 64), (1, 9), (9, 1),
                                           (64, 7)])
def test_ratio_terms_or_shapes_beyond_the_bounds_are_not(width, height):
    assert ratio_spec(width, height, "t") is None


@pytest.mark.parametrize("width, height", [(64, 64), (4096, 4096), (64, 4096), (4096, 64)])
def test_sides_from_64_to_4096_are_pixel_sizes(width, height):
    assert pixel_spec(width, height, "t") == SizeSpec(None, width, height, "t")


@pytest.mark.parametrize("width, height", [(63, 64), (64, 63), (4097, 4096), (4096, 4097),
                                           (0, 0)])
def test_sides_beyond_the_bounds_are_not(width, height):
    assert pixel_spec(width, height, "t") is None


# --- the Images API size field -----------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    (" 1024 x 576 ", SizeSpec(None, 1024, 576, "1024 x 576")),
    ("16 : 9", SizeSpec((16, 9), None, None, "16 : 9")),
    ("\t3:2\n", SizeSpec((3, 2), None, None, "3:2")),
])
def test_size_field_allows_spaces_around_the_separator(value, expected):
    assert parse_size_param(value) == expected


def test_size_field_quotes_a_long_value_cut_at_40_characters():
    value = "a" * 39 + "bcdefghij"
    with pytest.raises(InvalidRequest) as caught:
        parse_size_param(value)
    assert caught.value.message.endswith("; got `" + "a" * 39 + "b…`.")
    assert value not in caught.value.message


@pytest.mark.parametrize("value, named", [(1024, "a number"), (16.9, "a number"),
                                          (True, "a boolean"), (["16:9"], "a list"),
                                          ({"width": 1024}, "an object")])
def test_size_field_names_the_json_type_it_got(value, named):
    with pytest.raises(InvalidRequest) as caught:
        parse_size_param(value)
    assert caught.value.message.endswith(f"; got {named}.")
    assert caught.value.param == "size"


# --- resolve_size on every model -------------------------------------------------------------

@pytest.mark.parametrize("model", CATALOG, ids=lambda m: m.short_name)
def test_presets_are_the_worker_sizes_on_every_model(model):
    lo, hi = model.output_limits()
    for label, size in PRESETS.items():
        assert lo <= min(size) and max(size) <= hi, (label, lo, hi)
        resolved = resolve_size(ratio_spec(*map(int, label.split(":")), label), model)
        assert resolved == ResolvedSize(*size, label)


@pytest.mark.parametrize("model", CATALOG, ids=lambda m: m.short_name)
def test_other_ratios_are_multiples_of_8_with_a_long_side_of_1024(model):
    lo, hi = model.output_limits()
    for width, height in ALL_RATIOS:
        reduced = _reduced(width, height)
        if "%d:%d" % reduced in PRESETS:
            continue
        got = resolve_size(ratio_spec(width, height, f"{width}:{height}"), model)
        shown = (model.short_name, width, height, got)
        assert got.width % 8 == 0 and got.height % 8 == 0, shown
        assert lo <= got.width <= hi and lo <= got.height <= hi, shown
        assert (got.width >= got.height) == (width >= height), shown
        short, long = min(reduced), max(reduced)
        if 1024 * short / long >= lo:       # not too thin: the long side is 1024
            assert max(got.width, got.height) == min(1024, hi), shown


@pytest.mark.parametrize("ratio, same_as", [((2, 4), (1, 2)), ((32, 64), (1, 2)),
                                            ((14, 6), (7, 3)), ((63, 27), (7, 3)),
                                            ((10, 8), (5, 4))])
def test_equal_ratios_resolve_alike(ratio, same_as):
    for model in (MODELS["flux-1-schnell"], SDXL, LUCID):
        assert (resolve_size(ratio_spec(*ratio, "a"), model)
                == resolve_size(ratio_spec(*same_as, "b"), model))


def test_an_explicit_size_too_large_keeps_its_shape_and_label():
    assert resolve_size(pixel_spec(4000, 3000, "4000x3000"), SDXL) == ResolvedSize(
        2048, 1536, "4:3")
    assert resolve_size(pixel_spec(3000, 4000, "3000x4000"), SDXL) == ResolvedSize(
        1536, 2048, "3:4")


def test_a_shape_without_small_numbers_is_named_by_the_closest_one():
    # 613/301 is 2.0365: no short term up to 16 comes within 1%, so the closest wins (33/16).
    assert resolve_size(pixel_spec(301, 613, "301x613"), LUCID) == ResolvedSize(
        301, 613, "16:33")
    assert resolve_size(pixel_spec(613, 301, "613x301"), LUCID).ratio_label == "33:16"


def test_a_near_square_size_is_not_named_1_1_when_3_percent_off():
    # Found by the property test: 826x851 is 2.9% from square; "1:1" would misname it.
    resolved = resolve_size(SizeSpec(None, 826, 851, "826x851"), CATALOG[0])
    w, h = (int(n) for n in resolved.ratio_label.split(":"))
    assert abs((w / h) / (826 / 851) - 1) < 0.01
