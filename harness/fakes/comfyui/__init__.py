"""A strict, fast test double of ComfyUI's HTTP and websocket API (image-providers.md §4, §5).

Written from the reference, not from flux_worker (it imports nothing of it): POST /prompt checks
the graph as ComfyUI does (nodes.py: unknown classes, no outputs, required inputs, links as
`[id, slot]` to existing nodes of the right type, values in range, checkpoints and input files
that exist) and answers ComfyUI's 400 bodies; a worker runs prompts one at a time, sending
`execution_start`, `progress` per step, a binary preview, `executed` and `executing{node:null}`
only to the submitting client id's /ws; /history is `{}` until a prompt is done; /view answers
400 for traversal and 404 for a missing file; /upload/image renames on a clash; /interrupt and
POST /queue `{"delete": [...]}` are honoured. Faults (state.FAULTS): `execution_error`,
`ws_drop`, `slow`. Every request is recorded (`FakeComfyUI.requests()`).

Use: `with FakeComfyUI() as comfy: ... comfy.url`; standalone: `python -m harness.fakes.comfyui`.
"""

from harness.fakes.comfyui.app import make_app
from harness.fakes.comfyui.nodes import CHECKPOINTS, object_info, validate
from harness.fakes.comfyui.server import FakeComfyUI, main
from harness.fakes.comfyui.state import FAULTS, FakeComfyState

__all__ = ["CHECKPOINTS", "FAULTS", "FakeComfyState", "FakeComfyUI", "main", "make_app",
           "object_info", "validate"]
