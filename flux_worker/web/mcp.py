"""`/mcp`: the MCP server's streamable HTTP endpoint, mounted beside the Flask app.

A thin WSGI layer in front of the SDK's transport gives MCP requests what every API request gets:
a request id, CORS headers, the Bearer key check (401 with the API's JSON error, before the MCP
layer sees the request), the caller's rate-limit identity and the access-log line. Its own errors
(401, 405, 413) are answered by `web.edge`, exactly as Flask's boundary answers them.

The SDK and its transport load with the first MCP request a process serves, not with the app:
they are half of the app's import time and ~28 MiB of each worker's memory (docs/benchmarks.md),
which a service that no agent calls should not carry.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Callable, Iterable

from werkzeug.wsgi import ClosingIterator, get_current_url

from ..bodies import MCP_PATHS, upload_limit
from ..errors import APIError, MethodNotAllowed, PayloadTooLarge
from ..mcp.caller import CALLER_KEY, ToolCaller
from ..services import Services
from . import edge
from .auth import bearer_of_header
from .body import with_length
from .hooks import request_done, request_id

if TYPE_CHECKING:
    from ..mcp.bridge import McpBridge



class McpMount:
    """WSGI dispatcher: `/mcp` to the MCP transport, everything else to `app`."""

    def __init__(self, app: Callable, services: Services):
        self.app = app
        self.services = services
        config = services.config
        # edit_image carries images as data: URLs, so /mcp takes bodies as large as uploads.
        self.max_body_bytes = upload_limit(config)
        self._bridge: McpBridge | None = None
        self._lock = threading.Lock()

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "") not in MCP_PATHS:
            return self.app(environ, start_response)
        return self.serve(environ, start_response)

    def serve(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        """Answer one MCP request: preflight, key check, then the transport."""
        config = self.services.config
        started = time.monotonic()
        rid = request_id(environ.get("HTTP_X_REQUEST_ID", ""))
        extra = edge.common_headers(config.cors_origins, environ.get("HTTP_ORIGIN"),
                                    environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS"), rid)
        method = environ.get("REQUEST_METHOD", "GET")
        caller = ToolCaller(identity="", link=lambda result: None, request_id=rid)
        status_seen = [0]

        def respond(status: str, headers: list, exc_info=None):
            status_seen[0] = int(status.split(" ", 1)[0])
            return start_response(status, edge.with_headers(list(headers), extra), exc_info)

        def finish() -> None:
            request_done(started, rid, method, environ.get("PATH_INFO", ""), "/mcp",
                         status_seen[0], caller.model)()

        if method == "OPTIONS":
            respond("204 No Content", [])
            return ClosingIterator([], [finish])
        # Parsed once; the key check, the rate-limit identity and the budget all read it.
        token = bearer_of_header(environ.get("HTTP_AUTHORIZATION"))
        key: str | None = None  # the checked key: errors may then name addresses
        try:
            access = self.services.keyring.check(token)
            key = access.key
            if method != "POST":
                # Stateless: no stream for server messages (GET) and no session to end (DELETE).
                # The spec's answer is 405; an open GET would also hold a worker thread forever.
                raise MethodNotAllowed(
                    f"{method} is not used here: send MCP messages as JSON-RPC with POST. This "
                    "server keeps no sessions and opens no event stream.",
                    allow=("POST", "OPTIONS"))
            declared = environ.get("CONTENT_LENGTH") or ""
            if declared.isdigit() and int(declared) > self.max_body_bytes:
                raise self.too_large()
            # The transport reads a body by its length: a chunked one would arrive empty.
            with_length(environ, self.max_body_bytes, self.too_large)
        except APIError as exc:
            edge.log_error(method, environ.get("PATH_INFO", ""), exc)
            if self.services.activity is not None:
                self.services.activity.answered(key, method, environ.get("PATH_INFO", ""), exc)
            answer = edge.error_answer(exc, behind_key=key is not None)
            respond(answer.status_line, answer.headers)
            return ClosingIterator([] if method == "HEAD" else [answer.body], [finish])
        # Per key when one was checked, else per client address, as for the API.
        caller.identity = access.key or environ.get("REMOTE_ADDR") or "anonymous"
        caller.key = access.key         # budgets count per key, as for the API
        caller.terms = access.terms
        caller.key_proved = key is not None
        base = config.public_base_url or get_current_url(environ, root_only=True).rstrip("/")
        links = self.services.links
        caller.link = lambda result: links(base, result.key)
        environ[CALLER_KEY] = caller
        return ClosingIterator(self.bridge()(environ, respond), [finish])

    def too_large(self) -> PayloadTooLarge:
        """The 413 of /mcp, answered like the API's (the SDK's own is plain text)."""
        return PayloadTooLarge(
            f"The request body is too large; /mcp accepts at most {self.max_body_bytes} bytes "
            "(MAX_UPLOAD_BYTES). Send smaller images.")

    def bridge(self) -> McpBridge:
        """The MCP transport, with the SDK imported and the server built on first use."""
        if self._bridge is None:
            with self._lock:
                if self._bridge is None:
                    from ..mcp.bridge import McpBridge, caller_of_request
                    from ..mcp.server import build_server
                    from ..mcp.tools import ImageTools

                    tools = ImageTools(self.services)
                    self._bridge = McpBridge(lambda: build_server(tools, caller_of_request),
                                             max_body_bytes=self.max_body_bytes)
        return self._bridge

    def close(self) -> None:
        """Stop this process's MCP transport, if it was started (tests)."""
        if self._bridge is not None:
            self._bridge.close()


def mount(app: Callable, services: Services) -> McpMount:
    """Wrap the WSGI `app` so that `/mcp` serves MCP."""
    return McpMount(app, services)
