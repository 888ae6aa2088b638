"""Replicate's official FLUX models: predictions by model name, billed in US dollars per image.

Ids are `replicate:<owner>/<name>` (issue 23), so they never collide with another provider's;
the backend (backends/replicate/) strips the prefix to name the model in the route. What each
model takes follows image-providers.md section 3 and Replicate's model pages:

- flux-schnell and flux-dev draw only `aspect_ratio`s (the nearest is sent, the pipeline fits
  the answer to the exact size asked); flux-dev also takes `guidance` and a source `image`
  (img2img with `prompt_strength`);
- flux-1.1-pro takes the ratios, or `aspect_ratio: "custom"` with `width`/`height` 256-1440
  (multiples of 32), hence its size range;
- flux-kontext-pro edits one `input_image` (and draws from text alone too);
- flux-2-pro takes `custom` sizes 256-2048 (multiples of 32) and up to 8 `input_images`.

Prices: schnell and dev are the reference's figures; the others are Replicate's model pages'
figures, which the reference does not carry, so they are marked `listed=False`.
"""

from __future__ import annotations

from .providers import REPLICATE
from .spec import ModelSpec, SizeRange, UsdPrice

PREFIX = "replicate:"
# flux-schnell, flux-dev and flux-1.1-pro's aspect ratios (reference §3).
RATIOS = ("1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21")
_ASSUMED = "from Replicate's model page; not in this project's reference, so assumed"
# Replicate's FLUX models came after the Workers AI catalog; a fixed date keeps /v1/models stable.
_CREATED = 1767225600


def _replicate(name: str, alias: str, description: str, usd: UsdPrice,
               **fields: object) -> ModelSpec:
    fields.setdefault("steps_field", None)       # only schnell and dev take a step count
    return ModelSpec(PREFIX + name, (alias,), name.split("/")[0], description,
                     provider=REPLICATE, usd=usd, created=_CREATED,
                     **fields)  # type: ignore[arg-type]


REPLICATE_CATALOG: tuple[ModelSpec, ...] = (
    _replicate("black-forest-labs/flux-schnell", "replicate-flux-schnell",
               "FLUX.1 [schnell] on Replicate: fast drafts (1-4 steps), aspect ratios",
               UsdPrice(per_image=0.003), aspect_ratios=RATIOS, native_size=(1024, 1024),
               steps_field="num_inference_steps", steps_max=4, default_steps=4, seed=True),
    _replicate("black-forest-labs/flux-dev", "replicate-flux-dev",
               "FLUX.1 [dev] on Replicate: up to 50 steps, guidance, img2img from one image",
               UsdPrice(per_image=0.025), aspect_ratios=RATIOS, native_size=(1024, 1024),
               steps_field="num_inference_steps", steps_max=50, default_steps=28, seed=True,
               guidance=(0.0, 10.0), source_image=True, strength=True),
    _replicate("black-forest-labs/flux-1.1-pro", "replicate-flux-1.1-pro",
               "FLUX1.1 [pro] on Replicate: free sizes 256-1440 px",
               UsdPrice(per_image=0.04, listed=False, note=_ASSUMED),
               size=SizeRange(256, 1440, (1024, 1024)), seed=True),
    _replicate("black-forest-labs/flux-kontext-pro", "replicate-flux-kontext-pro",
               "FLUX.1 Kontext [pro] on Replicate: edits one picture by instruction",
               UsdPrice(per_image=0.04, listed=False, note=_ASSUMED),
               aspect_ratios=RATIOS, native_size=(1024, 1024), seed=True, source_image=True),
    _replicate("black-forest-labs/flux-2-pro", "replicate-flux-2-pro",
               "FLUX.2 [pro] on Replicate: free sizes 256-2048 px, up to 8 reference images",
               UsdPrice(per_megapixel=0.015, per_input_megapixel=0.015, listed=False,
                        note=_ASSUMED + " ($0.015 per output and per input megapixel)"),
               size=SizeRange(256, 2048, (1024, 1024)), seed=True, reference_images=8),
)


def replicate_name(model: ModelSpec) -> str:
    """`owner/name` as Replicate knows the model (the id without this service's prefix)."""
    return model.id.removeprefix(PREFIX)
