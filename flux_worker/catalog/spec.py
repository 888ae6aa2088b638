"""The catalog's value types: what a model accepts, what it costs, and the names clients use.

A `ModelSpec` says which fields a Workers AI model takes, its limits and its price; the Cloudflare
backend builds every request from it, so a request carries only the fields its model accepts
(today's API rejects any other with error 5006). Nothing here knows which models exist: that is
`workers_ai.py`, and which of them this instance offers is `registry.py`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import InvalidRequest, PromptTooLong
from .providers import WORKERS_AI

# OpenAI's own image model names. Some clients (NextChat) only use the Images API for these,
# so they are aliases of the configured default model. DALL·E answers links by default;
# OpenAI's GPT image models always answer base64, and OpenAI's documented code decodes
# `data[0].b64_json` at once, so those names answer `b64_json` unless a link is asked for.
DALL_E_ALIASES = ("dall-e-2", "dall-e-3")
GPT_IMAGE_ALIASES = ("gpt-image-1", "gpt-image-1.5", "gpt-image-1-mini", "gpt-image-2")
URL, B64_JSON = "url", "b64_json"
BOTH = "both"                  # each item carries `url` and `b64_json`
RESPONSE_FORMATS = (BOTH, URL, B64_JSON)


# The fewest diffusion steps any model takes; each model's most is its `steps_max`.
MIN_STEPS = 1

# Seeds are unsigned 32-bit integers for every model that takes one.
SEED_MAX = 2**32 - 1


def round8(value: float, lo: int, hi: int) -> int:
    """Round to a multiple of 8 within lo..hi (to lo..hi itself when no multiple of 8 fits).

    Image models work in multiples of 8 pixels; every size this service computes or sends is
    rounded here.
    """
    rounded = math.floor(value / 8 + 0.5) * 8    # ties go up: 500 -> 504, as people round
    if rounded > hi:
        rounded = hi // 8 * 8
    if rounded < lo:
        rounded = -(-lo // 8) * 8
    return max(lo, min(hi, rounded))


def parse_ratio(text: str) -> tuple[int, int]:
    """`"16:9"` -> (16, 9); raise ValueError for anything else."""
    left, sep, right = text.partition(":")
    if not sep or not left.isdigit() or not right.isdigit() or not int(left) or not int(right):
        raise ValueError(f"{text!r} is not an aspect ratio such as 16:9")
    return int(left), int(right)


def nearest_shape(shapes: tuple[tuple[int, int], ...], width: int,
                  height: int) -> tuple[int, int]:
    """The shape whose proportions are nearest width:height (ties: the first listed)."""
    wanted = math.log(max(1, width) / max(1, height))
    return min(shapes, key=lambda s: abs(math.log(s[0] / s[1]) - wanted))


def ratio_size(ratio: str, longest: int) -> tuple[int, int]:
    """The size of an aspect ratio whose longer side is `longest` (multiples of 8)."""
    w, h = parse_ratio(ratio)
    scale = longest / max(w, h)
    return round8(w * scale, 8, longest), round8(h * scale, 8, longest)


@dataclass(frozen=True)
class SizeRange:
    """Inclusive width/height limits the model accepts, and its default output."""

    min: int
    max: int
    default: tuple[int, int] = (1024, 1024)

    def fit(self, value: int) -> int:
        """Round a side to the nearest multiple of 8 inside the limits (what is sent upstream)."""
        return round8(value, self.min, self.max)


# -- prices (reference §6 and "Pricing in neurons") -------------------------------------------

# Workers AI bills in neurons: $0.011 per 1,000 on Workers Paid; 10,000 a day are free.
USD_PER_NEURON = 0.011 / 1000
FREE_DAILY_NEURONS = 10_000
TILE = 512


def neurons_for_usd(dollars: float) -> float:
    """Return the neurons that cost `dollars` at the paid rate (prices listed in dollars)."""
    return dollars / USD_PER_NEURON


def tiles(width: int, height: int) -> int:
    """Return the 512x512 tiles that cover an image: ceil(w/512) * ceil(h/512).

    A partial tile is counted whole: the model works on whole tiles, Cloudflare's own example
    (1024x1024 = 4 tiles) fits, and an estimate that errs high keeps a budget from overshooting.
    """
    return math.ceil(max(1, width) / TILE) * math.ceil(max(1, height) / TILE)


@dataclass(frozen=True)
class Price:
    """What one image costs in neurons; every term is optional (zero when not charged).

    tile: per 512x512 output tile; step: per step; tile_step: per output tile per step
    (FLUX.2-dev); input_tile / input_tile_step: per 512x512 tile of the reference images.
    """

    tile: float = 0.0
    step: float = 0.0
    tile_step: float = 0.0
    input_tile: float = 0.0
    input_tile_step: float = 0.0
    listed: bool = True            # False: Cloudflare lists no price; the figure is an assumption
    note: str = ""

    def neurons(self, out_tiles: int, steps: int, in_tiles: int = 0) -> float:
        """Return the neurons for output tiles, steps and input (reference image) tiles."""
        return (self.tile * out_tiles + self.step * steps + self.tile_step * out_tiles * steps
                + self.input_tile * in_tiles + self.input_tile_step * in_tiles * steps)

    def formula(self) -> str:
        """Describe the price as text, such as `4.8 per 512x512 tile + 9.6 per step`."""
        terms = [(self.tile, "per 512x512 output tile"), (self.step, "per step"),
                 (self.tile_step, "per output tile per step"),
                 (self.input_tile, "per input-image tile"),
                 (self.input_tile_step, "per input-image tile per step")]
        text = " + ".join(f"{_figure(v)} neurons {what}" for v, what in terms if v)
        return text or "0 neurons"

    def as_json(self) -> dict:
        """The price for /v1/models/<id>."""
        return {"per_tile": self.tile, "per_step": self.step, "per_tile_step": self.tile_step,
                "per_input_tile": self.input_tile,
                "per_input_tile_step": self.input_tile_step, "tile": f"{TILE}x{TILE}",
                "formula": self.formula(), "listed": self.listed,
                "usd_per_neuron": USD_PER_NEURON, **({"note": self.note} if self.note else {})}


# A billed megapixel is 1024x1024 pixels: the image providers that price per megapixel (Black
# Forest Labs, fal) bill a 1024x1024 image as one, not as the two a decimal million would make.
MEGAPIXEL = 1024 * 1024


@dataclass(frozen=True)
class UsdPrice:
    """What one image costs in US dollars, as a provider prices it: per image, per megapixel
    of output (and of input images, for providers that bill those), or both.

    `listed=False` marks a figure the provider does not publish where this service reads its
    prices (Cloudflare lists no dollar price for its partner models): an assumption taken from
    the model vendor's own public price, said as such in /v1/models.
    """

    per_image: float = 0.0
    per_megapixel: float = 0.0
    per_input_megapixel: float = 0.0
    listed: bool = True
    note: str = ""

    def usd(self, width: int, height: int, input_megapixels: float = 0.0) -> float:
        """Dollars for one image of `width` x `height` with `input_megapixels` of inputs.

        Megapixels are rounded up to whole ones, as the providers that bill per megapixel do.
        """
        megapixels = math.ceil(width * height / MEGAPIXEL - 1e-9) if self.per_megapixel else 0
        inputs = math.ceil(input_megapixels - 1e-9) if self.per_input_megapixel else 0
        return (self.per_image + self.per_megapixel * megapixels
                + self.per_input_megapixel * inputs)

    def formula(self) -> str:
        """Describe the price as text, such as `$0.04 per image`."""
        terms = [(self.per_image, "per image"), (self.per_megapixel, "per output megapixel"),
                 (self.per_input_megapixel, "per input megapixel")]
        return " + ".join(f"${v:g} {what}" for v, what in terms if v) or "$0"

    def as_json(self) -> dict:
        """The dollar price for /v1/models/<id>."""
        return {"per_image": self.per_image, "per_megapixel": self.per_megapixel,
                "per_input_megapixel": self.per_input_megapixel, "formula": self.formula(),
                "listed": self.listed, **({"note": self.note} if self.note else {})}


def _figure(value: float) -> str:
    return f"{value:.4g}" if value < 100 else f"{value:.1f}"


@dataclass(frozen=True)
class ModelSpec:
    """One text-to-image model: request encoding, accepted fields, response kind."""

    id: str
    aliases: tuple[str, ...]
    owned_by: str
    description: str
    encoding: str = "json"                 # "json" or "multipart"
    size: SizeRange | None = None          # None: no size control (fixed output)
    native_size: tuple[int, int] = (1024, 1024)  # what a model without size control returns
    steps_field: str | None = "steps"      # "steps", "num_steps" or None (fixed steps)
    steps_max: int = 8
    seed: bool = False
    guidance: tuple[float, float] | None = None
    negative_prompt: bool = False
    response: str = "json"                 # "json" (result.image base64) or "binary"
    max_prompt: int | None = None          # characters
    created: int = 1735689600
    price: Price | None = None             # None: no Workers AI price (another provider's model)
    default_steps: int = 4                 # what the model runs when no steps are sent
    # Image input: what the model takes besides the prompt.
    reference_images: int = 0              # FLUX.2: up to N references as input_image_0..N-1
    source_image: bool = False             # img2img: one source image (image_b64)
    mask: bool = False                     # inpainting: a mask beside the source image
    strength: bool = False                 # how far the result may move from the source, 0..1
    needs_image: bool = False              # refuses a text-only request (img2img, inpainting)
    transparency: bool = False             # can draw a transparent background (none on Workers AI)
    # Who draws it (backends/providers.py routes on this): "workers-ai", "cloudflare-partner",
    # "openai", "demo", ... Ids of different providers never collide (Workers AI's start `@cf/`,
    # the partner models' are `vendor/name`, the others carry a `provider:` prefix).
    provider: str = WORKERS_AI
    usd: UsdPrice | None = None            # None: the dollar figure follows from the neurons
    # Models without free sizes: the sizes (WxH) or aspect ratios ("16:9") they draw. The
    # nearest is sent, and the pipeline fits the answer to the exact size asked.
    size_choices: tuple[tuple[int, int], ...] = ()
    aspect_ratios: tuple[str, ...] = ()

    @property
    def short_name(self) -> str:
        """The first alias, a name a person can type."""
        return self.aliases[0] if self.aliases else self.id

    def clamp_steps(self, steps: int) -> int:
        """Bring a step count into the model's accepted range."""
        return max(MIN_STEPS, min(self.steps_max, int(steps)))

    def clamp_guidance(self, guidance: float | None) -> float | None:
        """Bring guidance into the model's range; None when it takes none (or none was given)."""
        if guidance is None or self.guidance is None:
            return None
        lo, hi = self.guidance
        return max(lo, min(hi, float(guidance)))

    def check_prompt(self, prompt: str) -> None:
        """Raise PromptTooLong when the prompt exceeds what the model accepts."""
        if self.max_prompt is not None and len(prompt) > self.max_prompt:
            raise PromptTooLong(
                f"The prompt has {len(prompt)} characters; {self.short_name} accepts at most "
                f"{self.max_prompt}. Shorten the prompt and try again.", param="prompt")

    @property
    def max_images(self) -> int:
        """How many input images the model takes (0: none)."""
        return self.reference_images or (1 if self.source_image else 0)

    def image_capabilities(self) -> dict:
        """The image-input part of /v1/models/<id>."""
        return {
            "reference_images": self.reference_images,
            "source_image": self.source_image,
            "max_images": self.max_images,
            "mask": self.mask,
            "strength": self.strength,
            "requires_image": self.needs_image,
        }

    def check_background(self, background: str | None) -> None:
        """Raise InvalidRequest when a transparent background is asked of a model without one.

        An opaque image where transparency was asked would break the client's compositing
        silently; a 400 says so before anything is spent.
        """
        if background == "transparent" and not self.transparency:
            raise InvalidRequest(
                f"{self.short_name} cannot draw a transparent background (no model offered "
                'here can). Send `background: "auto"` or "opaque", or leave it out.',
                param="background", code="transparency_not_supported")

    def check_text_only(self) -> None:
        """Raise InvalidRequest when the model cannot draw without an input image."""
        if self.needs_image:
            raise InvalidRequest(
                f"{self.short_name} changes an existing picture and needs an input image: use "
                "POST /v1/images/edits (or attach an image in chat), or pick a text-to-image "
                "model.", param="model", code="image_required")

    def output_limits(self) -> tuple[int, int]:
        """The smallest and largest side an answer may state for this model."""
        if self.size:
            return self.size.min, self.size.max
        if self.size_choices:
            # Fixed sizes (gpt-image: up to 1536): the largest it draws is the ceiling.
            return 64, max(max(shape) for shape in self.size_choices)
        # Without size control the output is cropped and scaled from the native image;
        # upscaling past it would only blur, so its longest side is the ceiling.
        return 64, max(self.native_size)

    def upstream_size(self, width: int, height: int) -> tuple[int, int]:
        """The size really sent upstream (and billed) for a requested output size."""
        if self.size_choices:
            return nearest_shape(self.size_choices, width, height)
        if self.aspect_ratios:
            return ratio_size(self.nearest_ratio(width, height), max(self.native_size))
        if self.size is None:
            return self.native_size
        return self.size.fit(width), self.size.fit(height)

    def nearest_ratio(self, width: int, height: int) -> str:
        """The offered aspect ratio (`"16:9"`) closest to width:height (the first if none)."""
        if not self.aspect_ratios:
            raise ValueError(f"{self.id} takes no aspect ratio")
        shapes = {ratio: parse_ratio(ratio) for ratio in self.aspect_ratios}
        best = nearest_shape(tuple(shapes.values()), width, height)
        return next(ratio for ratio, shape in shapes.items() if shape == best)

    def estimate(self, width: int, height: int, steps: int | None,
                 input_tiles: int = 0) -> float | None:
        """Neurons one image costs at this size and step count; None for an unpriced model."""
        if self.price is None:
            return None
        sent_w, sent_h = self.upstream_size(width, height)
        ran = self.clamp_steps(steps) if self.steps_field and steps is not None else \
            self.default_steps
        return self.price.neurons(tiles(sent_w, sent_h), ran, input_tiles)

    def estimate_usd(self, width: int, height: int, steps: int | None,
                     input_tiles: int = 0) -> float | None:
        """US dollars one image costs: the provider's dollar price, else the neurons at the
        paid rate (an upper bound while the free daily neurons last); None when unpriced."""
        if self.usd is not None:
            sent_w, sent_h = self.upstream_size(width, height)
            return self.usd.usd(sent_w, sent_h, input_tiles * TILE * TILE / MEGAPIXEL)
        neurons = self.estimate(width, height, steps, input_tiles)
        return None if neurons is None else neurons * USD_PER_NEURON

    def cost_info(self, steps: int | None) -> dict:
        """The price formulas and the estimate for the default size, for /v1/models/<id>."""
        width, height = self.default_size
        estimate = self.estimate(width, height, steps)
        usd = self.estimate_usd(width, height, steps)
        return {"price": self.price.as_json() if self.price else None,
                "price_usd": self.usd.as_json() if self.usd else None,
                "default_size": f"{width}x{height}",
                "estimate_neurons": None if estimate is None else round(estimate, 3),
                "estimate_usd": None if usd is None else round(usd, 6)}

    @property
    def default_size(self) -> tuple[int, int]:
        """What the model draws when no size is asked."""
        return self.size.default if self.size else self.native_size

    def capabilities(self) -> dict:
        """A JSON description for /v1/models/<id>."""
        lo, hi = self.output_limits()
        return {
            "encoding": self.encoding,
            "size_control": self.size is not None,
            "size_range": {"min": lo, "max": hi},
            "default_size": "%dx%d" % self.default_size,
            "sizes": ["%dx%d" % shape for shape in self.size_choices] or None,
            "aspect_ratios": list(self.aspect_ratios) or None,
            "steps": ({"field": self.steps_field, "min": MIN_STEPS, "max": self.steps_max}
                      if self.steps_field else None),
            "seed": self.seed,
            "guidance": list(self.guidance) if self.guidance else None,
            "negative_prompt": self.negative_prompt,
            "response": self.response,
            "max_prompt_chars": self.max_prompt,
            "image_input": self.image_capabilities(),
        }
