"""A lenient fake of the Workers AI run endpoint, for benchmarking the service and the original
Worker against the very same upstream (standard library HTTP server, one thread per connection).

The strict fake (harness/fakes/cloudflare/) rejects what the original Worker sends to
flux-1-schnell (`num_steps`, `width`, `height` are not in today's schema), so a side-by-side run
needs one that accepts both: any `POST .../accounts/<id>/ai/run/<model>` with a JSON `prompt` and
`Authorization: Bearer <token>` gets the JSON envelope with a base64 JPEG after the set latency.
The JPEGs are the strict fake's own (`ImageMaker`): 1024x1024 of 150 KB ("large", what
flux-1-schnell answers) or 512x512 of 37 KB ("small", a model output smaller than asked).

    python -m bench.upstream --port 18401 --latency 2
    POST /_bench/config {"latency": 0, "image": "small"}   # change both at run time
    GET  /_bench/stats                                      # counters
"""

from __future__ import annotations

import argparse
import base64
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

MODEL = "@cf/black-forest-labs/flux-1-schnell"
IMAGES = {"large": (1024, 1024, 150), "small": (512, 512, 37)}     # width, height, KB


def envelopes() -> dict[str, bytes]:
    """The success body for each image variant, serialised once."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from harness.fakes.cloudflare import ImageMaker

    out = {}
    for name, (width, height, kb) in IMAGES.items():
        jpeg = ImageMaker(kb).image(MODEL, width, height, "JPEG")
        out[name] = (b'{"result":{"image":"' + base64.b64encode(jpeg)
                     + b'"},"success":true,"errors":[],"messages":[]}')
    return out


class State:
    def __init__(self, latency: float, image: str, token: str):
        self.latency, self.image, self.token = latency, image, token
        self.bodies = envelopes()
        self.lock = threading.Lock()
        self.counts = {"ok": 0, "auth_fail": 0, "bad_request": 0, "not_found": 0}

    def bump(self, key: str) -> None:
        with self.lock:
            self.counts[key] += 1


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"                   # keep-alive: every answer has a length
    server_version = "bench-upstream/1"
    state: State

    def log_message(self, format: str, *args) -> None:   # noqa: A002 (the base's signature)
        pass

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, code: int, message: str) -> None:
        self._reply(status, json.dumps({"result": None, "success": False, "messages": [],
                                        "errors": [{"code": code, "message": message}]}).encode())

    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/_bench/stats":
            with self.state.lock:
                body = dict(self.state.counts, latency=self.state.latency, image=self.state.image)
            return self._reply(200, json.dumps(body).encode())
        self.state.bump("not_found")
        self._reply(404, b'{"error":"not found"}')

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = urlsplit(self.path).path              # also absolute-URI request lines
        parts = path.strip("/").split("/")
        if path == "/_bench/config":
            change = json.loads(raw or b"{}")
            if change.get("image", self.state.image) not in IMAGES:
                return self._reply(400, b'{"error":"image is large or small"}')
            with self.state.lock:
                self.state.latency = float(change.get("latency", self.state.latency))
                self.state.image = change.get("image", self.state.image)
            return self._reply(200, b'{"ok":true}')
        if "accounts" not in parts or parts[parts.index("accounts") + 2:][:2] != ["ai", "run"]:
            self.state.bump("not_found")
            return self._reply(404, b'{"error":"not found"}')
        if self.headers.get("Authorization") != f"Bearer {self.state.token}":
            self.state.bump("auth_fail")
            return self._error(401, 10000, "Authentication error")
        try:
            prompt = json.loads(raw).get("prompt")
        except (ValueError, AttributeError):
            prompt = None
        if not isinstance(prompt, str) or not prompt:
            self.state.bump("bad_request")
            return self._error(400, 5006, "Error: required properties at '/' are 'prompt'")
        latency, image = self.state.latency, self.state.image
        if latency > 0:
            time.sleep(latency)
        self.state.bump("ok")
        self._reply(200, self.state.bodies[image])


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 2048
    allow_reuse_address = True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="lenient fake Workers AI for benchmarks")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--image", choices=sorted(IMAGES), default="large")
    parser.add_argument("--token", default="test-cf-token")
    args = parser.parse_args(argv)
    Handler.state = State(args.latency, args.image, args.token)
    server = Server(("127.0.0.1", args.port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"ready http://127.0.0.1:{args.port}", flush=True)
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
