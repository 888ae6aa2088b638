"""The node classes the fake knows, in /object_info's shape, and ComfyUI's checks of a graph.

Written from image-providers.md §4 (and ComfyUI's execution.py, which the reference cites): a
graph is refused with `no_prompt`, `invalid_prompt` (an unknown or missing class_type),
`prompt_no_outputs`, or `prompt_outputs_failed_validation` with `node_errors` per node
(`required_input_missing`, `value_not_in_list`, `value_smaller_than_min`/`_bigger_than_max`,
`return_type_mismatch`, and a link that is no `[id, slot]` pair to an existing node).
"""

from __future__ import annotations

from typing import Any

CHECKPOINTS = ["model.safetensors", "sd_xl_base_1.0.safetensors"]
SAMPLERS = ["euler", "euler_ancestral", "dpmpp_2m"]
SCHEDULERS = ["normal", "karras", "simple"]
SEED_MAX = 0xFFFFFFFFFFFFFFFF


def _int(default: int, lo: int, hi: int) -> list:
    return ["INT", {"default": default, "min": lo, "max": hi}]


def _float(default: float, lo: float, hi: float) -> list:
    return ["FLOAT", {"default": default, "min": lo, "max": hi}]


def _node(required: dict[str, list], output: list[str], *, output_node: bool = False) -> dict:
    return {"input": {"required": required, "optional": {}}, "output": output,
            "output_node": output_node}


def object_info(input_files: list[str],
                checkpoints: list[str] | None = None) -> dict[str, Any]:
    """/object_info: every class; LoadImage's list is the files uploaded so far, and
    CheckpointLoaderSimple's the checkpoints the server has (CHECKPOINTS unless given)."""
    return {
        "KSampler": _node({"model": ["MODEL"], "seed": _int(0, 0, SEED_MAX),
                           "steps": _int(20, 1, 10000), "cfg": _float(8.0, 0.0, 100.0),
                           "sampler_name": [SAMPLERS], "scheduler": [SCHEDULERS],
                           "positive": ["CONDITIONING"], "negative": ["CONDITIONING"],
                           "latent_image": ["LATENT"], "denoise": _float(1.0, 0.0, 1.0)},
                          ["LATENT"]),
        "CheckpointLoaderSimple": _node({"ckpt_name": [list(checkpoints or CHECKPOINTS)]},
                                        ["MODEL", "CLIP", "VAE"]),
        "EmptyLatentImage": _node({"width": _int(512, 16, 16384),
                                   "height": _int(512, 16, 16384),
                                   "batch_size": _int(1, 1, 4096)}, ["LATENT"]),
        "CLIPTextEncode": _node({"text": ["STRING", {"multiline": True}], "clip": ["CLIP"]},
                                ["CONDITIONING"]),
        "VAEDecode": _node({"samples": ["LATENT"], "vae": ["VAE"]}, ["IMAGE"]),
        "VAEEncode": _node({"pixels": ["IMAGE"], "vae": ["VAE"]}, ["LATENT"]),
        "SaveImage": _node({"images": ["IMAGE"], "filename_prefix": ["STRING", {}]}, [],
                           output_node=True),
        "PreviewImage": _node({"images": ["IMAGE"]}, [], output_node=True),
        "LoadImage": _node({"image": [sorted(input_files), {"image_upload": True}]},
                           ["IMAGE", "MASK"]),
        "LoadImageMask": _node({"image": [sorted(input_files)],
                                "channel": [["alpha", "red", "green", "blue"]]}, ["MASK"]),
        "ImageScale": _node({"image": ["IMAGE"],
                             "upscale_method": [["nearest-exact", "bilinear", "lanczos"]],
                             "width": _int(512, 0, 16384), "height": _int(512, 0, 16384),
                             "crop": [["disabled", "center"]]}, ["IMAGE"]),
        "SetLatentNoiseMask": _node({"samples": ["LATENT"], "mask": ["MASK"]}, ["LATENT"]),
    }


class Refused(Exception):
    """A graph ComfyUI would not queue: the 400 body."""

    def __init__(self, body: dict[str, Any]):
        super().__init__(body["error"]["type"])
        self.body = body


def _error(kind: str, message: str, details: str = "", extra: dict | None = None) -> dict:
    return {"type": kind, "message": message, "details": details, "extra_info": extra or {}}


def validate(graph: Any, info: dict[str, Any]) -> list[str]:
    """Check a submitted graph; return its output node ids, or raise Refused."""
    if not isinstance(graph, dict):
        raise Refused({"error": _error("no_prompt", "No prompt provided",
                                       "No prompt provided"), "node_errors": {}})
    for node_id, node in graph.items():
        kind = node.get("class_type") if isinstance(node, dict) else None
        if kind is None or kind not in info:
            what = (f"node {node_id} has no class_type" if kind is None
                    else f"node {kind} does not exist")
            raise Refused({"error": _error("invalid_prompt",
                                           f"Cannot execute because {what}.",
                                           f"Node ID '#{node_id}'"), "node_errors": {}})
    outputs = [nid for nid, node in graph.items() if info[node["class_type"]]["output_node"]]
    if not outputs:
        raise Refused({"error": _error("prompt_no_outputs", "Prompt has no outputs"),
                       "node_errors": []})
    node_errors: dict[str, Any] = {}
    for node_id, node in graph.items():
        errors = _node_errors(graph, node, info)
        if errors:
            node_errors[node_id] = {"errors": errors, "dependent_outputs": outputs,
                                    "class_type": node["class_type"]}
    if node_errors:
        raise Refused({"error": _error("prompt_outputs_failed_validation",
                                       "Prompt outputs failed validation"),
                       "node_errors": node_errors})
    return outputs


def _node_errors(graph: dict, node: dict, info: dict) -> list[dict]:
    inputs = node.get("inputs") if isinstance(node.get("inputs"), dict) else {}
    errors: list[dict] = []
    for name, spec in info[node["class_type"]]["input"]["required"].items():
        extra = {"input_name": name}
        if name not in inputs:
            errors.append(_error("required_input_missing", "Required input is missing", name,
                                 extra))
            continue
        value, kind = inputs[name], spec[0]
        if isinstance(value, list):
            problem = _link_problem(graph, value, kind, info)
            if problem:
                errors.append(_error("return_type_mismatch" if "type" in problem
                                     else "bad_linked_input", problem, f"{name}: {problem}",
                                     extra))
            continue
        extra["received_value"] = value
        if isinstance(kind, list):
            if value not in kind:
                errors.append(_error("value_not_in_list", "Value not in list",
                                     f"{name}: '{value}' not in {kind}", extra))
        elif kind in ("INT", "FLOAT"):
            errors += _range_errors(name, value, kind, spec[1], extra)
        elif kind == "STRING" and not isinstance(value, str):
            errors.append(_error("invalid_input_type", "Failed to convert an input value to "
                                 "a STRING value", name, extra))
        elif kind not in ("INT", "FLOAT", "STRING"):
            errors.append(_error("bad_linked_input", f"{name} must be a link to a {kind}",
                                 name, extra))
    return errors


def _range_errors(name: str, value: Any, kind: str, limits: dict, extra: dict) -> list[dict]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            (kind == "INT" and not isinstance(value, int)):
        return [_error("invalid_input_type", f"Failed to convert an input value to a {kind} "
                       "value", f"{name}, {value}", extra)]
    if value < limits["min"]:
        return [_error("value_smaller_than_min", f"Value {value} smaller than min of "
                       f"{limits['min']}", name, extra)]
    if value > limits["max"]:
        return [_error("value_bigger_than_max", f"Value {value} bigger than max of "
                       f"{limits['max']}", name, extra)]
    return []


def _link_problem(graph: dict, link: list, want: Any, info: dict) -> str:
    if len(link) != 2 or not isinstance(link[1], int) or isinstance(link[1], bool):
        return "a link must be [node id, output slot]"
    source = graph.get(str(link[0]))
    if source is None:
        return f"links to node {link[0]}, which does not exist"
    produced = info[source["class_type"]]["output"]
    if not 0 <= link[1] < len(produced):
        return f"node {link[0]} has no output slot {link[1]}"
    if isinstance(want, list) or produced[link[1]] != want:
        return f"return type mismatch: {produced[link[1]]} given where {want} is wanted"
    return ""
