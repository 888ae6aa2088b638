"""The value types of a generation: what is asked, by whom, the plan, and what came out.

    ImageOrder   what a client asked for, parsed by its interface, not yet planned; the images
                 it names are sources, not yet read
    Caller       who asks: whom rate limits and budgets count, and the cancel signal
    ImageJob     the plan: model, exact size and options, resolved before any upstream call
    ImageResult  one stored image; Batch: the images of one request and their prompt
    Estimate     what one image may cost, in neurons and in US dollars

Leaf module: importing these pulls in neither Pillow nor the intake nor Flask.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import NamedTuple

from ..catalog.spec import ModelSpec
from ..cost.terms import KeyTerms
from ..inputs.image import ImageSource, InputImage
from .sizes import SizeSpec


@dataclass(frozen=True)
class ImageOrder:
    """One request for images, as every interface hands it to `Generations.start`."""

    prompt: str                             # the user's text as typed, size token included
    model: str | None = None                # as named; None: the default
    n: int = 1
    size: SizeSpec | None = None            # None: the prompt's size token, else the default
    seed: int | None = None
    steps: int | None = None
    negative: str | None = None
    guidance: float | None = None
    strength: float | None = None
    output_format: str | None = None
    output_compression: int | None = None   # JPEG/WebP quality 0-100; None: the encoder's own
    quality: str | None = None              # OpenAI's tiers (fields.QUALITIES); None: auto
    background: str | None = None           # "transparent" only where a model can draw it
    moderation: str | None = None           # OpenAI's `moderation`: "low" relaxes MODERATION
    images: tuple[ImageSource, ...] = ()    # an edit's inputs, read only once admitted
    mask: ImageSource | None = None
    variation: bool = False                 # images/variations: no user prompt
    chat: bool = False                      # a chat client's model name: unknown means default


@dataclass(frozen=True)
class Caller:
    """Who asks for a generation, as the interface it came through knows them."""

    identity: str = field(repr=False)       # whom rate limits count: the key, else an address
    key: str | None = field(default=None, repr=False)   # whose budget: the API key, if any
    cancel: threading.Event = field(default_factory=threading.Event)  # set: the caller left
    terms: KeyTerms | None = None           # a run-time key's own limits and models


class Estimate(NamedTuple):
    """What one image may cost; None: the model is not billed in that unit (both: unpriced)."""

    neurons: float | None
    usd: float | None


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
    output_compression: int | None = None
    quality: str = "medium"       # the tier drawn: "low", "medium" or "high"
    background: str = "opaque"    # what the image has: "opaque" or "transparent"
    moderation_low: bool = False  # the request asked `moderation: "low"`
    ignored: tuple[str, ...] = ()  # options given that this model cannot take
    clamped: tuple[str, ...] = ()  # options brought into the model's range: "--steps 50 → 8"
    images: tuple[InputImage, ...] = ()  # references / source image, checked by the intake
    mask: bytes | None = None            # SD mask PNG (white repaint) at the first image's size
    strength: float | None = None
    variation: bool = False              # images/variations: no user prompt, never translated
    requested: ModelSpec | None = None   # the model asked for, when EDIT_MODEL drew instead
    # Who may draw instead when this job's provider fails (MODEL_FALLBACKS, auto), each planned
    # for its own model at this job's size; tried in order by the pipeline.
    alternatives: tuple["ImageJob", ...] = field(default=(), repr=False)

    @property
    def size(self) -> str:
        """The size as `WIDTHxHEIGHT`."""
        return f"{self.width}x{self.height}"

    @property
    def estimate(self) -> float | None:
        """Neurons one image of this job costs, from the size really sent; None when unpriced."""
        return self.model.estimate(self.width, self.height, self.steps, self._input_tiles)

    @property
    def estimate_usd(self) -> float | None:
        """US dollars one image of this job costs (a dollar price, else the neurons at the paid
        rate); None when unpriced."""
        return self.model.estimate_usd(self.width, self.height, self.steps, self._input_tiles)

    @property
    def _input_tiles(self) -> int:
        # Each FLUX.2 reference goes under 512x512, one input tile.
        return len(self.images) if self.model.reference_images else 0


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
    usd: float | None = None            # the same in US dollars
    account: str | None = None          # the Cloudflare account that made it
    model: ModelSpec | None = None      # the model that drew it (None: the job's)
    fallback: str | None = None         # why not the job's model ("capacity", ...), if not
    tried: tuple[str, ...] = ()         # the models tried before, when another drew


@dataclass(frozen=True)
class Batch:
    """The images of one request and the prompt they were drawn from."""

    choice: PromptChoice
    results: list[ImageResult]
