"""The SDK's streamable HTTP transport (ASGI) as a WSGI app, one event loop per process.

The transport runs stateless with JSON answers: every POST carries a whole exchange and no
session lives in a process, so any gunicorn worker can answer any request (no affinity). Its
session manager still needs its `run()` context entered around all requests (the task group the
requests run in); a2wsgi's ASGIMiddleware needs a loop. Both are started lazily by the first
request in each process: gunicorn forks workers from the master, and a thread or an event loop
started before the fork would not exist in the child.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any, Callable, Iterable

from a2wsgi import ASGIMiddleware
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

from .caller import CALLER_KEY, ToolCaller

log = logging.getLogger("flux_worker.mcp")

START_TIMEOUT = 10.0


class McpBridge:
    """A WSGI app serving one MCP server over streamable HTTP."""

    def __init__(self, make_server: Callable[[], Server[Any]], *, max_body_bytes: int):
        if not log.isEnabledFor(logging.DEBUG):
            # The SDK logs each stateless request at INFO ("Terminating session: None");
            # the access log already has one line per request.
            logging.getLogger("mcp").setLevel(logging.WARNING)
        self.make_server = make_server
        self.max_body_bytes = max_body_bytes
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._wsgi: ASGIMiddleware | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    def __call__(self, environ: Any, start_response: Any) -> Iterable[bytes]:
        return self._running()(environ, start_response)

    def _running(self) -> ASGIMiddleware:
        """This process's running transport, started on first use."""
        if self._pid == os.getpid() and self._wsgi is not None:
            return self._wsgi
        with self._lock:
            if self._pid != os.getpid() or self._wsgi is None:
                self._start()
        assert self._wsgi is not None
        return self._wsgi

    def _start(self) -> None:
        manager = StreamableHTTPSessionManager(
            app=self.make_server(), json_response=True, stateless=True,
            max_request_body_size=self.max_body_bytes)
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="mcp-event-loop", daemon=True)
        thread.start()
        started = threading.Event()
        stop = asyncio.Event()

        async def serve() -> None:
            async with manager.run():
                started.set()
                await stop.wait()

        future = asyncio.run_coroutine_threadsafe(serve(), loop)
        future.add_done_callback(lambda _: loop.call_soon_threadsafe(loop.stop))
        if not started.wait(START_TIMEOUT):
            error = future.exception(0) if future.done() else None
            loop.call_soon_threadsafe(loop.stop)
            raise RuntimeError(f"the MCP transport did not start: {error!r}")
        self._loop, self._stop = loop, stop
        self._wsgi = ASGIMiddleware(manager.handle_request, loop=loop)  # type: ignore[arg-type]
        self._pid = os.getpid()
        log.debug("MCP transport started in process %d", self._pid)

    def close(self) -> None:
        """Stop this process's transport and its loop (tests; the process exit does it too)."""
        with self._lock:
            loop, stop = self._loop, self._stop
            if loop is None or stop is None or self._pid != os.getpid():
                return
            loop.call_soon_threadsafe(stop.set)  # run() ends, then the loop stops
            self._wsgi = self._loop = self._stop = None
            self._pid = None


def caller_of_request(ctx: ServerRequestContext[Any, Any]) -> ToolCaller:
    """The ToolCaller the WSGI layer attached to this HTTP request."""
    request = ctx.request
    environ = getattr(request, "scope", {}).get("wsgi_environ") or {}
    caller = environ.get(CALLER_KEY)
    if not isinstance(caller, ToolCaller):
        # Only reachable if the bridge is mounted without the authenticating layer.
        raise RuntimeError("MCP request without a caller: mount the bridge with web.mcp.mount")
    return caller
