"""fal.ai's image models (`fal:<endpoint id>`), with FAL_KEY.

backend.py holds FalBackend (which path a generation takes, the result's download); queue.py
fal's queue (submit, poll, result, cancel); payloads.py the body sent per model and the image
read back; failures.py fal's errors mapped to ours.
"""

from .backend import FAL_FILE_DOMAINS, FalBackend

__all__ = ["FAL_FILE_DOMAINS", "FalBackend"]
