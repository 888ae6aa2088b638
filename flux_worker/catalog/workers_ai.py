"""The Workers AI text-to-image models: one entry each, and the cost table of docs/costs.md.

Facts come from the model schemas summarised in the reference notes. Adding a model is adding one
entry to CATALOG (and its schema to the fake in harness/fakes/cloudflare/schemas.py).
"""

from __future__ import annotations

from .spec import (
    FREE_DAILY_NEURONS,
    USD_PER_NEURON,
    ModelSpec,
    Price,
    SizeRange,
    neurons_for_usd,
)

_KLEIN_4B = Price(tile=neurons_for_usd(0.000287), input_tile=neurons_for_usd(0.000059))
# The SD family is in beta at $0 (sdxl-lightning is listed so; the others are not listed).
_SD_UNLISTED = Price(listed=False, note="not listed: assumed $0 like sdxl-lightning")


def _stable_diffusion(id: str, aliases: tuple[str, ...], owned_by: str, description: str, *,
                      price: Price, source_image: bool = False, mask: bool = False) -> ModelSpec:
    """A Stable Diffusion family entry: JSON in, raw PNG out, num_steps <= 20 (one schema)."""
    return ModelSpec(id, aliases, owned_by, description, size=SizeRange(256, 2048),
                     steps_field="num_steps", steps_max=20, seed=True, guidance=(0.0, 30.0),
                     negative_prompt=True, response="binary", default_steps=20, price=price,
                     source_image=source_image, mask=mask, strength=source_image,
                     needs_image=source_image)


def _flux2(id: str, aliases: tuple[str, ...], description: str, *, price: Price,
           steps_field: str | None = None, steps_max: int = 8, default_steps: int = 4
           ) -> ModelSpec:
    """A FLUX.2 entry: multipart only, 256-1920 px, seed, guidance, 4 reference images."""
    return ModelSpec(id, aliases, "black-forest-labs", description, encoding="multipart",
                     size=SizeRange(256, 1920, (1024, 768)), seed=True, guidance=(0.0, 20.0),
                     reference_images=4, price=price, steps_field=steps_field,
                     steps_max=steps_max, default_steps=default_steps)


CATALOG: tuple[ModelSpec, ...] = (
    ModelSpec("@cf/black-forest-labs/flux-1-schnell", ("flux-1-schnell", "flux-schnell", "flux"),
              "black-forest-labs", "FLUX.1 [schnell]: fast, 1-8 steps, fixed 1024x1024 output",
              steps_field="steps", steps_max=8, max_prompt=2048,
              price=Price(tile=4.8, step=9.6)),
    _flux2("@cf/black-forest-labs/flux-2-dev", ("flux-2-dev",),
           "FLUX.2 [dev]: high quality, slower", steps_field="steps", steps_max=50,
           default_steps=25, price=Price(tile_step=neurons_for_usd(0.00041),
                                         input_tile_step=neurons_for_usd(0.00021))),
    _flux2("@cf/black-forest-labs/flux-2-klein-4b", ("flux-2-klein-4b", "klein-4b"),
           "FLUX.2 [klein] 4B: fast, fixed 4 steps", price=_KLEIN_4B),
    _flux2("@cf/black-forest-labs/flux-2-klein-9b", ("flux-2-klein-9b", "klein-9b"),
           "FLUX.2 [klein] 9B: fixed 4 steps",
           price=Price(_KLEIN_4B.tile, input_tile=_KLEIN_4B.input_tile, listed=False,
                       note="not listed: assumed equal to klein-4b")),
    ModelSpec("@cf/leonardo/lucid-origin", ("lucid-origin",), "leonardo",
              "Leonardo Lucid Origin: prompt-faithful, sharp text",
              size=SizeRange(256, 2500, (1120, 1120)), steps_field="steps", steps_max=40,
              seed=True, guidance=(0.0, 10.0),
              price=Price(tile=neurons_for_usd(0.007), step=neurons_for_usd(0.000132))),
    ModelSpec("@cf/leonardo/phoenix-1.0", ("phoenix-1.0", "phoenix"), "leonardo",
              "Leonardo Phoenix 1.0: good prompt adherence and text",
              size=SizeRange(256, 2048), steps_field="num_steps", steps_max=50, seed=True,
              guidance=(2.0, 10.0), negative_prompt=True, response="binary", default_steps=25,
              price=Price(tile=neurons_for_usd(0.0058), step=neurons_for_usd(0.00011))),
    _stable_diffusion("@cf/bytedance/stable-diffusion-xl-lightning", ("sdxl-lightning",),
                      "bytedance", "SDXL-Lightning: 1024px images in a few steps",
                      price=Price(note="listed at $0 in beta")),
    _stable_diffusion("@cf/stabilityai/stable-diffusion-xl-base-1.0", ("sdxl-base", "sdxl"),
                      "stabilityai", "Stable Diffusion XL base 1.0", price=_SD_UNLISTED),
    _stable_diffusion("@cf/lykon/dreamshaper-8-lcm", ("dreamshaper-8-lcm", "dreamshaper"),
                      "lykon", "DreamShaper 8 LCM: photorealistic SD 1.5 fine-tune",
                      price=_SD_UNLISTED),
    # img2img and inpainting change a source image: they refuse text-only requests.
    _stable_diffusion("@cf/runwayml/stable-diffusion-v1-5-img2img",
                      ("stable-diffusion-v1-5-img2img", "sd15-img2img", "img2img"), "runwayml",
                      "Stable Diffusion 1.5 img2img: redraws a source image after a prompt",
                      price=_SD_UNLISTED, source_image=True),
    _stable_diffusion("@cf/runwayml/stable-diffusion-v1-5-inpainting",
                      ("stable-diffusion-v1-5-inpainting", "sd15-inpainting", "inpainting"),
                      "runwayml",
                      "Stable Diffusion 1.5 inpainting: repaints the masked area of a source "
                      "image", price=_SD_UNLISTED, source_image=True, mask=True),
)


def cost_table(steps: int = 4, size: tuple[int, int] = (1024, 1024),
               catalog: tuple[ModelSpec, ...] = CATALOG) -> str:
    """The cost table of docs/costs.md: each model's price and what one image of `size` costs."""
    width, height = size
    rows = ["| model | price (neurons) | %dx%d at %d steps | at the paid rate | a day in the "
            "free 10,000 |" % (width, height, steps), "|---|---|---|---|---|"]
    for spec in catalog:
        if spec.price is None:
            continue
        neurons = spec.estimate(width, height, steps) or 0.0
        fixed = "" if spec.steps_field else " (fixed steps)"
        assumed = f" ({spec.price.note})" if spec.price.note else ""
        per_day = f"{int(FREE_DAILY_NEURONS // neurons):,}" if neurons else "unlimited"
        rows.append(f"| `{spec.short_name}`{fixed} | {spec.price.formula()}{assumed} | "
                    f"{neurons:,.1f} | ${neurons * USD_PER_NEURON:.5f} | {per_day} |")
    return "\n".join(rows)
