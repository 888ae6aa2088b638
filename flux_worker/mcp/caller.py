"""Who makes an MCP request: what the HTTP layer knows of a caller, for the tools to use.

Kept apart from the SDK so that the WSGI layer in front of `/mcp` can name a caller without
importing the SDK, which loads only when the first MCP request arrives (docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..cost.terms import KeyTerms
from ..generation.job import ImageResult

# The WSGI layer in front of the bridge puts the request's ToolCaller here; a2wsgi hands the WSGI
# environ on in the ASGI scope, where the tool handler finds it through the SDK's request.
CALLER_KEY = "flux_worker.mcp.caller"


@dataclass
class ToolCaller:
    """Who calls a tool, and where links to its images point.

    `link` turns a stored image into the URL the agent is given. `model` is filled in by the
    tool so the HTTP access log can name the model, as it does for the API.
    """

    identity: str = field(repr=False)   # the API key when keys are configured: never shown
    link: Callable[[ImageResult], str | None]
    request_id: str | None = None
    key: str | None = field(default=None, repr=False)  # whose budget: the API key, if any
    links_expire: bool = True     # False: links to files of the local user, kept until removed
    key_proved: bool = False      # a configured key passed: errors may name where storage is
    terms: KeyTerms | None = None  # a run-time key's own limits and models
    model: str = field(default="-")
