"""What each Workers AI text-to-image model accepts and returns.

The Cloudflare backend builds every request from these entries, so a request carries only
the fields its model accepts (today's API rejects any other with error 5006). Adding a model is
adding one entry. Facts come from the model schemas summarised in the reference notes.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ModelNotFound, PromptTooLong

# OpenAI's own image model names. Some clients (NextChat) only use the Images API for these,
# so they are aliases of the configured default model.
OPENAI_ALIASES = ("dall-e-2", "dall-e-3", "gpt-image-1")
# Seeds are unsigned 32-bit integers for every model that takes one.
SEED_MAX = 2**32 - 1


@dataclass(frozen=True)
class SizeRange:
    """Inclusive width/height limits the model accepts, and its default output."""

    min: int
    max: int
    default: tuple[int, int] = (1024, 1024)


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

    @property
    def short_name(self) -> str:
        """The first alias, a name a person can type."""
        return self.aliases[0] if self.aliases else self.id

    def clamp_steps(self, steps: int) -> int:
        """Bring a step count into the model's accepted range."""
        return max(1, min(self.steps_max, int(steps)))

    def check_prompt(self, prompt: str) -> None:
        """Raise PromptTooLong when the prompt exceeds what the model accepts."""
        if self.max_prompt is not None and len(prompt) > self.max_prompt:
            raise PromptTooLong(
                f"The prompt has {len(prompt)} characters; {self.short_name} accepts at most "
                f"{self.max_prompt}. Shorten the prompt and try again.", param="prompt")

    def output_limits(self) -> tuple[int, int]:
        """The smallest and largest side an answer may state for this model."""
        if self.size:
            return self.size.min, self.size.max
        # Without size control the output is cropped and scaled from the native image;
        # upscaling past it would only blur, so its longest side is the ceiling.
        return 64, max(self.native_size)

    def capabilities(self) -> dict:
        """A JSON description for /v1/models/<id>."""
        lo, hi = self.output_limits()
        return {
            "encoding": self.encoding,
            "size_control": self.size is not None,
            "size_range": {"min": lo, "max": hi},
            "default_size": "%dx%d" % (self.size.default if self.size else self.native_size),
            "steps": ({"field": self.steps_field, "max": self.steps_max}
                      if self.steps_field else None),
            "seed": self.seed,
            "guidance": list(self.guidance) if self.guidance else None,
            "negative_prompt": self.negative_prompt,
            "response": self.response,
            "max_prompt_chars": self.max_prompt,
        }


_SD = dict(size=SizeRange(256, 2048), steps_field="num_steps", steps_max=20, seed=True,
           guidance=(0.0, 30.0), negative_prompt=True, response="binary")
_FLUX2 = dict(encoding="multipart", size=SizeRange(256, 1920, (1024, 768)), seed=True,
              guidance=(0.0, 20.0))

CATALOG: tuple[ModelSpec, ...] = (
    ModelSpec("@cf/black-forest-labs/flux-1-schnell", ("flux-1-schnell", "flux-schnell", "flux"),
              "black-forest-labs", "FLUX.1 [schnell]: fast, 1-8 steps, fixed 1024x1024 output",
              steps_field="steps", steps_max=8, max_prompt=2048),
    ModelSpec("@cf/black-forest-labs/flux-2-dev", ("flux-2-dev",), "black-forest-labs",
              "FLUX.2 [dev]: high quality, slower", steps_field="steps", steps_max=50, **_FLUX2),
    ModelSpec("@cf/black-forest-labs/flux-2-klein-4b", ("flux-2-klein-4b", "klein-4b"),
              "black-forest-labs", "FLUX.2 [klein] 4B: fast, fixed 4 steps", steps_field=None,
              **_FLUX2),
    ModelSpec("@cf/black-forest-labs/flux-2-klein-9b", ("flux-2-klein-9b", "klein-9b"),
              "black-forest-labs", "FLUX.2 [klein] 9B: fixed 4 steps", steps_field=None, **_FLUX2),
    ModelSpec("@cf/leonardo/lucid-origin", ("lucid-origin",), "leonardo",
              "Leonardo Lucid Origin: prompt-faithful, sharp text",
              size=SizeRange(256, 2500, (1120, 1120)), steps_field="steps", steps_max=40,
              seed=True, guidance=(0.0, 10.0)),
    ModelSpec("@cf/leonardo/phoenix-1.0", ("phoenix-1.0", "phoenix"), "leonardo",
              "Leonardo Phoenix 1.0: good prompt adherence and text",
              size=SizeRange(256, 2048), steps_field="num_steps", steps_max=50, seed=True,
              guidance=(2.0, 10.0), negative_prompt=True, response="binary"),
    ModelSpec("@cf/bytedance/stable-diffusion-xl-lightning", ("sdxl-lightning",), "bytedance",
              "SDXL-Lightning: 1024px images in a few steps", **_SD),
    ModelSpec("@cf/stabilityai/stable-diffusion-xl-base-1.0", ("sdxl-base", "sdxl"),
              "stabilityai", "Stable Diffusion XL base 1.0", **_SD),
    ModelSpec("@cf/lykon/dreamshaper-8-lcm", ("dreamshaper-8-lcm", "dreamshaper"), "lykon",
              "DreamShaper 8 LCM: photorealistic SD 1.5 fine-tune", **_SD),
)


class ModelRegistry:
    """The models this instance offers, looked up by id or alias."""

    def __init__(self, offered: tuple[ModelSpec, ...], default: ModelSpec):
        self.models = offered
        self.default = default
        self._by_name: dict[str, ModelSpec] = {}
        for spec in offered:
            for name in (spec.id, *spec.aliases):
                self._by_name[name.lower()] = spec
        for name in OPENAI_ALIASES:
            self._by_name.setdefault(name, default)

    @classmethod
    def build(cls, names: tuple[str, ...], default_name: str,
              catalog: tuple[ModelSpec, ...] = CATALOG) -> "ModelRegistry":
        """Pick the offered models by id or alias; raise ValueError naming an unknown one."""
        everything = cls(catalog, catalog[0])
        offered = tuple(dict.fromkeys(everything.find_known(n) for n in names)) if names else catalog
        default = everything.find_known(default_name)
        if default not in offered:
            offered = (default, *offered)
        return cls(offered, default)

    def find_known(self, name: str) -> ModelSpec:
        spec = self._by_name.get(name.strip().lower())
        if spec is None:
            raise ValueError(f"unknown image model {name!r}; known: "
                             + ", ".join(s.short_name for s in self.models))
        return spec

    def get(self, name: str | None) -> ModelSpec | None:
        """The model named by id or alias, or None."""
        if not name or not isinstance(name, str):
            return None
        return self._by_name.get(name.strip().lower())

    def require(self, name: str | None, param: str = "model") -> ModelSpec:
        """The named model, the default when no name is given, else ModelNotFound."""
        if name is None or name == "":
            return self.default
        spec = self.get(name)
        if spec is None:
            raise ModelNotFound(
                f"The model `{name}` does not exist or is not offered here. "
                "GET /v1/models lists the available models.", param=param)
        return spec

    def for_chat(self, name: str | None) -> ModelSpec:
        """The model named in a chat request, falling back to the default for any other name."""
        return self.get(name) or self.default
