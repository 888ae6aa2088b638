"""ComfyUI's failures as the error tree's: what the client sees, and whether fallback applies.

- POST /prompt answers 400 for a graph it will not run. With `node_errors`: the node that is
  wrong, by class and id, and why (a missing checkpoint says which and that ComfyUI must have
  it): InvalidRequest, no fallback (another model is no cure for this workflow's fault, and
  the operator must see it). `no_prompt`, `invalid_prompt` (a node class ComfyUI lacks: a
  custom node not installed) and `prompt_no_outputs`: the workflow file itself is wrong:
  UpstreamRejected (502, no fallback), naming the workflow.
- An `execution_error` while running (out of memory, a node that raised): UpstreamError (502,
  fallback applies: another model may well draw it), naming the node.
- ComfyUI unreachable, 5xx: UpstreamError; past UPSTREAM_TIMEOUT: UpstreamTimeout (fallback).
"""

from __future__ import annotations

from typing import Any

import requests

from ...catalog.comfyui import Workflow
from ...errors import APIError, InvalidRequest, UpstreamError, UpstreamRejected, UpstreamTimeout
from ...net.upstream import Answer

# ComfyUI's own texts are passed on, cut short: a traceback is no answer.
MAX_TEXT = 300
_WHOLE_GRAPH = {
    "no_prompt": "ComfyUI received no workflow",
    "invalid_prompt": "ComfyUI cannot run the workflow (a node class it does not have: "
                      "install the custom node, or export the workflow again)",
    "prompt_no_outputs": "the workflow has no output node (add a SaveImage)",
}


def as_dict(value: Any) -> dict[str, Any]:
    """A JSON object of ComfyUI's answer, or {} where it sent something else."""
    return value if isinstance(value, dict) else {}


def short(text: object) -> str:
    """ComfyUI's text, on one line, at most MAX_TEXT characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= MAX_TEXT else flat[: MAX_TEXT - 1] + "…"


def prompt_refused(workflow: Workflow, answer: Answer) -> APIError:
    """The error for a POST /prompt that was not accepted."""
    if answer.status_code >= 500:
        return UpstreamError(f"ComfyUI failed to take the workflow {workflow.model_id} "
                             f"(HTTP {answer.status_code}). Try again, or pick another model.")
    try:
        body = answer.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return UpstreamRejected(f"ComfyUI refused the workflow {workflow.model_id} (HTTP "
                                f"{answer.status_code}: {short(answer.text) or 'no text'}).")
    nodes = body.get("node_errors")
    if isinstance(nodes, dict) and nodes:
        return _node_error(workflow, *next(iter(nodes.items())))
    error = body.get("error")
    kind = error.get("type") if isinstance(error, dict) else None
    message = short(error.get("message", "")) if isinstance(error, dict) else short(error)
    what = _WHOLE_GRAPH.get(str(kind), "ComfyUI refused the workflow")
    return UpstreamRejected(
        f"{what}: {message or kind} (workflow {workflow.model_id}, {workflow.path}). The "
        "operator must fix the workflow file.", code=f"comfyui_{kind}" if kind else None)


def _node_error(workflow: Workflow, node_id: str, entry: Any) -> APIError:
    entry = entry if isinstance(entry, dict) else {}
    class_type = entry.get("class_type") or workflow.graph.get(node_id, {}).get("class_type")
    errors = entry.get("errors") or [{}]
    first = as_dict(errors[0])
    kind, details = first.get("type", ""), short(first.get("details", ""))
    info = as_dict(first.get("extra_info"))
    node = f"node {node_id} ({class_type})"
    if kind == "value_not_in_list" and info.get("input_name") == "ckpt_name":
        message = (f"ComfyUI has no checkpoint {info.get('received_value')!r} that {node} of "
                   f"the workflow {workflow.model_id} loads: ComfyUI must have it (put it in "
                   "its models/checkpoints folder) or the workflow must name one it has.")
    else:
        message = (f"ComfyUI refused {node} of the workflow {workflow.model_id}: "
                   f"{short(first.get('message', kind))}" + (f" ({details})" if details else "")
                   + ".")
    return InvalidRequest(message, param="model", code="comfyui_node_error")


def execution_failed(workflow: Workflow, data: Any) -> UpstreamError:
    """The error for an `execution_error` (a websocket frame's data, or /history's message)."""
    data = data if isinstance(data, dict) else {}
    node = f"node {data.get('node_id', '?')} ({data.get('node_type', 'unknown')})"
    return UpstreamError(f"ComfyUI failed while running {node} of the workflow "
                         f"{workflow.model_id}: {short(data.get('exception_message', ''))} "
                         "Try again, or pick another model.", code="comfyui_execution_error")


def unreachable(exc: requests.RequestException, step: str) -> UpstreamError:
    """A call that got no answer: timed out, or ComfyUI could not be reached."""
    if isinstance(exc, requests.Timeout):
        return UpstreamTimeout(f"ComfyUI did not answer in time ({step}). Try again, or pick "
                               "another model.")
    # The address is the operator's (COMFYUI_URL), not the client's business: not named.
    return UpstreamError(f"ComfyUI could not be reached ({step}: {type(exc).__name__}). Check "
                         "that it runs at COMFYUI_URL, or pick another model.",
                         code="comfyui_unreachable")
