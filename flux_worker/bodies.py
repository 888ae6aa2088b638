"""How large a request body may be: one rule for the gathering worker and the web routes.

A JSON body holds a prompt and options: at most MAX_BODY_BYTES. Images are larger: a multipart
form (/v1/images/edits, /v1/images/variations) may be MAX_UPLOAD_BYTES, and so may MCP's JSON-RPC
at /mcp, whose edit_image carries images as data: URLs. The routes refuse a body over their limit
(413); the gathering worker (gunicorn_worker.py) reads no more than `gather_limit` before the app
sees a request, so a body the route would refuse is never waited for.
"""

from __future__ import annotations

from .config import Config

MCP_PATHS = ("/mcp", "/mcp/")


def upload_limit(config: Config) -> int:
    """The largest body any route takes: an upload (a form of images, or MCP's data: URLs)."""
    return max(config.max_body_bytes, config.max_upload_bytes)


def gather_limit(config: Config, path: str, multipart: bool) -> int:
    """How much of a request's body the worker gathers before the app sees it.

    Never less than the route's own limit (it refuses above that, naming its variable), and more
    only in odd cases (a form sent to a JSON route, /mcp under a path prefix), which the route
    then refuses: `path` is the request target's path, undecoded and with any prefix.
    """
    if multipart or path.rstrip("/").endswith("/mcp"):
        return upload_limit(config)
    return config.max_body_bytes
