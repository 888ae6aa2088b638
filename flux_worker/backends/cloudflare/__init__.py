"""The Cloudflare Workers AI image backend.

backend.py holds CloudflareBackend (accounts, gateway routes, the retry loop); payloads.py the
body sent per model and the image read back; failures.py Cloudflare's errors mapped to ours.
"""

from .backend import CloudflareBackend

__all__ = ["CloudflareBackend"]
