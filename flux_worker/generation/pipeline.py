"""Rendering a planned generation: translate -> generate -> fit to size -> store.

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

from .. import metrics
from ..catalog.spec import SEED_MAX
from ..cost.books import Hold, ImageCost
from ..errors import Cancelled, StorageError, UpstreamError, raise_if_cancelled
from ..storage import ImageStore, new_key
from ..storage.health import StoreHealth
from . import fitting
from .backend import GenerationRequest, ImageBackend
from .job import Batch, ImageJob, ImageResult, PromptChoice
from .translate import TranslationFailed, Translator

log = logging.getLogger(__name__)


class Pipeline:
    """Runs generations against one backend, translator and store."""

    def __init__(self, *, backend: ImageBackend, store: ImageStore, translator: Translator | None,
                 expiration: int, health: StoreHealth | None = None):
        self.backend = backend
        self.store = store
        self.translator = translator
        self.expiration = expiration
        self.health = health or StoreHealth(store)

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

        The image's neurons and dollars (the upstream's figures, else the estimates) are settled
        on `hold` as soon as the backend has answered: billed is billed, whatever happens next.

        Storage was checked once, when the generation was admitted (`Generations.start`).

        :raises Cancelled: when `cancel` is set before the image is stored.
        """
        seed = job.seed if seed is None else seed
        raise_if_cancelled(cancel)
        cost = ImageCost(hold, job.estimate, job.model.id, job.estimate_usd)
        request = GenerationRequest(
            prompt=prompt, model=job.model, width=job.width, height=job.height,
            steps=job.steps, seed=seed, negative_prompt=job.negative, guidance=job.guidance,
            images=job.images, mask=job.mask, strength=job.strength, variation=job.variation,
            cancel=cancel, cost=cost)
        started = time.monotonic()
        # The fit is inside: bytes that are not an image are the model's failure, not a success.
        with metrics.track_generation(job.model.id) as generation:
            generated = self.backend.generate(request)
            generation.upstream_done()
            neurons = cost.billed(generated.neurons, generated.account, generated.usd)
            # Fitting and storing cost this server's time and storage: not for a client that left.
            try:
                raise_if_cancelled(cancel)
            except Cancelled:
                metrics.observe_cancelled_neurons(job.model.id, neurons or 0.0)
                raise
            try:
                fitted = fitting.fit(generated.data, job.width, job.height, job.output_format,
                                     job.output_compression)
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
        return ImageResult(key=key, data=fitted.data, content_type=fitted.content_type,
                           width=fitted.width, height=fitted.height, seed=seed,
                           neurons=neurons, usd=cost.usd, account=generated.account)

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

