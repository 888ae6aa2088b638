"""The models this instance offers, found by id, alias or OpenAI name, and the one an edit uses."""

from __future__ import annotations

from ..errors import InvalidRequest, ModelNotFound
from .spec import B64_JSON, BOTH, DALL_E_ALIASES, GPT_IMAGE_ALIASES, URL, ModelSpec
from .workers_ai import CATALOG


class ModelRegistry:
    """The models this instance offers, looked up by id or alias."""

    def __init__(self, offered: tuple[ModelSpec, ...], default: ModelSpec,
                 gpt_image_names: tuple[str, ...] = GPT_IMAGE_ALIASES,
                 edit_model: ModelSpec | None = None):
        self.models = offered
        self.default = default
        self.edit_model = edit_model   # EDIT_MODEL: draws image requests for models without input
        self._by_name: dict[str, ModelSpec] = {}
        for spec in offered:
            if self._by_name.setdefault(spec.id.lower(), spec) is not spec:
                raise ValueError(f"two providers offer a model with the id {spec.id!r}")
        # Ids first, then aliases in the catalog's order: an alias never hides an id, and a short
        # name two providers share means the first provider's model (the other keeps its id).
        for spec in offered:
            for name in spec.aliases:
                self._by_name.setdefault(name.lower(), spec)
        self._own_names = frozenset(self._by_name)
        self._b64_names = frozenset(n.strip().lower() for n in gpt_image_names if n.strip())
        for name in (*DALL_E_ALIASES, *sorted(self._b64_names)):
            self._by_name.setdefault(name, default)

    @classmethod
    def build(cls, names: tuple[str, ...], default_name: str,
              catalog: tuple[ModelSpec, ...] = CATALOG,
              gpt_image_names: tuple[str, ...] = GPT_IMAGE_ALIASES,
              edit_name: str = "") -> "ModelRegistry":
        """Pick the offered models by id or alias; raise ValueError naming an unknown one."""
        everything = cls(catalog, catalog[0], gpt_image_names)
        offered = (tuple(dict.fromkeys(everything.find_known(n) for n in names)) if names
                   else catalog)
        default = everything.find_known(default_name)
        if default not in offered:
            offered = (default, *offered)
        edit_model = everything.find_known(edit_name) if edit_name else None
        if edit_model is not None and edit_model.max_images == 0:
            raise ValueError(f"EDIT_MODEL {edit_name!r} takes no input images; pick one that "
                             "does, such as flux-2-klein-4b")
        if edit_model is not None and edit_model not in offered:
            offered = (*offered, edit_model)
        return cls(offered, default, gpt_image_names, edit_model)

    def default_response_format(self, name: str | None, own: str = BOTH) -> str:
        """The Images API answer form when the request names none: `url`, `b64_json` or `both`.

        As OpenAI's models: GPT image names answer base64, DALL·E names links. This service's
        own names answer `own` (IMAGE_RESPONSE_FORMAT), by default both fields in each item,
        so clients that read either one work unchanged.
        """
        if not name or not isinstance(name, str):
            return own
        folded = name.strip().lower()
        if folded in self._b64_names:
            return B64_JSON
        if folded in DALL_E_ALIASES and folded not in self._own_names:
            return URL
        return own

    def is_openai_name(self, name: str | None) -> bool:
        """Whether `name` is one of OpenAI's model names standing for the default model."""
        if not name or not isinstance(name, str):
            return False
        folded = name.strip().lower()
        return folded not in self._own_names and (folded in self._b64_names
                                                  or folded in DALL_E_ALIASES)

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


def model_for_images(requested: ModelSpec, count: int, has_mask: bool,
                     edit_model: ModelSpec | None,
                     offered: tuple[ModelSpec, ...] = ()) -> ModelSpec:
    """The model that draws a request bringing `count` images; raise InvalidRequest if none can.

    A model that takes no images is replaced by EDIT_MODEL (the answer says which model drew).
    With a mask, a model that takes none is replaced by the first `offered` one that takes a
    mask and the images: the client asked for the masked area to change, whichever model
    draws (OpenAI's names take masks; no Workers AI model they stand for does). A model that
    takes fewer images than sent, or no mask when none offered does, is an error the client
    can fix.
    """
    if has_mask and not requested.mask:
        masked = next((m for m in offered if m.mask and m.max_images >= count), None)
        if masked is not None:
            return masked
    model = requested
    if requested.max_images == 0:
        if edit_model is None or edit_model.max_images == 0:
            takers = [m.short_name for m in offered if m.max_images][:2]
            such = (f", such as {' or '.join(takers)}" if takers
                    else "; none offered here does, so set EDIT_MODEL to one")
            raise InvalidRequest(
                f"{requested.short_name} cannot take input images, and no EDIT_MODEL is set to "
                "draw edits instead. Pick a model that takes images (GET /v1/models/<id> lists "
                f"`image_input`){such}.", param="model", code="model_cannot_take_images")
        model = edit_model
    if count > model.max_images:
        raise InvalidRequest(
            f"{model.short_name} takes at most {model.max_images} input image"
            f"{'s' if model.max_images != 1 else ''}; {count} were sent. Send fewer images.",
            param="image", code="too_many_images")
    if has_mask and not model.mask:
        raise InvalidRequest(
            f"{model.short_name} does not take a mask. Leave the mask out, or use a model that "
            "takes one, such as stable-diffusion-v1-5-inpainting.", param="mask",
            code="mask_not_supported")
    return model
