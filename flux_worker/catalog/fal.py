"""fal.ai's FLUX models: reached with FAL_KEY, billed in US dollars from fal's prepaid credit.

Ids are `fal:<fal's endpoint id>` (issue 23's names), so they never collide with another
provider's; the aliases are short names people type. backends/fal/ builds each request from these
entries (reference: image-providers.md section 2): a `size` range goes as fal's
`image_size: {width, height}` (the exact size asked, rounded to a multiple of 8), `aspect_ratios`
as `aspect_ratio` (Kontext takes no free size: the pipeline fits its picture to the size asked),
`steps_field` as `num_inference_steps`, `guidance` as `guidance_scale`, and `reference_images` as
`image_url` (one) or `image_urls` (several). Prices are fal's per megapixel (rounded up, as fal
bills) or per image; the figures the reference quotes from fal's own pages are `listed`, the others
are marked as assumed.
"""

from __future__ import annotations

from .providers import FAL
from .spec import ModelSpec, SizeRange, UsdPrice

PREFIX = "fal:"
# fal's `image_size` object takes free sizes; 2048 a side (4 MP) bounds what one image can cost.
_FREE = SizeRange(256, 2048, (1024, 1024))
_KONTEXT_RATIOS = ("21:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "9:21")
_THIRD_PARTY = "assumed: the price fal's model page showed when this was written"
# fal's models came after the Workers AI catalog's date; a fixed date keeps /v1/models stable.
_CREATED = 1767225600


def _fal(endpoint: str, aliases: tuple[str, ...], description: str, usd: UsdPrice,
         **fields: object) -> ModelSpec:
    fields.setdefault("steps_field", None)       # the pro models take no step count
    return ModelSpec(PREFIX + endpoint, aliases, "fal", description, provider=FAL, usd=usd,
                     created=_CREATED, seed=True, **fields)  # type: ignore[arg-type]


FAL_CATALOG: tuple[ModelSpec, ...] = (
    _fal("fal-ai/flux/schnell", ("fal-flux-schnell",),
         "FLUX.1 [schnell] on fal: fast, 1-12 steps, free sizes",
         UsdPrice(per_megapixel=0.003), size=_FREE, steps_field="num_inference_steps",
         steps_max=12, default_steps=4, guidance=(1.0, 20.0)),
    _fal("fal-ai/flux/dev", ("fal-flux-dev",),
         "FLUX.1 [dev] on fal: 1-50 steps, guidance, free sizes",
         UsdPrice(per_megapixel=0.025), size=_FREE, steps_field="num_inference_steps",
         steps_max=50, default_steps=28, guidance=(1.0, 20.0)),
    _fal("fal-ai/flux-pro/v1.1", ("fal-flux-pro",),
         "FLUX1.1 [pro] on fal: free sizes, no step or guidance control",
         UsdPrice(per_megapixel=0.04, listed=False, note=_THIRD_PARTY), size=_FREE),
    _fal("fal-ai/flux-2-pro", ("fal-flux-2-pro",),
         "FLUX.2 [pro] on fal: photorealism, free sizes",
         UsdPrice(per_image=0.015, per_megapixel=0.015, listed=False,
                  note=_THIRD_PARTY + " ($0.03 the first megapixel, $0.015 each further)"),
         size=_FREE),
    # Kontext edits one picture (`image_url`, required) at an aspect ratio of its own choice.
    _fal("fal-ai/flux-pro/kontext", ("fal-kontext",),
         "FLUX.1 Kontext [pro] on fal: edits one picture by instruction",
         UsdPrice(per_image=0.04), aspect_ratios=_KONTEXT_RATIOS, native_size=(1024, 1024),
         guidance=(1.0, 20.0), reference_images=1, needs_image=True),
    # FLUX.2 [flex] edit bills input and output megapixels alike ($0.05 each, reference §2).
    _fal("fal-ai/flux-2-flex/edit", ("fal-flux-2-edit",),
         "FLUX.2 [flex] edit on fal: up to 4 reference pictures, steps and guidance",
         UsdPrice(per_megapixel=0.05, per_input_megapixel=0.05), size=_FREE,
         steps_field="num_inference_steps", steps_max=50, default_steps=28,
         guidance=(1.5, 10.0), reference_images=4, needs_image=True),
)
