"""Replicate's official FLUX models (`replicate:<owner>/<name>`).

backend.py holds ReplicateBackend (the held create, the polls, the cancel, the download of the
output file); payloads.py the input sent per model and the prediction read back; failures.py
Replicate's errors mapped to ours.
"""

from .backend import REPLICATE_FILE_DOMAINS, ReplicateBackend

__all__ = ["REPLICATE_FILE_DOMAINS", "ReplicateBackend"]
