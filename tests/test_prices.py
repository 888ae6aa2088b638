"""Price formulas of every catalog model against figures computed by hand from the reference.

Reference §6 and "Pricing in neurons": $0.011 per 1,000 neurons, so 1 neuron = $0.000011.
Prices listed in dollars are converted by hand below: lucid-origin $0.007 per tile = 636.3636
neurons, $0.000132 per step = 12; phoenix $0.0058 = 527.2727 per tile, $0.00011 = 10 per step;
flux-2-dev $0.00041 = 37.2727 per output tile per step, $0.00021 = 19.0909 per input tile per
step; klein-4b $0.000287 = 26.0909 per output tile, $0.000059 = 5.3636 per input tile.
"""

from __future__ import annotations

import pathlib

import pytest

from flux_worker.catalog.spec import FREE_DAILY_NEURONS, USD_PER_NEURON, tiles
from flux_worker.catalog.workers_ai import CATALOG, cost_table

MODELS = {m.short_name: m for m in CATALOG}


@pytest.mark.parametrize("width,height,expected", [
    (512, 512, 1), (513, 512, 2), (1024, 1024, 4), (1024, 768, 4), (1120, 1120, 9),
    (1920, 1080, 12), (256, 256, 1), (2048, 2048, 16)])
def test_tiles_cover_the_image_with_whole_512_tiles(width, height, expected):
    assert tiles(width, height) == expected


def test_the_paid_rate_and_the_free_allocation():
    assert USD_PER_NEURON * 1000 == pytest.approx(0.011)
    assert FREE_DAILY_NEURONS == 10_000


# (model, width, height, steps, input tiles, neurons computed by hand)
CASES = [
    # 4 tiles x 4.8 + 4 steps x 9.6 = 19.2 + 38.4 (the reference's own example)
    ("flux-1-schnell", 1024, 1024, 4, 0, 57.6),
    # 19.2 + 8 x 9.6 = 96 (the reference: "at 8 steps it is 96 neurons")
    ("flux-1-schnell", 1024, 1024, 8, 0, 96.0),
    # schnell has no size control: a 16:9 request is still billed as its fixed 1024x1024
    ("flux-1-schnell", 1792, 1024, 4, 0, 57.6),
    # 4 output tiles x 4 steps x 37.2727 = 596.36
    ("flux-2-dev", 1024, 768, 4, 0, 596.36),
    # 4 x 20 x 37.2727 = 2981.82
    ("flux-2-dev", 1024, 1024, 20, 0, 2981.82),
    # 596.36 + 1 input tile x 4 steps x 19.0909 = 596.36 + 76.36
    ("flux-2-dev", 1024, 768, 4, 1, 672.73),
    # 4 x 26.0909 = 104.36 (fixed 4 steps, not part of the price)
    ("flux-2-klein-4b", 1024, 1024, None, 0, 104.36),
    # 104.36 + 2 input tiles x 5.3636 = 115.09
    ("flux-2-klein-4b", 1024, 1024, None, 2, 115.09),
    # not listed: assumed equal to klein-4b
    ("flux-2-klein-9b", 1024, 1024, None, 0, 104.36),
    # 4 x 636.3636 + 4 x 12 = 2545.45 + 48
    ("lucid-origin", 1024, 1024, 4, 0, 2593.45),
    # its default 1120x1120 is 3 x 3 tiles: 9 x 636.3636 + 48 = 5775.27
    ("lucid-origin", 1120, 1120, 4, 0, 5775.27),
    # 4 x 527.2727 + 4 x 10 = 2109.09 + 40
    ("phoenix-1.0", 1024, 1024, 4, 0, 2149.09),
    # 2109.09 + 25 x 10
    ("phoenix-1.0", 1024, 1024, 25, 0, 2359.09),
    # 1000 is sent as 1000 (a multiple of 8): 2 x 2 tiles, like 1024
    ("phoenix-1.0", 1000, 1000, 4, 0, 2149.09),
    # SD family: $0 (sdxl-lightning listed so in beta; the others assumed alike)
    ("sdxl-lightning", 1024, 1024, 20, 0, 0.0),
    ("sdxl-base", 1024, 1024, 20, 0, 0.0),
    ("dreamshaper-8-lcm", 1024, 1024, 8, 0, 0.0),
    ("stable-diffusion-v1-5-img2img", 512, 512, 20, 1, 0.0),
    ("stable-diffusion-v1-5-inpainting", 512, 512, 20, 1, 0.0),
]


@pytest.mark.parametrize("name,width,height,steps,input_tiles,expected", CASES)
def test_estimate_matches_the_hand_computed_figure(name, width, height, steps, input_tiles,
                                                   expected):
    model = MODELS[name]
    assert model.estimate(width, height, steps, input_tiles) == pytest.approx(expected, abs=0.01)


def test_every_catalog_model_has_a_price_and_a_case():
    assert {m.short_name for m in CATALOG} == {case[0] for case in CASES}
    assert all(m.price is not None for m in CATALOG)


def test_steps_are_clamped_to_what_the_model_runs():
    # schnell runs at most 8 steps, so asking 50 costs what 8 cost
    assert MODELS["flux-1-schnell"].estimate(1024, 1024, 50) == pytest.approx(96.0)


def test_formula_text_and_json():
    schnell = MODELS["flux-1-schnell"].price
    assert schnell.formula() == "4.8 neurons per 512x512 output tile + 9.6 neurons per step"
    assert MODELS["sdxl-lightning"].price.formula().startswith("0 neurons")
    data = MODELS["flux-2-dev"].price.as_json()
    assert data["per_tile_step"] == pytest.approx(37.2727, abs=1e-3)
    assert data["per_input_tile_step"] == pytest.approx(19.0909, abs=1e-3)
    assert data["listed"] is True
    assert MODELS["flux-2-klein-9b"].price.as_json()["listed"] is False


def test_cost_info_for_the_default_size():
    info = MODELS["flux-2-dev"].cost_info(steps=4)
    assert info["default_size"] == "1024x768"
    assert info["estimate_neurons"] == pytest.approx(596.36, abs=0.01)
    assert info["estimate_usd"] == pytest.approx(596.36 * 0.000011, abs=1e-6)
    assert MODELS["flux-1-schnell"].cost_info(steps=4)["estimate_neurons"] == pytest.approx(57.6)


def test_the_documented_cost_table_is_the_catalogs():
    page = pathlib.Path(__file__).resolve().parent.parent / "docs" / "costs.md"
    costs = page.read_text("utf-8")
    start = costs.index("<!-- cost-table:")
    table = costs[costs.index("\n", start) + 1:costs.index("<!-- /cost-table -->")].strip()
    assert table == cost_table(), "regenerate with flux_worker.catalog.workers_ai.cost_table()"
