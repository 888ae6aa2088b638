"""Fallback between models: which failures let another model draw, and which models may.

    the rule        `fallback_reason`: an error's own `fallback` (errors.py) says whether another
                    model may draw: capacity, quota, rate limit, 5xx, timeout do; a refused
                    prompt, a bad request or this server's refused credentials never do
    the chains      MODEL_FALLBACKS, resolved against the offered models once, when the services
                    are built (`resolve_chains`): a name not offered is a ConfigError
    who can draw    `can_honour`: an alternative takes the job's input images, mask and
                    transparency, and draws from text alone when there are no images
    auto            `model: "auto"`: the default model, its alternatives, then the rest of the
                    catalog, in that order (`auto_order`); the planner keeps those that can
                    honour the request, are healthy and fit the budget

The planner plans each alternative (generation/planner.py) and the pipeline draws them in order
(generation/pipeline.py); Cloudflare's own account rotation (CF_ACCOUNTS) happens inside one
attempt, before any alternative. No I/O here.
"""

from __future__ import annotations

from typing import Mapping

from ..catalog.registry import ModelRegistry
from ..catalog.spec import ModelSpec
from ..errors import APIError

AUTO = "auto"                       # the model name that lets the service choose
SKIPPED = "provider_skipped"        # the reason when the asked model's provider was skipped
AUTO_DESCRIPTION = ("The service chooses: the default model, then its MODEL_FALLBACKS, then the "
                    "rest of the catalog; the first that is healthy, can honour the request "
                    "(size, input images, mask, transparency) and fits the budget draws, and the "
                    "next ones are its alternatives.")

Chains = Mapping[str, tuple[ModelSpec, ...]]


def fallback_reason(exc: BaseException) -> str | None:
    """Why another model may draw after `exc` ("capacity", "timeout", ...); None: it may not."""
    return exc.fallback if isinstance(exc, APIError) else None


def is_auto(name: str | None) -> bool:
    """Whether a model name asks the service to choose."""
    return isinstance(name, str) and name.strip().lower() == AUTO


def resolve_chains(pairs: tuple[tuple[str, tuple[str, ...]], ...],
                   models: ModelRegistry) -> dict[str, tuple[ModelSpec, ...]]:
    """MODEL_FALLBACKS' entries as {model id: alternatives}; raise ValueError for a name not
    offered (naming the entry and the known names)."""
    chains: dict[str, tuple[ModelSpec, ...]] = {}
    for name, alternatives in pairs:
        entry = f"{name}={','.join(alternatives)}"
        model = _offered(models, name, entry)
        found = [_offered(models, alt, entry) for alt in alternatives]
        chains[model.id] = tuple(dict.fromkeys(m for m in found if m is not model))
    return chains


def _offered(models: ModelRegistry, name: str, entry: str) -> ModelSpec:
    spec = models.get(name)
    if spec is None or spec not in models.models:
        raise ValueError(f"entry `{entry}`: {name!r} is not offered here; known: "
                         + ", ".join(m.short_name for m in models.models))
    return spec


def can_honour(model: ModelSpec, *, images: int, mask: bool, background: str | None) -> bool:
    """Whether `model` can draw a request with `images` inputs, a mask or a transparent
    background, as the asked model would have."""
    if images:
        if model.max_images < images or (mask and not model.mask):
            return False
    elif model.needs_image:
        return False
    return background != "transparent" or model.transparency


def auto_order(models: ModelRegistry, chains: Chains) -> tuple[ModelSpec, ...]:
    """The order `auto` considers models in: the default, its alternatives, the rest."""
    default = models.default
    return tuple(dict.fromkeys((default, *chains.get(default.id, ()), *models.models)))
