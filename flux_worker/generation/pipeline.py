"""Rendering a planned generation: translate -> generate -> fit to size -> store.

A provider's failure that another model may cure lets the job's alternatives draw in turn
(MODEL_FALLBACKS, `auto`; README: Fallback); the image is fitted to the job's size whoever drew.

The steps are separate methods so the chat stream can report each as it completes, and
`render_batch` runs the whole of an Images request. Nothing is stored unless every earlier step
succeeded, so a failed generation leaves no trace. A `cancel` event, set when the client has gone,
is checked before every step that costs something (translation, the upstream call, a retry,
storing), so a generation nobody waits for stops as soon as it can.

What the upstream billed is booked the moment it answers, before anything that can still fail
(the cancel check, fitting, storing): the call cannot be recalled, so a client that hung up is
charged for it like one that waited, and so is its key's budget and the account's.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Callable

from .. import metrics
from ..catalog.spec import SEED_MAX
from ..cost.books import Hold, ImageCost
from ..errors import APIError, Cancelled, StorageError, UpstreamError, raise_if_cancelled
from ..moderation.policy import Moderation
from ..storage import ImageStore, new_key
from ..storage.health import StoreHealth
from . import fitting
from .backend import GenerationRequest, ImageBackend
from .fallback import SKIPPED, fallback_reason
from .job import Batch, ImageJob, ImageResult, PromptChoice
from .provider_health import ProviderHealth
from .translate import TranslationFailed, Translator

log = logging.getLogger(__name__)


class Pipeline:
    """Runs generations against one backend, translator and store."""

    def __init__(self, *, backend: ImageBackend, store: ImageStore, translator: Translator | None,
                 expiration: int, health: StoreHealth | None = None,
                 providers: ProviderHealth | None = None, moderation: Moderation | None = None):
        self.backend = backend
        self.moderation = moderation  # MODERATION: judges prompts before any paid call
        self.providers = providers    # which providers fail in a row (None: not counted)
        self.store = store
        self.translator = translator
        self.expiration = expiration
        self.health = health or StoreHealth(store)

    def choose_prompt(self, job: ImageJob, cancel: threading.Event | None = None) -> PromptChoice:
        """Translate the prompt when a translator is set; fall back to the original on failure.

        With MODERATION on, the user's prompt is judged before the translation (an LLM call
        that may cost) and the translation before the image call: ModerationRefused.
        """
        if job.variation:
            return PromptChoice(job.prompt)
        self._moderate(job.prompt, job, cancel)
        if self.translator is None:
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
        if text != job.prompt:
            self._moderate(text, job, cancel)
        return PromptChoice(text, model=result.model)

    def _moderate(self, text: str, job: ImageJob, cancel: threading.Event | None) -> None:
        if self.moderation is not None:
            raise_if_cancelled(cancel)
            self.moderation.check(text, low=job.moderation_low)

    def render(self, job: ImageJob, prompt: str, *, seed: int | None = None,
               cancel: threading.Event | None = None, hold: Hold | None = None,
               progress: Callable[[int, int], None] | None = None) -> ImageResult:
        """Generate, fit to the job's exact size and store; return the stored image.

        When the job's provider fails in a way another model may cure (fallback.py's rule),
        its alternatives draw in order, skipped providers last; the error of the last one
        tried is raised, naming every model tried. The image's neurons and dollars (the
        upstream's figures, else the estimates of the model that drew) are settled on `hold` as
        soon as a backend has answered: billed is billed, whatever happens next.

        Storage was checked once, when the generation was admitted (`Generations.start`).
        `progress` is handed to the backend (GenerationRequest.progress).

        :raises Cancelled: when `cancel` is set before the image is stored.
        """
        seed = job.seed if seed is None else seed
        raise_if_cancelled(cancel)
        attempts = self._attempts(job)
        reason = None if attempts[0] is job else SKIPPED
        # The models passed over: tried and failed, or skipped (the asked one first).
        tried: list[str] = []
        if reason is not None:
            metrics.observe_fallback(job.model.id, attempts[0].model.id, SKIPPED)
            tried.append(job.model.short_name)
        for index, attempt in enumerate(attempts):
            try:
                result = self._draw(attempt, job, prompt, seed, cancel, hold, progress)
            except APIError as exc:
                why = fallback_reason(exc)
                if why is not None and self.providers is not None:
                    self.providers.failed(attempt.model.provider)
                tried.append(attempt.model.short_name)
                if why is None or index + 1 == len(attempts):
                    if len(tried) > 1 or attempt is not job:
                        exc.message += f" (models tried in order: {', '.join(tried)})"
                    raise
                following = attempts[index + 1].model
                metrics.observe_fallback(attempt.model.id, following.id, why)
                log.warning("%s failed (%s); %s draws instead", attempt.model.id, why,
                            following.id)
                reason = reason or why
                continue
            if self.providers is not None:
                self.providers.succeeded(attempt.model.provider)
            if attempt is job:
                return result
            return replace(result, fallback=reason or SKIPPED, tried=tuple(tried))
        raise AssertionError("a job has at least one attempt")   # pragma: no cover

    def _attempts(self, job: ImageJob) -> tuple[ImageJob, ...]:
        """The job, then its alternatives; those of skipped providers only when none is left."""
        attempts = (job, *job.alternatives)
        if len(attempts) == 1 or self.providers is None:
            return attempts
        usable: dict[str, bool] = {}
        for attempt in attempts:
            provider = attempt.model.provider
            if provider not in usable:
                usable[provider] = self.providers.usable(provider)
        healthy = tuple(a for a in attempts if usable[a.model.provider])
        # A skipped provider is still tried when nothing else can draw: better than refusing.
        return healthy or attempts

    def _draw(self, attempt: ImageJob, job: ImageJob, prompt: str, seed: int | None,
              cancel: threading.Event | None, hold: Hold | None,
              progress: Callable[[int, int], None] | None = None) -> ImageResult:
        """Draw `attempt` (the job or an alternative) and fit and store it at the job's size."""
        model = attempt.model
        if attempt is not job:
            if model.max_prompt and len(prompt) > model.max_prompt:
                prompt = prompt[: model.max_prompt].rsplit(" ", 1)[0]
            seed = (seed if seed is not None else attempt.seed) if model.seed else None
        cost = ImageCost(hold, attempt.estimate, model.id, attempt.estimate_usd)
        request = GenerationRequest(
            prompt=prompt, model=model, width=job.width, height=job.height,
            steps=attempt.steps, seed=seed, negative_prompt=attempt.negative,
            guidance=attempt.guidance, images=attempt.images, mask=attempt.mask,
            strength=attempt.strength, variation=attempt.variation, background=attempt.background,
            cancel=cancel, cost=cost, progress=progress)
        started = time.monotonic()
        # The fit is inside: bytes that are not an image are the model's failure, not a success.
        with metrics.track_generation(model.id) as generation:
            generated = self.backend.generate(request)
            generation.upstream_done()
            neurons = cost.billed(generated.neurons, generated.account, generated.usd)
            # Fitting and storing cost this server's time and storage: not for a client that left.
            try:
                raise_if_cancelled(cancel)
            except Cancelled:
                metrics.observe_cancelled_neurons(model.id, neurons or 0.0)
                raise
            try:
                fitted = fitting.fit(generated.data, job.width, job.height, job.output_format,
                                     job.output_compression)
            except fitting.NotAnImage as exc:
                raise UpstreamError(
                    f"The image model {model.short_name} returned bytes that are not an "
                    "image. Try again; if it persists, pick another model.") from exc
        key = new_key()
        try:
            self.store.put(key, fitted.data, fitted.content_type, self.expiration)
        except StorageError as exc:
            self.health.failed(exc)
            raise
        metrics.observe_stored(len(fitted.data))
        log.debug("generated %s %s with %s in %.0f ms (%d bytes)", key[:6], job.size,
                 model.id, (time.monotonic() - started) * 1000, len(fitted.data))
        return ImageResult(key=key, data=fitted.data, content_type=fitted.content_type,
                           width=fitted.width, height=fitted.height, seed=seed,
                           neurons=neurons, usd=cost.usd, account=generated.account,
                           model=model)

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

