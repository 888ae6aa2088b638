"""One image generation: plan -> translate -> generate -> fit to size -> store.

The steps are separate methods so the chat stream can report each as it completes, and
`render_batch` runs the whole of an Images request. Nothing is stored unless every earlier step
succeeded, so a failed generation leaves no trace. A `cancel` event, set when the client has gone,
is checked before every step that costs something (translation, the upstream call, a retry,
storing), so a generation nobody waits for stops as soon as it can.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from .. import metrics
from ..backends.base import GenerationRequest, ImageBackend
from ..catalog.spec import SEED_MAX, ModelSpec
from ..cost.books import Hold
from ..errors import InvalidRequest, StorageError, UpstreamError, raise_if_cancelled
from ..inputs.intake import InputImage
from ..storage import ImageStore, new_key
from . import fitting
from .prompt import ParsedPrompt
from .sizes import SizeSpec, resolve_size
from .translate import TranslationFailed, Translator

log = logging.getLogger(__name__)


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
    clamped: tuple[str, ...] = ()  # options brought into the model's range: "--steps 50 → 8"
    # --- image input (issue 11) ---------------------------------------------------------------
    images: tuple[InputImage, ...] = ()  # references / source image, checked by the intake
    mask: bytes | None = None            # SD mask PNG (white repaint) at the first image's size
    strength: float | None = None
    variation: bool = False              # images/variations: no user prompt, never translated
    requested: ModelSpec | None = None   # the model asked for, when EDIT_MODEL drew instead
    # --- end image input ----------------------------------------------------------------------

    @property
    def size(self) -> str:
        """The size as `WIDTHxHEIGHT`."""
        return f"{self.width}x{self.height}"

    @property
    def estimate(self) -> float | None:
        """Neurons one image of this job costs, from the size really sent; None when unpriced."""
        # image input (issue 11): each FLUX.2 reference goes under 512x512, one input tile.
        references = len(self.images) if self.model.reference_images else 0
        return self.model.estimate(self.width, self.height, self.steps, references)


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
    neurons: float | None = None        # upstream's billed figure, else the estimate
    account: str | None = None          # the Cloudflare account that made it


@dataclass(frozen=True)
class Batch:
    """The images of one request and the prompt they were drawn from."""

    choice: PromptChoice
    results: list[ImageResult]


class StoreHealth:
    """A cached answer to "can an image be stored now?", asked before every upstream call.

    Paying for a generation that cannot be kept wastes the user's quota, so storage is checked
    first; caching the answer keeps the check off the hot path (one ping per `ok_for` seconds),
    and a failure is remembered for `failed_for` seconds so an outage costs no ping per request.
    One request at a time pings: while it does, the others go by the last answer (or wait for
    this one when there is none yet). Letting every request of that moment ping made dozens of
    SQLite writes queue behind each other under load (docs/benchmarks.md).
    """

    def __init__(self, store: ImageStore, *, ok_for: float = 5.0, failed_for: float = 1.0,
                 clock: Callable[[], float] = time.monotonic):
        self.store = store
        self.ok_for = ok_for
        self.failed_for = failed_for
        self._clock = clock
        self._lock = threading.Lock()
        self._pinging = threading.Lock()
        self._checked = float("-inf")
        self._failure: StorageError | None = None

    def check(self) -> None:
        """Raise StorageError when storage is known to be, or now found to be, unusable."""
        now = self._clock()
        with self._lock:
            failure, age = self._failure, now - self._checked
        if failure is not None and age < self.failed_for:
            raise failure
        if failure is None and age < self.ok_for:
            return
        if not self._pinging.acquire(blocking=False):
            if age == float("inf"):        # no answer yet: wait for the one being fetched
                with self._pinging:
                    pass
                return self.check()
            if failure is not None:        # another request is pinging: the last answer holds
                raise failure
            return
        try:
            self.probe()
        finally:
            self._pinging.release()

    def probe(self) -> None:
        """Ping storage now (no cache) and remember the answer; raise StorageError on failure."""
        try:
            self.store.ping()
        except StorageError as exc:
            self.failed(exc)
            raise
        with self._lock:
            self._checked, self._failure = self._clock(), None

    def failed(self, exc: StorageError) -> None:
        """Remember that storage just failed (a write did), so the next requests skip upstream."""
        with self._lock:
            self._checked, self._failure = self._clock(), exc


class Pipeline:
    """Runs generations against one backend, translator and store."""

    def __init__(self, *, backend: ImageBackend, store: ImageStore, translator: Translator | None,
                 expiration: int, default_steps: int):
        self.backend = backend
        self.store = store
        self.translator = translator
        self.expiration = expiration
        self.default_steps = default_steps
        self.health = StoreHealth(store)

    def check_storage(self) -> None:
        """Raise StorageError (503) at once when no image could be stored now."""
        self.health.check()

    def plan(self, parsed: ParsedPrompt, original: str, model: ModelSpec, *,
             size: SizeSpec | None = None, seed: int | None = None, steps: int | None = None,
             negative: str | None = None, guidance: float | None = None,
             output_format: str | None = None, images: tuple[InputImage, ...] = (),
             mask: bytes | None = None, strength: float | None = None,
             variation: bool = False, requested: ModelSpec | None = None) -> ImageJob:
        """Resolve size, steps and options for `model`; raise InvalidRequest for a bad prompt."""
        if not parsed.text.strip():
            raise InvalidRequest(
                "The prompt is empty: describe the image you want, such as `a cute cat 16:9`.",
                param="prompt")
        if not images:
            model.check_text_only()   # img2img / inpainting cannot draw from text alone
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
            seed = secrets.randbelow(SEED_MAX + 1)
        job_steps = model.clamp_steps(steps or self.default_steps) if model.steps_field else None
        # Only what the user asked for is reported; FLUX_NUM_STEPS is clamped silently.
        clamped = (f"--steps {steps} → {job_steps}",) if steps and job_steps not in (
            None, steps) else ()
        return ImageJob(
            original=original, prompt=parsed.text, model=model,
            width=resolved.width, height=resolved.height, ratio=resolved.ratio_label,
            steps=job_steps,
            seed=seed if model.seed else None,
            negative=negative if model.negative_prompt else None,
            guidance=model.clamp_guidance(guidance),
            output_format=output_format, ignored=tuple(ignored), clamped=clamped,
            images=images, mask=mask if model.mask else None,
            strength=strength if model.strength else None, variation=variation,
            requested=requested if requested is not model else None)

    def choose_prompt(self, job: ImageJob, cancel: threading.Event | None = None) -> PromptChoice:
        """Translate the prompt when a translator is set; fall back to the original on failure."""
        if self.translator is None or job.variation:
            return PromptChoice(job.prompt)
        raise_if_cancelled(cancel)
        try:
            if job.images:
                # An edit's text is an instruction ("make it blue"), not a scene to describe.
                result = self.translator.translate(job.prompt, job.ratio, edit=True)
            else:
                result = self.translator.translate(job.prompt, job.ratio)
        except TranslationFailed as exc:
            log.warning("translation skipped: %s", exc)
            return PromptChoice(job.prompt, skipped=str(exc) or "translation failed")
        text = result.prompt
        if job.model.max_prompt and len(text) > job.model.max_prompt:
            # The user's own prompt fitted; an over-long LLM answer is not their fault.
            text = text[: job.model.max_prompt].rsplit(" ", 1)[0]
        return PromptChoice(text, model=result.model)

    def render(self, job: ImageJob, prompt: str, *, seed: int | None = None,
               cancel: threading.Event | None = None, hold: Hold | None = None) -> ImageResult:
        """Generate, fit to the job's exact size and store; return the stored image.

        The image's neurons (Cloudflare's figure, else the estimate) are settled on `hold`.

        :raises StorageError: before any upstream call when storage is down.
        :raises Cancelled: when `cancel` is set before the image is stored.
        """
        seed = job.seed if seed is None else seed
        raise_if_cancelled(cancel)
        self.check_storage()
        request = GenerationRequest(
            prompt=prompt, model=job.model, width=job.width, height=job.height,
            steps=job.steps, seed=seed, negative_prompt=job.negative, guidance=job.guidance,
            images=job.images, mask=job.mask, strength=job.strength, variation=job.variation,
            cancel=cancel)
        started = time.monotonic()
        # The fit is inside: bytes that are not an image are the model's failure, not a success.
        with metrics.track_generation(job.model.id) as generation:
            generated = self.backend.generate(request)
            generation.upstream_done()
            # Fitting and storing cost this server's time and storage: not for a client that left.
            raise_if_cancelled(cancel)
            try:
                fitted = fitting.fit(generated.data, job.width, job.height, job.output_format)
            except fitting.NotAnImage as exc:
                raise UpstreamError(
                    f"The image model {job.model.short_name} returned bytes that are not an "
                    "image. Try again; if it persists, pick another model.") from exc
        key = new_key()
        try:
            self.store.put(key, fitted.data, fitted.content_type, self.expiration)
        except StorageError as exc:
            self.health.failed(exc)
            raise
        metrics.observe_stored(len(fitted.data))
        log.debug("generated %s %s with %s in %.0f ms (%d bytes)", key[:6], job.size,
                 job.model.id, (time.monotonic() - started) * 1000, len(fitted.data))
        neurons = generated.neurons if generated.neurons is not None else job.estimate
        if hold is not None and neurons is not None:
            hold.settle(neurons, estimate=job.estimate or 0.0, model=job.model.id,
                        account=generated.account)
        return ImageResult(key=key, data=fitted.data, content_type=fitted.content_type,
                           width=fitted.width, height=fitted.height, seed=seed,
                           neurons=neurons, account=generated.account)

    def render_batch(self, job: ImageJob, n: int, cancel: threading.Event | None = None,
                     hold: Hold | None = None) -> Batch:
        """Translate once, then render `n` images in parallel; keep all of them or none.

        Each image gets its own seed (see `variant_seed`), so a batch holds different pictures.
        """
        choice = self.choose_prompt(job, cancel)
        seeds = [self.variant_seed(job, i) for i in range(n)]
        if n == 1:
            return Batch(choice, [self.render(job, choice.prompt, seed=seeds[0], cancel=cancel,
                                              hold=hold)])
        with ThreadPoolExecutor(max_workers=n, thread_name_prefix="batch") as pool:
            futures = [pool.submit(self.render, job, choice.prompt, seed=s, cancel=cancel,
                                   hold=hold) for s in seeds]
            outcomes: list[ImageResult | BaseException] = []
            for future in futures:
                try:
                    outcomes.append(future.result())
                except Exception as exc:  # remembered, re-raised once the others are undone
                    outcomes.append(exc)
        results = [o for o in outcomes if isinstance(o, ImageResult)]
        failures = [o for o in outcomes if not isinstance(o, ImageResult)]
        if failures:
            for done in results:
                self._discard(done.key)
            raise failures[0]
        return Batch(choice, results)

    def _discard(self, key: str) -> None:
        """Delete an image of a failed batch; a storage failure here must not hide the cause."""
        try:
            self.store.delete(key)
        except StorageError:
            log.warning("could not delete image %s of a failed batch", key[:6])

    def variant_seed(self, job: ImageJob, index: int) -> int | None:
        """The seed of the index-th image of a batch: distinct, reproducible from the first."""
        if job.seed is None:
            # Models without a seed vary by themselves; the index still tells a local
            # backend (demo) to draw a different image.
            return index or None
        return (job.seed + index) % (SEED_MAX + 1)

