"""What every fake shares: a quiet threaded WSGI server on 127.0.0.1 in a daemon thread."""

from __future__ import annotations

import threading
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server


class QuietHandler(WSGIRequestHandler):
    """No access log: the polls and retries would drown the test output."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


def serve(app: Any, host: str = "127.0.0.1", port: int = 0) -> BaseWSGIServer:
    """A threaded server for `app` (port 0: a free one), not yet serving."""
    return make_server(host, port, app, threaded=True, request_handler=QuietHandler)


class ThreadedFake:
    """A fake's server running in a daemon thread; `stop()` (or leaving a `with`) ends it."""

    def __init__(self, app: Any, name: str, host: str = "127.0.0.1", port: int = 0):
        self._server = serve(app, host, port)
        self.port = self._server.server_port
        self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name=name,
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
