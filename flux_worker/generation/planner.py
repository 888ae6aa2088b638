"""Plans: from an order to the ImageJob the pipeline renders, for new pictures and edits alike.

Every interface (chat, the Images API, edits, variations, MCP) plans here, in two steps:

    before admission   `choose_model` and `estimate`: which model draws and what one image may
                       cost, from the order alone (no input image read yet), so a caller over its
                       rate limit or budget costs no download and no decode
    after admission    `plan`, with the decoded input images: the exact size (an edit keeps the
                       input's proportions unless a size is asked), seed, steps, mask

One rule picks the model of an edit for every interface: the model named (the default when none
is), replaced by EDIT_MODEL when it takes no images; the answer then says which model drew.
`model: "auto"` picks the first model in fallback.auto_order that can honour the order, is
healthy and fits the caller's budget; `alternatives` plans the models that may draw instead
when a provider fails (MODEL_FALLBACKS, or auto's next candidates), each for its own limits.
Nothing here does I/O besides asking provider health and the budgets (reads); validation
errors are InvalidRequest with the field they concern.
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from fractions import Fraction
from typing import Callable

from ..catalog.providers import DEMO, WORKERS_AI
from ..catalog.registry import ModelRegistry, model_for_images
from ..catalog.spec import SEED_MAX, ModelSpec
from ..errors import InvalidRequest, ModelNotAllowed
from ..inputs.image import InputImage
from ..inputs.intake import mask_from_alpha, sd_mask
from .fallback import Chains, auto_order, can_honour, is_auto
from .job import Caller, Estimate, ImageJob, ImageOrder
from .prompt import ParsedPrompt, parse_prompt
from .provider_health import ProviderHealth
from .sizes import RATIO_MAX, SizeSpec, resolve_size

# What a variation asks the model for: there is no user prompt, and the picture is the subject.
VARIATION_PROMPT = ("A new variation of this image: the same subject, composition, colours and "
                    "style, with small natural differences in the details.")
_RATIO_DENOMINATOR = 16       # an edit keeps the input's proportions, to the nearest x/16
# The shapes an edit without a size may take (it follows its input, unknown before decoding):
# admission reserves the dearest of them, and the plan lowers the hold to the real figure.
_EDIT_SHAPES = tuple(SizeSpec(ratio=r, width=None, height=None, source="%d:%d" % r) for r in (
    (1, 1), (4, 3), (3, 4), (16, 9), (9, 16), (2, 1), (1, 2), (4, 1), (1, 4),
    (RATIO_MAX, 1), (1, RATIO_MAX)))


# Whether the caller's budgets (its key's own terms included) take one image's cost now.
Fits = Callable[[Caller, Estimate], bool]


class Planner:
    """Plans orders against the offered models."""

    def __init__(self, models: ModelRegistry, default_steps: int, *, chains: Chains | None = None,
                 providers: ProviderHealth | None = None,
                 fits: Fits | None = None):
        self.models = models
        self.default_steps = default_steps
        self.chains = chains or {}        # MODEL_FALLBACKS, resolved: {model id: alternatives}
        self.providers = providers        # which providers are skipped now
        self.fits = fits      # whether the caller's budgets take one image's cost now

    def choose_model(self, order: ImageOrder, caller: Caller | None = None
                     ) -> tuple[ModelSpec, ModelSpec]:
        """The model that draws the order and the one it named; raise InvalidRequest if none
        can, ModelNotAllowed when the caller's key may not use it.

        A chat client names its "model" freely, so there an unknown name means the default
        (or, for a key limited to some models, the first of those). `caller`: whose budget
        `auto` asks and whose key's models it may choose from.
        """
        terms = caller.terms if caller is not None else None
        if is_auto(order.model):
            chosen = self._auto(order, caller)[0]
            return chosen, chosen
        requested = (self.models.for_chat(order.model) if order.chat
                     else self.models.require(order.model))
        if (order.chat and terms is not None and not terms.allows(requested.id)
                and self.models.get(order.model or "") is None):
            requested = next((m for m in self.models.models if terms.allows(m.id)), requested)
        model = requested
        if order.images:
            model = model_for_images(requested, len(order.images), order.mask is not None,
                                     self.models.edit_model, self.models.models)
        if not order.chat and self.models.is_openai_name(order.model):
            model = self._exact_size(order, model)
        model.check_background(order.background)
        if terms is not None and not terms.allows(model.id):
            raise ModelNotAllowed(
                f"This API key may not use the model `{model.id}`; it may use: "
                f"{', '.join(terms.models or ())}. Ask the server's admin for more.",
                param="model")
        return model, requested

    def _auto(self, order: ImageOrder, caller: Caller | None) -> tuple[ModelSpec, ...]:
        """`auto`'s candidates in order: those that can honour the order, the preferred first.

        Preferred: a healthy provider, the asked WxH made exactly, one image within budget.
        When none is preferred the first that can honour it still draws: a skipped provider
        may have recovered, and admission names the budget that refuses.
        """
        terms = caller.terms if caller is not None else None
        honour = [m for m in auto_order(self.models, self.chains)
                  if can_honour(m, images=len(order.images), mask=order.mask is not None,
                                background=order.background) and self._valid(order, m)
                  and (terms is None or terms.allows(m.id))]
        if not honour:
            raise InvalidRequest(
                "No offered model can draw this request (`model: auto`): check its input images, "
                "mask and background against GET /v1/models.", param="model")
        preferred = [m for m in honour if self._preferred(order, m, caller)]
        return tuple(dict.fromkeys((*preferred, *honour)))

    def _valid(self, order: ImageOrder, model: ModelSpec) -> bool:
        try:
            self.estimate(order, model)
        except InvalidRequest:
            return False
        return True

    def _preferred(self, order: ImageOrder, model: ModelSpec, caller: Caller | None) -> bool:
        if self.providers is not None and not self.providers.usable(model.provider):
            return False
        size = order.size
        if size is not None and size.width is not None and size.height is not None:
            resolved = resolve_size(size, model)
            if (resolved.width, resolved.height) != (size.width, size.height):
                return False
        figure = self.estimate(order, model)
        return self.fits is None or self.fits(caller or Caller(identity=""), figure)

    def alternatives(self, order: ImageOrder, job: ImageJob, caller: Caller | None = None,
                     images: tuple[InputImage, ...] = (),
                     mask: InputImage | None = None) -> tuple[ImageJob, ...]:
        """The jobs that may draw `job` instead when its provider fails, in order.

        Each is planned for its own model (steps and guidance clamped, a negative prompt only
        where taken, its own upstream size) at the job's exact size, which the pipeline fits.
        """
        if is_auto(order.model):
            others: tuple[ModelSpec, ...] = self._auto(order, caller)
        else:
            terms = caller.terms if caller is not None else None
            others = tuple(m for m in self.chains.get(job.model.id, ())
                           if terms is None or terms.allows(m.id))
        jobs = []
        for model in others:
            if model is job.model or not can_honour(
                    model, images=len(images), mask=mask is not None,
                    background=order.background):
                continue
            try:
                planned = self.plan(order, model, job.requested or job.model, images, mask)
            except InvalidRequest:
                continue        # this alternative cannot take the prompt or the mask
            jobs.append(replace(planned, width=job.width, height=job.height, ratio=job.ratio,
                                requested=job.requested))
        return tuple(jobs)

    def _exact_size(self, order: ImageOrder, model: ModelSpec) -> ModelSpec:
        """For OpenAI's names, an offered model that delivers the asked WIDTHxHEIGHT exactly.

        Those names stand for the default model, which the client did not choose: when it
        cannot make the size (flux-1-schnell's 1024x1024 gives 683x1024 for 1024x1536), the
        first offered model that can draws instead. None can: `model` delivers the nearest.
        """
        size = order.size
        if size is None or size.width is None or size.height is None:
            return model
        wanted = (size.width, size.height)
        for candidate in (model, *self.models.models):
            if order.images:
                if (candidate.max_images < len(order.images)
                        or (order.mask is not None and not candidate.mask)):
                    continue
            elif candidate.needs_image:
                continue
            resolved = resolve_size(size, candidate)
            if (resolved.width, resolved.height) == wanted:
                return candidate
        return model

    def estimate(self, order: ImageOrder, model: ModelSpec) -> Estimate:
        """What one image of the order may cost, in neurons and in US dollars, before its inputs
        are read (the dearest shape an edit's input may have); None in a unit not priced.

        Checks what can be checked without the inputs (prompt, size), so a bad request is
        refused before it counts against any limit.
        """
        parsed = parse_prompt(order.prompt)
        _check_prompt(parsed, model, has_images=bool(order.images))
        size = order.size or parsed.size
        shapes = (size,) if size is not None or not order.images else _EDIT_SHAPES
        steps = self._steps(model, order.steps if order.steps is not None else parsed.steps,
                            order.quality)
        references = len(order.images) if model.reference_images else 0
        neurons, usd = [], []
        for shape in shapes:
            resolved = resolve_size(shape, model)
            neurons.append(model.estimate(resolved.width, resolved.height, steps, references))
            usd.append(model.estimate_usd(resolved.width, resolved.height, steps, references))
        return Estimate(_dearest(neurons), _dearest(usd))

    def plan(self, order: ImageOrder, model: ModelSpec, requested: ModelSpec,
             images: tuple[InputImage, ...] = (), mask: InputImage | None = None) -> ImageJob:
        """Resolve size, steps and options for `model`; raise InvalidRequest for a bad order."""
        parsed = parse_prompt(order.prompt)
        _check_prompt(parsed, model, has_images=bool(images))
        sd = _sd_mask(model, images, mask) if images else None
        size = order.size or parsed.size or (input_ratio(images[0]) if images else None)
        resolved = resolve_size(size, model)
        seed = order.seed if order.seed is not None else parsed.seed
        steps = order.steps if order.steps is not None else parsed.steps
        negative = order.negative if order.negative is not None else parsed.negative
        ignored = []
        if "seed" in parsed.options and not model.seed:
            ignored.append("--seed")
        if "steps" in parsed.options and not model.steps_field:
            ignored.append("--steps")
        if "no" in parsed.options and not model.negative_prompt:
            ignored.append("--no")
        if model.seed and seed is None:
            # A seed the user can see lets them reproduce or vary an image they liked.
            seed = secrets.randbelow(SEED_MAX + 1)
        job_steps = self._steps(model, steps, order.quality)
        # Only what the user asked for is reported; FLUX_NUM_STEPS is clamped silently.
        clamped = (f"--steps {steps} → {job_steps}",) if steps and job_steps not in (
            None, steps) else ()
        return ImageJob(
            original=order.prompt, prompt=parsed.text, model=model,
            width=resolved.width, height=resolved.height, ratio=resolved.ratio_label,
            steps=job_steps,
            seed=seed if model.seed else None,
            negative=negative if model.negative_prompt else None,
            guidance=model.clamp_guidance(order.guidance),
            output_format=order.output_format, output_compression=order.output_compression,
            quality=quality_tier(order.quality), ignored=tuple(ignored), clamped=clamped,
            images=images, mask=sd if model.mask else None,
            strength=order.strength if model.strength else None, variation=order.variation,
            moderation_low=order.moderation == "low",
            background=("transparent" if order.background == "transparent" and model.transparency
                        else "opaque"),
            requested=requested if requested is not model else None)

    def _steps(self, model: ModelSpec, asked: int | None,
               quality: str | None = None) -> int | None:
        """The steps sent: those asked, else the usual count scaled by the quality tier.

        The usual count is FLUX_NUM_STEPS for Workers AI's models (and the demo's, which are
        theirs), as the original Worker sent; other providers' models run their own default
        (fal's FLUX dev 28, a ComfyUI workflow's own), which their makers tuned them for.
        """
        if not model.steps_field:
            return None
        if not asked:
            usual = (self.default_steps if model.provider in (WORKERS_AI, DEMO)
                     else model.default_steps)
            asked = max(1, round(usual * _TIER_STEPS[quality_tier(quality)]))
        return model.clamp_steps(asked)


# What OpenAI's quality tiers mean here: the share of FLUX_NUM_STEPS a model runs. Fewer steps
# are faster and cheaper and rougher; more are finer up to the model's own maximum.
_TIER_STEPS = {"low": 0.5, "medium": 1.0, "high": 2.0}
_TIERS = {"low": "low", "medium": "medium", "high": "high", "hd": "high"}


def quality_tier(quality: str | None) -> str:
    """The tier a `quality` value means: `low`, `medium` or `high` (auto and DALL·E's standard
    are medium, its hd is high)."""
    return _TIERS.get(quality or "auto", "medium")


def _dearest(figures: list[float | None]) -> float | None:
    """The highest figure; None when any shape is unpriced."""
    priced = [figure for figure in figures if figure is not None]
    return max(priced) if priced and len(priced) == len(figures) else None


def _check_prompt(parsed: ParsedPrompt, model: ModelSpec, *, has_images: bool) -> None:
    if not parsed.text.strip():
        raise InvalidRequest(
            "The prompt is empty: describe the image you want, such as `a cute cat 16:9`.",
            param="prompt")
    if not has_images:
        model.check_text_only()   # img2img / inpainting cannot draw from text alone
    model.check_prompt(parsed.text)


def _sd_mask(model: ModelSpec, images: tuple[InputImage, ...],
             mask: InputImage | None) -> bytes | None:
    """The inpainting mask: the one sent, else (OpenAI's rule) the image's own transparency."""
    sd = sd_mask(mask, images[0]) if mask is not None else None
    if model.mask and sd is None:
        sd = mask_from_alpha(images[0])
        # Only an inpainting model cannot work without one (an upstream edits API can).
        if sd is None and model.needs_image:
            raise InvalidRequest(
                f"{model.short_name} repaints only a masked area: send a `mask` (fully "
                "transparent where the image should change), or an image with transparent "
                "pixels there.", param="mask", code="mask_required")
    return sd


def input_ratio(image: InputImage) -> SizeSpec:
    """A size request with the proportions of the input (within 1:8 to 8:1)."""
    ratio = Fraction(image.width, image.height).limit_denominator(_RATIO_DENOMINATOR)
    ratio = max(Fraction(1, RATIO_MAX), min(Fraction(RATIO_MAX, 1), ratio))
    terms = (ratio.numerator, ratio.denominator)
    return SizeSpec(ratio=terms, width=None, height=None, source="%d:%d" % terms)
