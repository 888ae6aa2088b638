"""One request written into a workflow's graph, at the inputs its map names."""

from __future__ import annotations

import secrets
from typing import Any

from ...catalog.comfyui import Workflow
from ...catalog.spec import SEED_MAX
from ...generation.backend import GenerationRequest


def fill(workflow: Workflow, request: GenerationRequest, uploads: dict[str, str]) -> dict[str, Any]:
    """The graph to submit: a fresh copy with the request's values at the mapped inputs.

    `uploads` holds the names ComfyUI gave the uploaded input image and mask (`image`, `mask`).
    What the request leaves out keeps the workflow's own value (its negative prompt, steps,
    cfg), except the seed: ComfyUI caches a graph it has run, so the same seed twice would
    answer the same picture for two images of one `n`.
    """
    graph = workflow.fresh_graph()
    width, height = request.model.upstream_size(request.width, request.height)
    values: dict[str, Any] = {
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "width": width,
        "height": height,
        "seed": request.seed if request.seed is not None else secrets.randbelow(SEED_MAX + 1),
        "steps": request.steps,
        "guidance": request.guidance,
        "strength": request.strength,
        **uploads,
    }
    for what, slot in workflow.map.inputs.named().items():
        value = values.get(what)
        if value is not None:
            graph[slot.node]["inputs"][slot.input] = value
    return graph
