"""The operator's own ComfyUI: each workflow of COMFYUI_WORKFLOWS is a model (catalog/comfyui.py).

graph.py fills a workflow for one request, failures.py maps ComfyUI's errors to the error tree,
watch.py follows a prompt (websocket, else /history polling), backend.py is the whole call.
"""

from .backend import ComfyUIBackend

__all__ = ["ComfyUIBackend"]
