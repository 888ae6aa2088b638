"""Cloudflare's partner image models: reached with the Workers AI account and token through the
unified `/ai/run` route, billed in US dollars from Unified Billing credits (no neurons).

Ids are the ones Cloudflare gives them (`vendor/name`); the aliases are the names people type.
Each model's request fields are built in backends/cloudflare_partner/ from these entries
(reference: image-providers.md section 1): `size_choices` go as `size: "WxH"`, `aspect_ratios`
as `aspect_ratio`, a `size` range as `width`/`height`, `steps_field`/`guidance`/`seed` as
named, and `reference_images` as the model's image list. Cloudflare publishes no dollar prices
for them, so the prices below are the vendors' own public list prices, marked `listed=False`.
"""

from __future__ import annotations

from .providers import CF_PARTNER
from .spec import ModelSpec, SizeRange, UsdPrice

_ASSUMED = "Cloudflare lists no dollar price; assumed from the vendor's public list price"
_GPT_SIZES = ((1024, 1024), (1536, 1024), (1024, 1536))
_GOOGLE_RATIOS = ("1:1", "3:4", "4:3", "9:16", "16:9")
# Partner models came after the Workers AI catalog's date; any fixed date keeps /v1/models stable.
_CREATED = 1767225600


def _partner(id: str, aliases: tuple[str, ...], description: str, usd: UsdPrice,
             **fields: object) -> ModelSpec:
    fields.setdefault("steps_field", None)       # most partner models take no step count
    return ModelSpec(id, aliases, id.split("/")[0], description, provider=CF_PARTNER,
                     usd=usd, created=_CREATED, **fields)  # type: ignore[arg-type]


PARTNER_CATALOG: tuple[ModelSpec, ...] = (
    _partner("openai/gpt-image-2", ("gpt-image-2",),
             "OpenAI GPT Image 2 via Cloudflare: strong text and edits (1024/1536 sizes)",
             UsdPrice(per_image=0.053, listed=False, note=_ASSUMED + " (medium quality)"),
             size_choices=_GPT_SIZES, reference_images=4),
    _partner("openai/gpt-image-1.5", ("gpt-image-1.5",),
             "OpenAI GPT Image 1.5 via Cloudflare: edits and transparent backgrounds",
             UsdPrice(per_image=0.034, listed=False, note=_ASSUMED + " (medium quality)"),
             size_choices=_GPT_SIZES, reference_images=4, transparency=True),
    _partner("google/nano-banana-2", ("nano-banana-2",),
             "Google Nano Banana 2 (Gemini image) via Cloudflare",
             UsdPrice(per_image=0.067, listed=False, note=_ASSUMED),
             aspect_ratios=("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9",
                            "21:9"), native_size=(1024, 1024)),
    _partner("google/nano-banana", ("nano-banana",),
             "Google Nano Banana (Gemini 2.5 Flash Image) via Cloudflare",
             UsdPrice(per_image=0.039, listed=False, note=_ASSUMED),
             aspect_ratios=("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9",
                            "21:9"), native_size=(1024, 1024)),
    _partner("google/imagen-4", ("imagen-4",), "Google Imagen 4 via Cloudflare: photorealism",
             UsdPrice(per_image=0.04, listed=False, note=_ASSUMED),
             aspect_ratios=_GOOGLE_RATIOS, native_size=(1024, 1024)),
    # width/height >= 64, seed, and up to 8 `input_images` (https or data URIs) (reference §8).
    _partner("black-forest-labs/flux-2-pro-preview", ("flux-2-pro",),
             "FLUX.2 [pro] (preview) via Cloudflare: free sizes up to 4 MP, reference images",
             UsdPrice(per_image=0.015, per_megapixel=0.015, listed=False,
                      note=_ASSUMED + " ($0.03 the first megapixel, $0.015 each further)"),
             size=SizeRange(64, 2048, (1024, 1024)), seed=True, reference_images=8),
    # `steps` (the page's example: 50, the model's default) and `guidance` (7.5 there).
    _partner("black-forest-labs/flux-2-flex", ("flux-2-flex",),
             "FLUX.2 [flex] via Cloudflare: typography, adjustable steps and guidance",
             UsdPrice(per_megapixel=0.06, listed=False, note=_ASSUMED),
             native_size=(1024, 1024), guidance=(1.5, 10.0), steps_field="steps",
             steps_max=50, default_steps=50),
)


def partner_models(choice: tuple[str, ...], all_word: str) -> tuple[ModelSpec, ...]:
    """The partner models CF_PARTNER_MODELS asks for: all, or those named (by id or alias).

    :raises ValueError: a name that is no partner model (listing the known ones).
    """
    if choice == (all_word,):
        return PARTNER_CATALOG
    by_name = {name.lower(): spec for spec in PARTNER_CATALOG for name in (spec.id, *spec.aliases)}
    unknown = [name for name in choice if name not in by_name]
    if unknown:
        raise ValueError(f"unknown partner model {unknown[0]!r}; known: "
                         + ", ".join(spec.id for spec in PARTNER_CATALOG))
    return tuple(dict.fromkeys(by_name[name] for name in choice))
