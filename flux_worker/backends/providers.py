"""The one backend the pipeline sees: each request goes to the provider of its model.

Every configured provider (catalog/providers.py) has one backend here; a model's `provider`
says which draws it. So the pipeline, storage, links, costs and every interface stay unaware of
which provider drew: they see one `ImageBackend`.
"""

from __future__ import annotations

from typing import Mapping

from ..errors import ModelNotFound
from ..generation.backend import GeneratedImage, GenerationRequest, ImageBackend


class Providers:
    """Routes each generation to the backend of its model's provider."""

    def __init__(self, backends: Mapping[str, ImageBackend]):
        if not backends:
            raise ValueError("at least one provider is needed")
        self.backends = dict(backends)
        # The backends on, joined: `demo` alone for the embedded default.
        self.name = "+".join(backend.name for backend in self.backends.values())

    def generate(self, request: GenerationRequest) -> GeneratedImage:
        """Draw with the model's own provider."""
        backend = self.backends.get(request.model.provider)
        if backend is None:
            # The registry offers only models of providers that are on, so this is a model
            # from an older configuration (a stored response, a fallback list): say so.
            raise ModelNotFound(
                f"The model `{request.model.short_name}` belongs to the provider "
                f"`{request.model.provider}`, which is not configured here. GET /v1/models lists "
                "the available models.", param="model")
        return backend.generate(request)
