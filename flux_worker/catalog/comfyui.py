"""The operator's ComfyUI workflows as models: `comfyui:<workflow name>`, one per workflow file.

A workflow is a file in ComfyUI's API format (ComfyUI: "Export (API)"): node id ->
`{"class_type", "inputs"}`, a link being `["<node id>", slot]`. Beside it, `<name>.map.json`
names the node inputs this service fills (the prompt, the negative prompt, width and height,
seed, steps, guidance, denoise as `strength`, and for edit workflows the input image and mask)
and what the model offers (description, size limits, steps max, whether it edits). A sidecar,
not a key inside the workflow: the exported file stays exactly as ComfyUI wrote it, so it can be
re-exported and dropped in again. Both are parsed and checked once, at start: a map naming a
node or an input that the workflow lacks stops the service with a message naming the file.

COMFYUI_WORKFLOWS lists the files (or a folder of them); empty: the examples shipped beside
this module, in comfyui_workflows/ (packaged, so a pip-installed service has them too). Nothing
here calls ComfyUI: backends/comfyui/ fills and sends the graphs.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .providers import COMFYUI
from .spec import MIN_STEPS, ModelSpec, SizeRange, UsdPrice

PREFIX = "comfyui:"
MAP_SUFFIX = ".map.json"
# The examples shipped with the service (a checkout or the container image keep them here).
SHIPPED = Path(__file__).resolve().parent / "comfyui_workflows"   # packaged with the code
# The nodes whose results ComfyUI keeps in /history (and serves through /view).
OUTPUT_CLASSES = ("SaveImage", "PreviewImage")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# A workflow file is small (a few KB); a bound keeps a wrong path (a checkpoint!) from being read.
MAX_FILE_BYTES = 1024 * 1024
# ComfyUI added these workflows to the catalog today; a fixed date keeps /v1/models stable.
_CREATED = 1767225600


class Slot(BaseModel):
    """One node input: `{"node": "6", "input": "text"}`."""

    model_config = ConfigDict(extra="forbid")
    node: str = Field(min_length=1)
    input: str = Field(min_length=1)


class Inputs(BaseModel):
    """Which node input takes each value this service sends; only `prompt` is required."""

    model_config = ConfigDict(extra="forbid")
    prompt: Slot
    negative_prompt: Slot | None = None
    width: Slot | None = None
    height: Slot | None = None
    seed: Slot | None = None
    steps: Slot | None = None
    guidance: Slot | None = None     # KSampler's `cfg`
    strength: Slot | None = None     # KSampler's `denoise` in an img2img workflow
    image: Slot | None = None        # LoadImage's `image`: the uploaded input's name
    mask: Slot | None = None         # LoadImageMask's `image`: the uploaded mask's name

    def named(self) -> dict[str, Slot]:
        """The slots that are set, by what they take."""
        return {name: slot for name in type(self).model_fields
                if (slot := getattr(self, name)) is not None}


class SizeLimits(BaseModel):
    """The sides the workflow's checkpoint draws well, and its size when none is asked."""

    model_config = ConfigDict(extra="forbid")
    min: int = Field(256, ge=16, le=8192)
    max: int = Field(2048, ge=16, le=8192)
    default: tuple[int, int] = (1024, 1024)

    @model_validator(mode="after")
    def _ordered(self) -> "SizeLimits":
        if self.min > self.max:
            raise ValueError(f"size.min ({self.min}) is larger than size.max ({self.max})")
        if not all(self.min <= side <= self.max for side in self.default):
            raise ValueError(f"size.default {list(self.default)} is outside "
                             f"{self.min}..{self.max}")
        return self


class WorkflowMap(BaseModel):
    """The sidecar `<name>.map.json`."""

    model_config = ConfigDict(extra="forbid")
    description: str = Field("", max_length=300)
    edits: bool = False              # true: an input image is required (img2img, inpainting)
    size: SizeLimits = SizeLimits()
    steps_max: int = Field(50, ge=MIN_STEPS, le=1000)
    guidance_range: tuple[float, float] = (1.0, 30.0)
    output: str | None = None        # the output node's id; None: the first SaveImage
    inputs: Inputs


@dataclass(frozen=True)
class Workflow:
    """One checked workflow: its name, its graph as exported, and its map."""

    name: str
    path: str
    graph: dict[str, Any]
    map: WorkflowMap
    output: str                      # the node whose first image is the answer

    @property
    def model_id(self) -> str:
        return PREFIX + self.name

    def fresh_graph(self) -> dict[str, Any]:
        """A copy to fill for one request (the loaded graph is shared by every thread)."""
        return copy.deepcopy(self.graph)

    def default(self, what: str) -> Any:
        """The value the workflow itself has where `what` (a name of `Inputs`) goes."""
        slot = self.map.inputs.named().get(what)
        return None if slot is None else self.graph[slot.node]["inputs"][slot.input]


def workflow_files(sources: tuple[str, ...], shipped: Path = SHIPPED) -> tuple[Path, ...]:
    """The workflow files COMFYUI_WORKFLOWS names: files as given, folders' `*.json` files
    (not their maps), sorted; no sources: the shipped examples.

    :raises ValueError: a source that does not exist.
    """
    found: list[Path] = []
    for source in sources or (str(shipped),):
        path = Path(source).expanduser()
        if path.is_dir():
            found += sorted(p for p in path.glob("*.json") if not p.name.endswith(MAP_SUFFIX))
        elif path.is_file():
            found.append(path)
        else:
            raise ValueError(f"{source}: no such file or folder")
    if not found:
        raise ValueError(f"no workflow (*.json) in {', '.join(sources or (str(shipped),))}")
    return tuple(dict.fromkeys(found))


def load_workflows(sources: tuple[str, ...], shipped: Path = SHIPPED) -> tuple[Workflow, ...]:
    """Read and check every workflow and its map.

    :raises ValueError: naming the file and what is wrong in it.
    """
    workflows = tuple(load_workflow(path) for path in workflow_files(sources, shipped))
    names = [w.name.lower() for w in workflows]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise ValueError(f"two workflows are named {duplicate!r}: each file name must differ")
    return workflows


def load_workflow(path: Path) -> Workflow:
    """One workflow file and its `<name>.map.json` beside it, checked against each other."""
    name = path.name.removesuffix(".json")
    if not _NAME.fullmatch(name):
        raise ValueError(f"{path}: a workflow's file name becomes its model id "
                         f"`comfyui:<name>`; use letters, digits, `.`, `_` and `-`")
    graph = _read_json(path)
    _check_graph(path, graph)
    map_path = path.with_name(name + MAP_SUFFIX)
    if not map_path.is_file():
        raise ValueError(f"{path}: its node map {map_path.name} is missing beside it "
                         "(docs/providers.md: ComfyUI)")
    try:
        mapping = WorkflowMap.model_validate(_read_json(map_path))
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem["loc"]) or "the map"
        raise ValueError(f"{map_path}: {where}: {problem['msg']}") from None
    _check_map(map_path, graph, mapping)
    output = mapping.output or next(
        (nid for nid, node in graph.items() if node["class_type"] in OUTPUT_CLASSES), None)
    if output is None:
        raise ValueError(f"{path}: no SaveImage node, so ComfyUI would keep no image")
    if output not in graph:
        raise ValueError(f"{map_path}: output names node {output!r}, which {path.name} lacks")
    return Workflow(name, str(path), graph, mapping, output)


def _read_json(path: Path) -> Any:
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read ({exc.strerror})") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ValueError(f"{path}: larger than 1 MB, which no workflow is")
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from None


def _check_graph(path: Path, graph: Any) -> None:
    if not isinstance(graph, dict) or not graph:
        raise ValueError(f"{path}: not a workflow in API format (an object of nodes); in "
                         "ComfyUI, use Workflow > Export (API)")
    if "nodes" in graph and "links" in graph:
        raise ValueError(f"{path}: this is ComfyUI's UI format; export it in API format "
                         "(Workflow > Export (API))")
    for node_id, node in graph.items():
        if not (isinstance(node, dict) and isinstance(node.get("class_type"), str)
                and isinstance(node.get("inputs"), dict)):
            raise ValueError(f"{path}: node {node_id!r} needs `class_type` and `inputs`")
        for key, value in node["inputs"].items():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[1], int) \
                    and str(value[0]) not in graph:
                raise ValueError(f"{path}: node {node_id!r} input {key!r} links to node "
                                 f"{value[0]!r}, which does not exist")


def _check_map(map_path: Path, graph: dict[str, Any], mapping: WorkflowMap) -> None:
    for what, slot in mapping.inputs.named().items():
        node = graph.get(slot.node)
        if node is None:
            raise ValueError(f"{map_path}: inputs.{what} names node {slot.node!r}, which the "
                             "workflow lacks")
        if slot.input not in node["inputs"]:
            raise ValueError(f"{map_path}: inputs.{what} names input {slot.input!r} of node "
                             f"{slot.node!r} ({node['class_type']}), which has only: "
                             + ", ".join(node["inputs"]))
        if isinstance(node["inputs"][slot.input], list):
            raise ValueError(f"{map_path}: inputs.{what}: {slot.node}.{slot.input} is a link "
                             "to another node; name the input that holds the value")
    inputs = mapping.inputs
    if (inputs.width is None) != (inputs.height is None):
        raise ValueError(f"{map_path}: map both width and height, or neither")
    if mapping.edits != (inputs.image is not None):
        raise ValueError(f"{map_path}: an edit workflow (`edits: true`) maps `inputs.image` "
                         "(its LoadImage), and only an edit workflow does")
    if inputs.mask is not None and inputs.image is None:
        raise ValueError(f"{map_path}: a mask needs the input image mapped too")


def comfyui_models(workflows: tuple[Workflow, ...],
                   price_usd: float | None) -> tuple[ModelSpec, ...]:
    """The catalog entries of the workflows; `price_usd` per image (COMFYUI_PRICE_USD).

    Text-to-image workflows first: with ComfyUI alone, the first model is the default one,
    and it must draw from a prompt alone.
    """
    price = UsdPrice(per_image=price_usd or 0.0,
                     note="the operator's own GPU: COMFYUI_PRICE_USD per image")
    ordered = sorted(workflows, key=lambda workflow: workflow.map.edits)
    return tuple(_spec(workflow, price) for workflow in ordered)


def _spec(workflow: Workflow, price: UsdPrice) -> ModelSpec:
    mapping, inputs = workflow.map, workflow.map.inputs
    default_steps = workflow.default("steps")
    sized = inputs.width is not None
    limits = mapping.size
    description = mapping.description or f"ComfyUI workflow {workflow.name}"
    return ModelSpec(
        workflow.model_id, (), "comfyui", description, provider=COMFYUI, usd=price,
        created=_CREATED,
        size=SizeRange(limits.min, limits.max, limits.default) if sized else None,
        native_size=limits.default,
        steps_field="steps" if inputs.steps is not None else None,
        steps_max=mapping.steps_max,
        default_steps=(min(int(default_steps), mapping.steps_max)
                       if isinstance(default_steps, int) else mapping.steps_max),
        seed=inputs.seed is not None,
        negative_prompt=inputs.negative_prompt is not None,
        guidance=mapping.guidance_range if inputs.guidance is not None else None,
        source_image=mapping.edits, needs_image=mapping.edits,
        mask=inputs.mask is not None, strength=inputs.strength is not None)
