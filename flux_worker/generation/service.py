"""The one way into a generation, for every interface (chat, the Images API, edits, MCP).

An interface parses its request into an `ImageOrder`, says who asks (`Caller`), and calls
`Generations.start`, which always goes the same way:

    1. the model and what one image may cost, from the order alone: a bad request is refused
       here, before it counts against any limit
    2. storage, checked once: an image that cannot be kept must not be paid for
    3. admission: rate limit, in-flight slots and budget reservation (a `Ticket`)
    4. only then the input images are read (downloads, decodes) and the job is planned

It returns a `Generation`: the plan and its claim on slots and neurons. The interface renders it
(all images at once, or step by step for a chat answer) and formats the outcome; `close()` ends
the claim exactly once, on every path: success, failure, cancel, or a stream nobody read.
No Flask here.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Protocol, Sequence

from ..cost.admission import Admission, Ticket
from ..cost.books import Hold
from ..inputs.intake import ImageIntake
from ..storage.health import StoreHealth
from .job import Batch, Caller, ImageJob, ImageOrder, ImageResult, PromptChoice
from .pipeline import Pipeline
from .planner import Planner


class Recorder(Protocol):
    """Told what each generation stored, for whom (history/recorder.py's History)."""

    def record(self, caller: Caller, job: ImageJob, prompt: str,
               results: Sequence[ImageResult]) -> None:
        """Note the stored `results` drawn from `prompt`; must never raise."""


class Generation:
    """An admitted, planned generation of `n` images; `close()` gives its claim back once."""

    def __init__(self, job: ImageJob, n: int, ticket: Ticket, pipeline: Pipeline,
                 caller: Caller, recorder: Recorder | None = None):
        self.job = job
        self.n = n
        self.caller = caller
        self._ticket = ticket
        self._pipeline = pipeline
        self._recorder = recorder
        # What a chat-shaped answer reports beside its text (the Responses API's image call):
        # the prompt the image model got and the image it drew, set by `render`.
        self.prompt: str | None = None
        self.result: ImageResult | None = None
        # Called in the rendering thread just before the upstream call: a background response
        # closes its cancel window there, so a cancel either stops it first or not at all.
        self.before_render: Callable[[], None] | None = None
        # Told `(step, of_steps)` while a backend that reports progress draws (ComfyUI): set
        # by a chat stream before its thread starts, to show "step N of M".
        self.progress: Callable[[int, int], None] | None = None

    @property
    def hold(self) -> Hold | None:
        """The budget reservation (None when nothing is priced)."""
        return self._ticket.hold

    @property
    def neurons(self) -> float | None:
        """The neurons settled so far (None when nothing is priced)."""
        return self.hold.neurons if self.hold is not None else None

    @property
    def estimate(self) -> float | None:
        """The neurons reserved for the whole generation (None when nothing is priced)."""
        return self.hold.estimate if self.hold is not None else None

    @property
    def usd(self) -> float | None:
        """The US dollars settled so far (None when nothing is priced in dollars)."""
        return self.hold.usd if self.hold is not None else None

    def choose_prompt(self) -> PromptChoice:
        """The prompt the image model gets: translated when a translator is set."""
        return self._pipeline.choose_prompt(self.job, self.caller.cancel)

    def render(self, prompt: str) -> ImageResult:
        """Generate, fit and store one image of the job (a chat answer's)."""
        self.prompt = prompt
        if self.before_render is not None:
            self.before_render()
        self.result = self._pipeline.render(self.job, prompt, cancel=self.caller.cancel,
                                            hold=self.hold, progress=self.progress)
        if self._recorder is not None:
            self._recorder.record(self.caller, self.job, prompt, [self.result])
        return self.result

    def render_all(self) -> Batch:
        """Translate once, then render all `n` images; keep all of them or none."""
        batch = self._pipeline.render_batch(self.job, self.n, cancel=self.caller.cancel,
                                            hold=self.hold)
        if self._recorder is not None:
            self._recorder.record(self.caller, self.job, batch.choice.prompt, batch.results)
        return batch

    def close(self) -> None:
        """Give back the slots and the neurons not settled; later calls do nothing."""
        self._ticket.release()

    def __enter__(self) -> "Generation":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Generations:
    """Starts generations: the sequence every interface shares."""

    def __init__(self, *, planner: Planner, pipeline: Pipeline, admission: Admission,
                 intake: ImageIntake, health: StoreHealth, recorder: Recorder | None = None):
        self.planner = planner
        self.pipeline = pipeline
        self.admission = admission
        self.intake = intake
        self.health = health
        self.recorder = recorder    # the image history; None: IMAGE_HISTORY=off

    def check(self, caller: Caller) -> None:
        """Raise RateLimited when the caller is already over its limit; charge nothing.

        For work an interface does before it knows whether an image is wanted (a chat
        client's background requests), so a caller over its limit gets no work done at all.
        """
        self.admission.check(caller.identity, caller.terms)

    def start(self, order: ImageOrder, caller: Caller) -> Generation:
        """Admit and plan `order` for `caller`; the caller must close the Generation.

        :raises InvalidRequest: the order cannot be drawn (nothing charged), or one of its
            images cannot be used (read after admission: the rate limit counted the request).
        :raises StorageError: storage is down (nothing charged).
        :raises Overloaded, RateLimited, QuotaExceeded: admission refused (nothing read).
        """
        model, requested = self.planner.choose_model(order, caller)
        estimate = self.planner.estimate(order, model)
        self.health.check()
        ticket = self.admission.admit(caller.identity, order.n, key=caller.key,
                                      estimate=estimate.neurons, estimate_usd=estimate.usd,
                                      terms=caller.terms)
        try:
            images = tuple(self.intake.load(source) for source in order.images)
            mask = self.intake.load(order.mask) if order.mask is not None else None
            job = self.planner.plan(order, model, requested, images, mask)
            job = replace(job, alternatives=self.planner.alternatives(
                order, job, caller, images, mask))
            if ticket.hold is not None:
                # An edit reserved for the dearest shape its input might have had.
                neurons, usd = job.estimate, job.estimate_usd
                ticket.hold.lower_to(None if neurons is None else neurons * order.n,
                                     None if usd is None else usd * order.n)
        except BaseException:
            ticket.release()
            raise
        return Generation(job, order.n, ticket, self.pipeline, caller, self.recorder)
