"""The image backend interface: one generation request in, image bytes out."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Protocol

from ..catalog.spec import ModelSpec
from ..cost.books import ImageCost
from ..inputs.image import InputImage


@dataclass(frozen=True)
class GenerationRequest:
    """Everything a backend needs for one image. Sizes are what the client will get."""

    prompt: str
    model: ModelSpec
    width: int
    height: int
    steps: int | None = None            # already clamped to the model's range; None: model default
    seed: int | None = None
    negative_prompt: str | None = None
    guidance: float | None = None
    # Image input: what an edit or a variation brings besides the prompt.
    images: tuple[InputImage, ...] = ()  # checked, upright; references or the source image
    mask: bytes | None = None            # SD mask PNG (white repaint) at the first image's size
    strength: float | None = None        # 0..1, for models with `strength`
    variation: bool = False              # an images/variations request (no user prompt)
    # "transparent" only where the model can draw it (ModelSpec.transparency; the planner checks).
    background: str = "opaque"
    # Set when the client has gone: a backend checks it before any retry.
    cancel: threading.Event | None = None
    # This image's share of the budget reservation: a backend that picks among accounts with
    # budgets claims one here, and a call billed although it failed is booked here (the
    # pipeline books a success). None: nothing is counted.
    cost: ImageCost | None = None
    # Told `(step, of_steps)` as the upstream reports them, by a backend that can (ComfyUI's
    # websocket): a chat stream shows them. Called in the generating thread; None: nobody asks.
    progress: Callable[[int, int], None] | None = None


@dataclass(frozen=True)
class GeneratedImage:
    """Raw image bytes as the backend produced them (any size; the pipeline fits them)."""

    data: bytes
    content_type: str | None = None     # as declared upstream; the pipeline sniffs the bytes anyway
    neurons: float | None = None        # what the upstream says it billed, when it says so
    usd: float | None = None            # the same in US dollars, from a provider that says so
    account: str | None = None          # the Cloudflare account id that made it


class ImageBackend(Protocol):
    """Turns a GenerationRequest into image bytes or raises an errors.APIError."""

    name: str  # "cloudflare", "demo", "openai"

    def generate(self, request: GenerationRequest) -> GeneratedImage:
        """Generate one image; raise errors.APIError subclasses on failure."""
