"""Cloudflare's partner image models (OpenAI, Google, Black Forest Labs) via `/ai/run`.

backend.py holds CloudflarePartnerBackend (accounts, the call, the download of the result file);
payloads.py the body sent per model and the answer read back; failures.py the route's errors
mapped to ours (reusing the Workers AI backend's pieces).
"""

from .backend import CLOUDFLARE_FILE_DOMAINS, CloudflarePartnerBackend

__all__ = ["CLOUDFLARE_FILE_DOMAINS", "CloudflarePartnerBackend"]
