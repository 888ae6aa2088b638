"""The MCP server (official SDK, low-level `Server`) over the image tools.

The tools are blocking code (HTTP calls to the image model, storage); each call runs in a worker
thread so the event loop keeps serving other requests. When the SDK cancels a call (the client
went away), the generation is told to stop through its cancel event.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from typing import Any, AsyncIterator, Callable

import anyio
import anyio.to_thread
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server

from ..version import __version__
from .caller import ToolCaller
from .tools import ImageTools

# Tool calls running at once in one process; the in-flight cap (MAX_INFLIGHT) and rate limits
# decide who may generate, this only bounds the threads the event loop hands work to.
MAX_CONCURRENT_CALLS = 64

INSTRUCTIONS = (
    "flux-worker generates images with text-to-image models. Use generate_image with an English "
    "visual description; call list_models to see which model accepts which size, steps, seed "
    "and negative prompt. Every result links the full image; links expire.")

CallerOf = Callable[[ServerRequestContext[Any, Any]], ToolCaller]


def build_server(tools: ImageTools, caller_of: CallerOf) -> Server[dict[str, Any]]:
    """A low-level MCP Server offering `tools`; `caller_of` says who makes each request."""

    @contextlib.asynccontextmanager
    async def lifespan(_server: Server[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        # Made here, inside the running loop that will use it.
        yield {"limiter": anyio.CapacityLimiter(MAX_CONCURRENT_CALLS)}

    async def list_tools(ctx: ServerRequestContext[dict[str, Any], Any],
                         params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools.definitions())

    async def call_tool(ctx: ServerRequestContext[dict[str, Any], Any],
                        params: types.CallToolRequestParams) -> types.CallToolResult:
        caller = caller_of(ctx)
        cancel = threading.Event()
        work = functools.partial(tools.call, params.name, params.arguments, caller, cancel)
        try:
            return await anyio.to_thread.run_sync(
                work, abandon_on_cancel=True, limiter=ctx.lifespan_context["limiter"])
        except anyio.get_cancelled_exc_class():
            cancel.set()  # the thread goes on until the generation notices, storing nothing
            raise

    return Server(
        "flux-worker", version=__version__, title="flux-worker image generation",
        instructions=INSTRUCTIONS, lifespan=lifespan,
        on_list_tools=list_tools, on_call_tool=call_tool)
