"""Tests for flux_worker.generation.prompt: prompt parsing, size resolution, the size field."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flux_worker.catalog.spec import ModelSpec, SizeRange
from flux_worker.catalog.workers_ai import CATALOG
from flux_worker.errors import InvalidRequest
from flux_worker.generation.prompt import ParsedPrompt, parse_prompt
from flux_worker.generation.sizes import (
    DEFAULT_SIZE,
    PRESETS,
    ResolvedSize,
    SizeSpec,
    parse_size_param,
    resolve_size,
)

MODELS = {spec.short_name: spec for spec in CATALOG}
SCHNELL = MODELS["flux-1-schnell"]          # no size control: limits 64..1024
LUCID = MODELS["lucid-origin"]              # size control: 256..2500
SDXL = MODELS["sdxl-lightning"]             # size control: 256..2048
FLUX2 = MODELS["flux-2-dev"]                # size control: 256..1920

FAST = settings(max_examples=200, deadline=None)


def ratio_of(parsed: ParsedPrompt) -> tuple[int, int] | None:
    return parsed.size.ratio if parsed.size else None


# --- parse_prompt: ratios at the end ---------------------------------------------------------

@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_each_preset_at_the_end_is_a_size(preset):
    parsed = parse_prompt(f"a cute cat {preset}")
    assert parsed.text == "a cute cat"
    assert ratio_of(parsed) == tuple(int(n) for n in preset.split(":"))
    assert parsed.size.source == preset
    assert parsed.size.width is None and parsed.size.height is None


def test_plain_prompt_has_no_size():
    assert parse_prompt("a cute cat") == ParsedPrompt(text="a cute cat")


@pytest.mark.parametrize("prompt", [
    "a meeting at 10:30", "sunrise at 6:45", "at 12:15", "lunch at 12:00", "dawn 06:45",
    "the train leaves at 9:21", "a clock showing 23:59", "timer 1:05",
])
def test_times_of_day_are_not_sizes(prompt):
    assert parse_prompt(prompt) == ParsedPrompt(text=prompt)


@pytest.mark.parametrize("prompt, ratio", [
    ("a wide city 21:9", (21, 9)),
    ("a portrait 4:5", (4, 5)),
    ("a monitor 16:10", (16, 10)),
    ("a phone 10:16", (10, 16)),
    ("a banner 32:18", (32, 18)),   # cannot be a time: hour above 24
    ("a tall tower 1:8", (1, 8)),
    ("a strip 8:1", (8, 1)),
    ("a poster 2:3", (2, 3)),
])
def test_other_ratios_at_the_end(prompt, ratio):
    parsed = parse_prompt(prompt)
    assert ratio_of(parsed) == ratio
    assert parsed.text == prompt.rsplit(" ", 1)[0]


@pytest.mark.parametrize("prompt", ["a strip 9:1", "a strip 1:9", "a thing 100:1", "a 0:1",
                                    "a 3:0", "a cat 65:64"])
def test_ratios_out_of_range_stay_in_the_text(prompt):
    assert parse_prompt(prompt) == ParsedPrompt(text=prompt)


@pytest.mark.parametrize("prompt", [
    "a 16:9 picture of a cat", "16:9 cat", "a cat 16:9.", "a cat,16:9", "a cat16:9",
])
def test_ratio_not_at_the_end_or_not_a_word_stays(prompt):
    assert parse_prompt(prompt).size is None
    assert parse_prompt(prompt).text == prompt


def test_full_width_colon():
    parsed = parse_prompt("一只可爱的猫 16：9")
    assert parsed.text == "一只可爱的猫"
    assert ratio_of(parsed) == (16, 9)
    assert parsed.size.source == "16：9"


def test_ratio_alone_leaves_empty_text():
    parsed = parse_prompt("16:9")
    assert parsed.text == "" and ratio_of(parsed) == (16, 9)


def test_trailing_whitespace_and_newlines():
    parsed = parse_prompt("  a   cute\t cat \n on a  mat  3:4 \n")
    assert parsed.text == "a cute cat\non a mat"
    assert ratio_of(parsed) == (3, 4)


# --- parse_prompt: explicit sizes and --ar ---------------------------------------------------

@pytest.mark.parametrize("token, size", [
    ("1920x1080", (1920, 1080)), ("1024X768", (1024, 768)), ("800×600", (800, 600)),
    ("512*512", (512, 512)), ("64x4096", (64, 4096)),
])
def test_explicit_size_at_the_end(token, size):
    parsed = parse_prompt(f"a cat {token}")
    assert parsed.text == "a cat"
    assert (parsed.size.width, parsed.size.height) == size
    assert parsed.size.ratio is None
    assert parsed.size.source == token


@pytest.mark.parametrize("prompt", ["a cat 32x32", "a cat 5000x1000", "a 1920x1080 cat",
                                    "a cat 0640x480", "a cat 2x4"])
def test_explicit_size_out_of_range_or_in_the_middle_stays(prompt):
    assert parse_prompt(prompt) == ParsedPrompt(text=prompt)


@pytest.mark.parametrize("prompt, source", [
    ("--ar 21:9 a cat", "--ar 21:9"),
    ("a --ar 21:9 cat", "--ar 21:9"),
    ("a cat --ar 21:9", "--ar 21:9"),
    ("a cat --aspect 21:9", "--aspect 21:9"),
    ("a cat --ar=21:9", "--ar=21:9"),
    ("a cat --AR 21：9", "--AR 21：9"),
    ("a cat —ar 21:9", "—ar 21:9"),   # phones turn -- into an em dash
])
def test_ar_anywhere(prompt, source):
    parsed = parse_prompt(prompt)
    assert parsed.text == "a cat"
    assert ratio_of(parsed) == (21, 9)
    assert parsed.size.source == source
    assert parsed.options == ("ar",)


def test_ar_accepts_any_terms_up_to_64_and_wins_over_a_trailing_ratio():
    assert ratio_of(parse_prompt("a cat --ar 64:9")) == (64, 9)
    parsed = parse_prompt("a cat --ar 32:18 3:2")
    assert ratio_of(parsed) == (32, 18)
    assert parsed.text == "a cat 3:2"


@pytest.mark.parametrize("prompt", ["a cat --ar 9:1", "a cat --ar 65:64", "a cat --ar wide",
                                    "a cat --ar 16:9x", "a cat --ar"])
def test_malformed_ar_stays(prompt):
    parsed = parse_prompt(prompt)
    assert parsed.text == prompt and parsed.size is None and parsed.options == ()


# --- parse_prompt: other options -------------------------------------------------------------

def test_all_options_in_any_order():
    expected = dict(seed=42, steps=20, negative="dogs, blur", ratio=(16, 9))
    prompts = [
        "a cat --seed 42 --steps 20 --no dogs, blur 16:9",
        "a cat --steps 20 --no dogs, blur --seed 42 16:9",
        "--no dogs, blur --seed 42 a cat --steps 20 16:9",
        "a cat 16:9 --seed 42 --steps 20 --no dogs, blur",
        "a cat --no dogs, blur --steps 20 --ar 16:9 --seed 42",
    ]
    for prompt in prompts:
        parsed = parse_prompt(prompt)
        got = dict(seed=parsed.seed, steps=parsed.steps, negative=parsed.negative,
                   ratio=ratio_of(parsed))
        assert got == expected, prompt
        assert parsed.text == "a cat", prompt
    assert parse_prompt(prompts[0]).options == ("seed", "steps", "no")
    assert parse_prompt(prompts[4]).options == ("no", "steps", "ar", "seed")


def test_option_at_the_start_ends_the_negative_at_the_next_option():
    parsed = parse_prompt("--no dogs --seed 1 a cat")
    # --no runs to the next option; the text after --seed's value is the prompt again.
    assert parsed.negative == "dogs" and parsed.seed == 1 and parsed.text == "a cat"


@pytest.mark.parametrize("prompt", ["a cat --no dogs 16:9", "a cat 16:9 --no dogs"])
def test_negative_with_trailing_ratio(prompt):
    parsed = parse_prompt(prompt)
    assert (parsed.text, parsed.negative, ratio_of(parsed)) == ("a cat", "dogs", (16, 9))


def test_negative_with_trailing_explicit_size_and_time_inside():
    parsed = parse_prompt("a cat --no clocks at 10:30 1920x1080")
    assert parsed.negative == "clocks at 10:30"
    assert (parsed.size.width, parsed.size.height) == (1920, 1080)
    parsed = parse_prompt("a cat --no clocks at 10:30")
    assert parsed.negative == "clocks at 10:30" and parsed.size is None


def test_repeated_options():
    parsed = parse_prompt("a cat --seed 1 --no dogs --seed 2 --no birds")
    assert parsed.seed == 2 and parsed.negative == "dogs, birds"
    assert parsed.options == ("seed", "no")


def test_option_value_boundaries():
    assert parse_prompt("a --seed 0").seed == 0
    assert parse_prompt("a --seed 4294967295").seed == 4294967295
    assert parse_prompt("a --steps 1").steps == 1
    assert parse_prompt("a --steps 100").steps == 100
    assert parse_prompt("a --seed=7").seed == 7


@pytest.mark.parametrize("prompt", [
    "a cat --seed abc", "a cat --seed 4294967296", "a cat --seed -1", "a cat --seed 12abc",
    "a cat --steps 0", "a cat --steps 101", "a cat --steps", "a cat --no", "a cat --no   ",
    "a cat --foo bar", "a cat --seeds 5", "a cat --noise 5", "a cat x--seed 5",
    "a cat --seed 99999999999999999999999999",
])
def test_unknown_and_malformed_options_stay(prompt):
    parsed = parse_prompt(prompt)
    assert parsed.text == prompt.strip()
    assert (parsed.seed, parsed.steps, parsed.negative, parsed.options) == (None, None, None, ())


def test_malformed_option_before_a_ratio():
    parsed = parse_prompt("a cat --seed abc 16:9")
    assert parsed.text == "a cat --seed abc" and ratio_of(parsed) == (16, 9)


def test_options_only_gives_empty_text():
    parsed = parse_prompt("--seed 3 --steps 4 16:9")
    assert parsed.text == "" and parsed.seed == 3 and parsed.steps == 4


@pytest.mark.parametrize("value", ["", " ", "--", "—", ":", "x", "1:", ":1", "--no --no",
                                   "--seed", "16:9 16:9", "\u3000", "a\x00b 1:1"])
def test_odd_inputs_do_not_raise(value):
    assert isinstance(parse_prompt(value), ParsedPrompt)


# --- parse_prompt: properties ----------------------------------------------------------------

# Prompt words without digits, colons or dashes: nothing in them can look like a size or option.
PLAIN_TEXT = st.text(st.characters(blacklist_categories=("Nd", "Cs"),
                                   blacklist_characters=":：-—"), max_size=60)


def normalised(text: str) -> str:
    """The text as parse_prompt normalises it: spaces collapsed per line, ends stripped."""
    return "\n".join(" ".join(line.split()) for line in text.split("\n")).strip()


@FAST
@given(st.text(max_size=200))
def test_parse_prompt_never_raises(text):
    parsed = parse_prompt(text)
    assert isinstance(parsed.text, str)
    assert parsed.text == parsed.text.strip()


@FAST
@given(st.lists(st.sampled_from(["a", "cat", "--seed", "--steps", "--no", "--ar", "16:9", "10:30",
                                 "1920x1080", "3", "=", "\n", "--foo", "：", "x", "64"]),
                max_size=12))
def test_parse_prompt_never_raises_on_option_soup(words):
    parse_prompt(" ".join(words))


@FAST
@given(PLAIN_TEXT, st.sampled_from(sorted(PRESETS)))
def test_any_prompt_followed_by_a_preset(prompt, preset):
    parsed = parse_prompt(f"{prompt} {preset}")
    assert parsed.size is not None
    assert "%d:%d" % parsed.size.ratio == preset
    assert parsed.text == normalised(prompt)


WORDS = st.lists(st.text(string.ascii_lowercase, min_size=1, max_size=8), min_size=1, max_size=5)


@FAST
@given(WORDS, st.integers(0, 4294967295), st.integers(1, 100), WORDS,
       st.permutations(["seed", "steps", "no"]))
def test_removed_options_leave_no_trace(words, seed, steps, negative, order):
    tokens = {"seed": f"--seed {seed}", "steps": f"--steps {steps}",
              "no": "--no " + " ".join(negative)}
    prompt = " ".join(words) + " " + " ".join(tokens[name] for name in order)
    parsed = parse_prompt(prompt)
    assert (parsed.seed, parsed.steps) == (seed, steps)
    assert parsed.negative == " ".join(negative)
    assert parsed.text == " ".join(words)
    assert "--" not in parsed.text
    assert parsed.options == tuple(order)


# --- resolve_size ----------------------------------------------------------------------------

def ratio(value: str) -> SizeSpec:
    return parse_size_param(value)


def test_default_size():
    assert DEFAULT_SIZE == PRESETS["1:1"] == (1024, 1024)
    for model in CATALOG:
        assert resolve_size(None, model) == ResolvedSize(1024, 1024, "1:1")


@pytest.mark.parametrize("model", [SCHNELL, LUCID, SDXL, FLUX2], ids=lambda m: m.short_name)
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_give_the_worker_sizes(model, preset):
    resolved = resolve_size(parse_prompt(f"a cat {preset}").size, model)
    assert (resolved.width, resolved.height) == PRESETS[preset]
    assert resolved.ratio_label == preset
    assert (resolved.width, resolved.height) == PRESETS[preset]


def test_preset_scaled_when_it_does_not_fit():
    small = ModelSpec("x", ("x",), "o", "d", size=SizeRange(64, 800))
    assert resolve_size(ratio("16:9"), small) == ResolvedSize(800, 450, "16:9")
    big_min = ModelSpec("y", ("y",), "o", "d", size=SizeRange(600, 2048))
    assert resolve_size(ratio("16:9"), big_min) == ResolvedSize(1067, 600, "16:9")


def test_typed_ratio_reduced_to_a_preset():
    assert resolve_size(ratio("32:18"), SCHNELL) == ResolvedSize(1024, 576, "16:9")
    assert resolve_size(parse_prompt("a --ar 2:2").size, SDXL) == ResolvedSize(1024, 1024, "1:1")


@pytest.mark.parametrize("model", [SCHNELL, LUCID, SDXL], ids=lambda m: m.short_name)
def test_other_ratios_long_side_1024_multiple_of_8(model):
    resolved = resolve_size(ratio("21:9"), model)
    assert resolved == ResolvedSize(1024, 440, "7:3")
    resolved = resolve_size(ratio("4:5"), model)
    assert resolved == ResolvedSize(816, 1024, "4:5")


def test_thin_ratio_raises_the_short_side_to_the_minimum():
    # schnell's minimum is 64, so 1:8 fits at 128x1024.
    assert resolve_size(ratio("1:8"), SCHNELL) == ResolvedSize(128, 1024, "1:8")
    # SDXL's minimum is 256: the short side becomes 256 and the long side grows to 2048.
    assert resolve_size(ratio("8:1"), SDXL) == ResolvedSize(2048, 256, "8:1")
    # FLUX.2 caps the long side at 1920, so the shape is as close as the limits allow.
    resolved = resolve_size(ratio("1:8"), FLUX2)
    assert (resolved.width, resolved.height) == (256, 1920)
    assert resolved.ratio_label == "2:15"


def test_explicit_size_exact_when_it_fits():
    assert resolve_size(ratio("1000x700"), LUCID) == ResolvedSize(1000, 700, "10:7")
    assert resolve_size(ratio("1920x1080"), SDXL) == ResolvedSize(1920, 1080, "16:9")
    assert resolve_size(ratio("1000x700"), SCHNELL) == ResolvedSize(1000, 700, "10:7")
    assert resolve_size(ratio("64x64"), SCHNELL) == ResolvedSize(64, 64, "1:1")


def test_explicit_size_scaled_to_fit():
    assert resolve_size(ratio("1920x1080"), SCHNELL) == ResolvedSize(1024, 576, "16:9")
    assert resolve_size(ratio("4096x4096"), SDXL) == ResolvedSize(2048, 2048, "1:1")
    assert resolve_size(ratio("64x64"), LUCID) == ResolvedSize(256, 256, "1:1")
    assert resolve_size(ratio("3000x2000"), LUCID) == ResolvedSize(2500, 1667, "3:2")


def test_explicit_size_too_thin_for_the_limits_is_clamped():
    resolved = resolve_size(ratio("4096x64"), SDXL)
    assert (resolved.width, resolved.height) == (2048, 256)
    assert resolved.ratio_label == "8:1"


def test_ratio_label_uses_small_numbers():
    assert resolve_size(ratio("1366x768"), LUCID).ratio_label == "16:9"
    assert resolve_size(ratio("1023x767"), LUCID).ratio_label == "4:3"
    assert resolve_size(ratio("1024x576"), LUCID).ratio_label == "16:9"


SIZE_SPECS = st.one_of(
    st.tuples(st.integers(1, 64), st.integers(1, 64))
      .filter(lambda r: max(r) <= 8 * min(r))
      .map(lambda r: SizeSpec(ratio=r, width=None, height=None, source="%d:%d" % r)),
    st.tuples(st.integers(64, 4096), st.integers(64, 4096))
      .map(lambda s: SizeSpec(ratio=None, width=s[0], height=s[1], source="%dx%d" % s)),
    st.none(),
)


@FAST
@given(SIZE_SPECS, st.sampled_from(CATALOG))
def test_resolved_size_within_limits_and_close_to_the_ratio(spec, model):
    lo, hi = model.output_limits()
    resolved = resolve_size(spec, model)
    assert lo <= resolved.width <= hi and lo <= resolved.height <= hi
    wanted = (spec.ratio if spec and spec.ratio else
              (spec.width, spec.height) if spec else (1, 1))
    wanted_ratio = wanted[0] / wanted[1]
    got_ratio = resolved.width / resolved.height
    elongation = max(wanted_ratio, 1 / wanted_ratio)
    if elongation <= hi / lo:  # otherwise the limits cannot hold the shape
        assert abs(got_ratio / wanted_ratio - 1) < 0.03
    w, h = (int(n) for n in resolved.ratio_label.split(":"))
    assert abs((w / h) / got_ratio - 1) < 0.03 or elongation > hi / lo


# --- parse_size_param ------------------------------------------------------------------------

@pytest.mark.parametrize("value", [None, "", "auto", "AUTO", "  auto "])
def test_size_param_auto(value):
    assert parse_size_param(value) is None


@pytest.mark.parametrize("value, expected", [
    ("1024x1024", SizeSpec(None, 1024, 1024, "1024x1024")),
    ("1792X1024", SizeSpec(None, 1792, 1024, "1792X1024")),
    ("800×600", SizeSpec(None, 800, 600, "800×600")),
    ("512*768", SizeSpec(None, 512, 768, "512*768")),
    (" 64x4096 ", SizeSpec(None, 64, 4096, "64x4096")),
    ("16:9", SizeSpec((16, 9), None, None, "16:9")),
    ("10:30", SizeSpec((10, 30), None, None, "10:30")),   # no clock times in a size field
    ("1:8", SizeSpec((1, 8), None, None, "1:8")),
    ("4：3", SizeSpec((4, 3), None, None, "4：3")),
])
def test_size_param_valid(value, expected):
    assert parse_size_param(value) == expected


@pytest.mark.parametrize("value", [
    "32x32", "5000x1000", "1024", "big", "1024x", "x1024", "9:1", "0:1", "65:64", "16:9:1",
    "1024x1024px", 1024, 16.9, True, ["1024x1024"], {"width": 1024},
])
def test_size_param_invalid(value):
    with pytest.raises(InvalidRequest) as caught:
        parse_size_param(value)
    assert caught.value.param == "size"
    assert caught.value.message.startswith(
        "size must be WIDTHxHEIGHT such as 1024x576 (each side 64 to 4096), "
        "a ratio such as 16:9 (from 1:8 to 8:1), or auto")
