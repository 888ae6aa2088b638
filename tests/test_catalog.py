"""The model catalog: the registry's lookups and fallbacks, which model draws an edit, estimates.

Prices per model at fixed sizes and steps are in test_prices.py, the OpenAI names' answer forms in
test_openai_clients.py; this covers the rest of what catalog/ decides.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flux_worker.catalog.registry import ModelRegistry, model_for_images
from flux_worker.catalog.spec import (
    DALL_E_ALIASES,
    MIN_STEPS,
    USD_PER_NEURON,
    ModelSpec,
    Price,
    UsdPrice,
    neurons_for_usd,
    round8,
)
from flux_worker.catalog.workers_ai import CATALOG, cost_table
from flux_worker.cost.money import dollars
from flux_worker.errors import InvalidRequest, ModelNotFound, PromptTooLong

MODELS = {m.short_name: m for m in CATALOG}
SCHNELL = MODELS["flux-1-schnell"]
DEV = MODELS["flux-2-dev"]
KLEIN = MODELS["flux-2-klein-4b"]
LUCID = MODELS["lucid-origin"]
PHOENIX = MODELS["phoenix-1.0"]
LIGHTNING = MODELS["sdxl-lightning"]
IMG2IMG = MODELS["stable-diffusion-v1-5-img2img"]
INPAINT = MODELS["stable-diffusion-v1-5-inpainting"]

# Another provider's model (IMAGE_BACKEND=openai): no Workers AI price.
UNPRICED = ModelSpec("other/image-model", ("other-image",), "someone", "An unpriced model")


def everything(default: ModelSpec = SCHNELL) -> ModelRegistry:
    return ModelRegistry(CATALOG, default)


# --- the catalog itself --------------------------------------------------------------------------

def test_every_name_in_the_catalog_means_one_model():
    names = [name.lower() for spec in CATALOG for name in (spec.id, *spec.aliases)]
    assert len(names) == len(set(names))
    assert not set(names) & set(DALL_E_ALIASES)


def test_short_name_is_the_first_alias():
    assert SCHNELL.short_name == "flux-1-schnell"
    assert UNPRICED.short_name == "other-image"
    assert ModelSpec("vendor/bare", (), "someone", "no aliases").short_name == "vendor/bare"


def test_models_that_need_an_image_can_take_one():
    needing = {spec.short_name for spec in CATALOG if spec.needs_image}
    assert needing == {IMG2IMG.short_name, INPAINT.short_name}
    assert all(MODELS[name].max_images == 1 for name in needing)
    assert KLEIN.max_images == 4 and SCHNELL.max_images == 0


# --- registry lookups ----------------------------------------------------------------------------

@pytest.mark.parametrize("spec", CATALOG, ids=lambda spec: spec.short_name)
def test_every_model_is_found_by_id_and_each_alias(spec):
    models = everything()
    for name in (spec.id, *spec.aliases):
        assert models.get(name) is spec
        assert models.require(name) is spec


@pytest.mark.parametrize("name,expected", [
    ("FLUX", SCHNELL), (" flux-schnell ", SCHNELL), ("Phoenix", PHOENIX),
    ("@CF/leonardo/phoenix-1.0", PHOENIX), ("\tsd15-inpainting\n", INPAINT)])
def test_names_are_matched_without_case_or_surrounding_space(name, expected):
    assert everything().get(name) is expected


@pytest.mark.parametrize("name", [None, "", "nope", "flux-3", 42, ["flux"]])
def test_get_answers_none_for_no_name_or_an_unknown_one(name):
    assert everything().get(name) is None


def test_require_gives_the_default_when_no_model_is_named():
    models = everything(default=PHOENIX)
    assert models.require(None) is PHOENIX
    assert models.require("") is PHOENIX


def test_require_refuses_an_unknown_model_naming_the_field():
    with pytest.raises(ModelNotFound, match="`flux-3` does not exist") as info:
        everything().require("flux-3")
    assert info.value.status == 404
    assert info.value.param == "model"
    with pytest.raises(ModelNotFound) as info:
        everything().require("flux-3", param="edit_model")
    assert info.value.param == "edit_model"


@pytest.mark.parametrize("name,expected", [
    ("phoenix", PHOENIX), ("sdxl", MODELS["sdxl-base"]), (None, LUCID), ("", LUCID),
    ("gpt-4o", LUCID), ("my-chat-model", LUCID)])
def test_for_chat_falls_back_to_the_default_for_any_other_name(name, expected):
    # Chat clients send their chat model's name; an image model is used only when named.
    assert everything(default=LUCID).for_chat(name) is expected


def test_openai_names_follow_the_configured_default():
    models = ModelRegistry.build(("phoenix",), "phoenix")
    for name in (*DALL_E_ALIASES, "gpt-image-1"):
        assert models.require(name) is PHOENIX


def test_openai_names_never_hide_a_model_of_that_name():
    models = ModelRegistry.build((), "flux", gpt_image_names=("phoenix", "gpt-image-1"))
    assert models.require("phoenix") is PHOENIX
    assert models.require("gpt-image-1") is SCHNELL


# --- which models are offered --------------------------------------------------------------------

def test_build_offers_the_named_models_once_each_in_order():
    models = ModelRegistry.build(("phoenix", "flux", "phoenix-1.0", "FLUX-SCHNELL"), "phoenix")
    assert models.models == (PHOENIX, SCHNELL)
    assert models.default is PHOENIX


def test_build_without_names_offers_the_whole_catalog():
    models = ModelRegistry.build((), "lucid-origin")
    assert models.models == CATALOG
    assert models.default is LUCID


def test_build_puts_a_default_that_was_not_named_first():
    models = ModelRegistry.build(("phoenix", "klein-4b"), "flux")
    assert models.models == (SCHNELL, PHOENIX, KLEIN)


def test_a_model_not_offered_is_not_found():
    models = ModelRegistry.build(("phoenix",), "phoenix")
    assert models.get("flux") is None
    with pytest.raises(ModelNotFound):
        models.require("@cf/black-forest-labs/flux-1-schnell")


def test_build_names_an_unknown_model_and_the_known_ones():
    with pytest.raises(ValueError, match="unknown image model 'flux-3'") as info:
        ModelRegistry.build(("phoenix", "flux-3"), "phoenix")
    assert "flux-1-schnell" in str(info.value) and "phoenix-1.0" in str(info.value)
    with pytest.raises(ValueError, match="'nope'"):
        ModelRegistry.build((), "nope")


def test_build_adds_the_edit_model_last_and_only_once():
    models = ModelRegistry.build(("flux",), "flux", edit_name="inpainting")
    assert models.models == (SCHNELL, INPAINT) and models.edit_model is INPAINT
    models = ModelRegistry.build(("klein-4b", "flux"), "flux", edit_name="klein-4b")
    assert models.models == (KLEIN, SCHNELL)
    assert ModelRegistry.build(("flux",), "flux").edit_model is None


# --- which model draws a request with images -----------------------------------------------------

def test_a_model_that_takes_images_keeps_them_even_with_an_edit_model():
    assert model_for_images(KLEIN, 4, False, DEV) is KLEIN
    assert model_for_images(INPAINT, 1, True, KLEIN) is INPAINT
    assert model_for_images(IMG2IMG, 1, False, None) is IMG2IMG


def test_an_edit_model_that_takes_no_images_cannot_stand_in():
    with pytest.raises(InvalidRequest, match="no EDIT_MODEL") as info:
        model_for_images(SCHNELL, 1, False, PHOENIX)
    assert info.value.code == "model_cannot_take_images"
    assert info.value.param == "model"


def test_without_an_edit_model_the_error_names_offered_models_that_take_images():
    with pytest.raises(InvalidRequest) as info:
        model_for_images(SCHNELL, 1, False, None, (SCHNELL, PHOENIX, KLEIN))
    assert info.value.message.endswith("such as flux-2-klein-4b.")
    with pytest.raises(InvalidRequest) as info:
        model_for_images(SCHNELL, 1, False, None, (SCHNELL, PHOENIX))
    assert info.value.message.endswith("none offered here does, so set EDIT_MODEL to one.")


def test_the_stand_in_s_own_limits_apply():
    with pytest.raises(InvalidRequest) as info:
        model_for_images(SCHNELL, 5, False, KLEIN)
    assert info.value.message == ("flux-2-klein-4b takes at most 4 input images; 5 were sent. "
                                  "Send fewer images.")
    assert info.value.param == "image"
    with pytest.raises(InvalidRequest) as info:
        model_for_images(SCHNELL, 1, True, KLEIN)
    assert info.value.code == "mask_not_supported"
    assert model_for_images(SCHNELL, 1, True, INPAINT) is INPAINT


# --- estimates -----------------------------------------------------------------------------------

@pytest.mark.parametrize("model,width,height,expected", [
    # no steps sent: each model's own default count is what runs and is billed
    (PHOENIX, 1024, 1024, 4 * 527.2727 + 25 * 10),
    (LUCID, 1024, 1024, 4 * 636.3636 + 4 * 12),
    (DEV, 1024, 768, 4 * 25 * 37.2727),
    (SCHNELL, 1024, 1024, 4 * 4.8 + 4 * 9.6),
])
def test_estimate_without_steps_uses_the_model_default(model, width, height, expected):
    assert model.estimate(width, height, None) == pytest.approx(expected, abs=0.01)


def test_a_model_with_fixed_steps_ignores_the_steps_asked():
    assert KLEIN.estimate(1024, 1024, 50) == KLEIN.estimate(1024, 1024, None)
    assert KLEIN.estimate(1024, 1024, 1) == pytest.approx(4 * 26.0909, abs=0.01)


@pytest.mark.parametrize("width,height,tiles", [
    (1020, 1020, 4),      # sent as 1024x1024
    (1030, 1030, 9),      # sent as 1032x1032: past two tiles a side
    (4000, 4000, 25),     # clamped to 2496x2496 (its largest multiple of 8)
    (10, 10, 1),          # raised to its 256 minimum
])
def test_estimate_bills_the_size_really_sent(width, height, tiles):
    assert LUCID.estimate(width, height, 4) == pytest.approx(tiles * 636.3636 + 48, abs=0.01)


def test_an_unpriced_model_has_no_estimate():
    assert UNPRICED.estimate(1024, 1024, 4) is None
    assert UNPRICED.cost_info(4) == {"price": None, "price_usd": None, "default_size": "1024x1024",
                                     "estimate_neurons": None, "estimate_usd": None}


def test_cost_table_rows_for_the_given_size_and_steps():
    table = cost_table(steps=8, size=(512, 512), catalog=(SCHNELL, UNPRICED, LIGHTNING))
    lines = table.splitlines()
    assert lines[0].startswith("| model | price (neurons) | 512x512 at 8 steps |")
    assert len(lines) == 4                       # the unpriced model has no row
    # schnell always makes 1024x1024: 4 tiles x 4.8 + 8 steps x 9.6 = 96 neurons = $0.001056,
    # and 10,000 // 96 = 104 a day
    assert lines[2] == ("| `flux-1-schnell` | 4.8 neurons per 512x512 output tile + 9.6 neurons "
                        "per step | 96.0 | $0.00106 | 104 |")
    assert lines[3].endswith("| 0.0 | $0.00000 | unlimited |")
    assert "(listed at $0 in beta)" in lines[3]


# --- dollars and neurons -------------------------------------------------------------------------

@pytest.mark.parametrize("usd,neurons", [
    (0.011, 1000.0), (0.0, 0.0), (0.007, 636.3636), (0.000132, 12.0), (1.0, 90909.09)])
def test_neurons_for_usd_at_the_paid_rate(usd, neurons):
    assert neurons_for_usd(usd) == pytest.approx(neurons, abs=1e-3)


@given(st.floats(min_value=0, max_value=1000, allow_nan=False))
def test_neurons_for_usd_and_dollars_undo_each_other(usd):
    assert dollars(neurons_for_usd(usd)) == pytest.approx(usd, rel=1e-9, abs=1e-12)


def test_prices_listed_in_dollars_are_converted_at_the_paid_rate():
    assert LUCID.price == Price(tile=0.007 / USD_PER_NEURON, step=0.000132 / USD_PER_NEURON)
    assert PHOENIX.price.tile * USD_PER_NEURON == pytest.approx(0.0058)


# --- a model's limits ----------------------------------------------------------------------------

@pytest.mark.parametrize("value,lo,hi,expected", [
    (500, 256, 2048, 504),     # ties round up
    (1020, 256, 2048, 1024),
    (4000, 256, 2500, 2496),   # the largest multiple of 8 under the limit
    (10, 250, 2048, 256),      # the smallest multiple of 8 over the limit
    (5, 1, 7, 7),              # no multiple of 8 fits: the limit itself
])
def test_round8(value, lo, hi, expected):
    assert round8(value, lo, hi) == expected


@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
       st.integers(min_value=1, max_value=4096), st.integers(min_value=0, max_value=4096))
def test_round8_stays_within_the_limits_on_a_multiple_of_8(value, lo, span):
    hi = lo + span
    result = round8(value, lo, hi)
    assert lo <= result <= hi
    if -(-lo // 8) * 8 <= hi:
        assert result % 8 == 0


def test_steps_and_guidance_are_clamped_to_the_model():
    assert SCHNELL.clamp_steps(0) == MIN_STEPS
    assert SCHNELL.clamp_steps(50) == 8
    assert PHOENIX.clamp_guidance(1) == 2.0
    assert PHOENIX.clamp_guidance(12) == 10.0
    assert PHOENIX.clamp_guidance(None) is None
    assert SCHNELL.clamp_guidance(5.0) is None


def test_prompt_length_is_checked_against_the_model():
    SCHNELL.check_prompt("a" * 2048)
    with pytest.raises(PromptTooLong, match="2049 characters; flux-1-schnell accepts at most 2048"):
        SCHNELL.check_prompt("a" * 2049)
    PHOENIX.check_prompt("a" * 100_000)


def test_sizes_sent_and_sizes_answered():
    assert SCHNELL.upstream_size(1792, 1024) == (1024, 1024)
    assert KLEIN.upstream_size(1000, 500) == (1000, 504)
    assert SCHNELL.output_limits() == (64, 1024)
    assert PHOENIX.output_limits() == (256, 2048)


def test_a_dollar_price_per_megapixel_counts_1024x1024_as_one():
    # As Black Forest Labs and fal bill: a megapixel is 1024x1024, partial ones are whole.
    dev = UsdPrice(per_megapixel=0.025)
    assert dev.usd(1024, 1024) == pytest.approx(0.025)
    assert dev.usd(1024, 1025) == pytest.approx(0.05)
    assert dev.usd(512, 512) == pytest.approx(0.025)
    both = UsdPrice(per_image=0.01, per_input_megapixel=0.05)
    assert both.usd(2048, 2048, input_megapixels=1.5) == pytest.approx(0.11)
