"""One image generation: plan -> translate -> generate -> fit to size -> store.

The steps are separate methods so the chat stream can report each as it completes. Nothing is
stored unless every earlier step succeeded, so a failed generation leaves no trace.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, field

from . import imaging, metrics
from .backends.base import GenerationRequest, ImageBackend
from .catalog import ModelSpec
from .errors import InvalidRequest, UpstreamError
from .prompt import ParsedPrompt, SizeSpec, resolve_size
from .storage import ImageStore, new_key
from .translate import TranslationFailed, Translator

log = logging.getLogger("flux_worker.pipeline")

MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class ImageJob:
    """What to generate, fully resolved and validated before any upstream call."""

    original: str                 # the user's text as typed
    prompt: str                   # with size token and options removed
    model: ModelSpec
    width: int
    height: int
    ratio: str                    # "16:9": what the translator is told
    steps: int | None = None
    seed: int | None = None
    negative: str | None = None
    guidance: float | None = None
    output_format: str | None = None
    ignored: tuple[str, ...] = ()  # options given that this model cannot take

    @property
    def size(self) -> str:
        """The size as `WIDTHxHEIGHT`."""
        return f"{self.width}x{self.height}"


@dataclass(frozen=True)
class PromptChoice:
    """The prompt that goes to the image model and where it came from."""

    prompt: str
    model: str | None = None            # LLM name when translated
    skipped: str | None = None          # why translation was skipped, when it was


@dataclass(frozen=True)
class ImageResult:
    """A stored image."""

    key: str
    data: bytes = field(repr=False)
    content_type: str = "image/jpeg"
    width: int = 0
    height: int = 0
    seed: int | None = None


class Pipeline:
    """Runs generations against one backend, translator and store."""

    def __init__(self, *, backend: ImageBackend, store: ImageStore, translator: Translator | None,
                 expiration: int, default_steps: int):
        self.backend = backend
        self.store = store
        self.translator = translator
        self.expiration = expiration
        self.default_steps = default_steps

    def plan(self, parsed: ParsedPrompt, original: str, model: ModelSpec, *,
             size: SizeSpec | None = None, seed: int | None = None, steps: int | None = None,
             negative: str | None = None, guidance: float | None = None,
             output_format: str | None = None) -> ImageJob:
        """Resolve size, steps and options for `model`; raise InvalidRequest for a bad prompt."""
        if not parsed.text.strip():
            raise InvalidRequest(
                "The prompt is empty: describe the image you want, such as `a cute cat 16:9`.",
                param="prompt")
        model.check_prompt(parsed.text)
        resolved = resolve_size(size or parsed.size, model)
        seed = seed if seed is not None else parsed.seed
        steps = steps if steps is not None else parsed.steps
        negative = negative if negative is not None else parsed.negative
        ignored = []
        if "seed" in parsed.options and not model.seed:
            ignored.append("--seed")
        if "steps" in parsed.options and not model.steps_field:
            ignored.append("--steps")
        if "no" in parsed.options and not model.negative_prompt:
            ignored.append("--no")
        if model.seed and seed is None:
            # A seed the user can see lets them reproduce or vary an image they liked.
            seed = secrets.randbelow(MAX_SEED + 1)
        return ImageJob(
            original=original, prompt=parsed.text, model=model,
            width=resolved.width, height=resolved.height, ratio=resolved.ratio_label,
            steps=model.clamp_steps(steps or self.default_steps) if model.steps_field else None,
            seed=seed if model.seed else None,
            negative=negative if model.negative_prompt else None,
            guidance=_clamp_guidance(model, guidance),
            output_format=output_format, ignored=tuple(ignored))

    def choose_prompt(self, job: ImageJob) -> PromptChoice:
        """Translate the prompt when a translator is set; fall back to the original on failure."""
        if self.translator is None:
            return PromptChoice(job.prompt)
        try:
            result = self.translator.translate(job.prompt, job.ratio)
        except TranslationFailed as exc:
            log.warning("translation skipped: %s", exc)
            return PromptChoice(job.prompt, skipped=str(exc) or "translation failed")
        text = result.prompt
        if job.model.max_prompt and len(text) > job.model.max_prompt:
            # The user's own prompt fitted; an over-long LLM answer is not their fault.
            text = text[: job.model.max_prompt].rsplit(" ", 1)[0]
        return PromptChoice(text, model=result.model)

    def render(self, job: ImageJob, prompt: str, *, seed: int | None = None) -> ImageResult:
        """Generate, fit to the job's exact size and store; return the stored image."""
        seed = job.seed if seed is None else seed
        request = GenerationRequest(
            prompt=prompt, model=job.model, width=job.width, height=job.height,
            steps=job.steps, seed=seed, negative_prompt=job.negative, guidance=job.guidance)
        started = time.monotonic()
        # The fit is inside: bytes that are not an image are the model's failure, not a success.
        with metrics.track_generation(job.model.id) as generation:
            generated = self.backend.generate(request)
            generation.upstream_done()
            try:
                fitted = imaging.fit(generated.data, job.width, job.height, job.output_format)
            except imaging.NotAnImage as exc:
                raise UpstreamError(
                    f"The image model {job.model.short_name} returned bytes that are not an "
                    "image. Try again; if it persists, pick another model.") from exc
        key = new_key()
        self.store.put(key, fitted.data, fitted.content_type, self.expiration)
        metrics.observe_stored(len(fitted.data))
        log.debug("generated %s %s with %s in %.0f ms (%d bytes)", key[:6], job.size,
                 job.model.id, (time.monotonic() - started) * 1000, len(fitted.data))
        return ImageResult(key=key, data=fitted.data, content_type=fitted.content_type,
                           width=fitted.width, height=fitted.height, seed=seed)

    def variant_seed(self, job: ImageJob, index: int) -> int | None:
        """The seed of the index-th image of a batch: distinct images, reproducible from the first."""
        if job.seed is None:
            # Models without a seed vary by themselves; the index still tells a local
            # backend (demo) to draw a different image.
            return index or None
        return (job.seed + index) % (MAX_SEED + 1)


def _clamp_guidance(model: ModelSpec, guidance: float | None) -> float | None:
    if guidance is None or model.guidance is None:
        return None
    lo, hi = model.guidance
    return max(lo, min(hi, float(guidance)))
