"""A hostile image host on 127.0.0.1: it answers image links as slowly as a socket allows.

Each path is one way of holding a downloader's thread without ever pausing long enough for a
per-read timeout to fire (a byte every `pause` seconds):

    /headers      the status line and headers trickle in and never end
    /body         headers at once (Content-Length: 1 MB), then the body trickles
    /unframed     headers at once without a length, then the body trickles until it gives up
    /silent       the request is read, nothing is ever sent
    /tls          a TLS record header announcing a ServerHello, then its bytes trickle
                  (link it as https://)

`never_accepted` is a second port whose connections the kernel completes but nobody accepts:
connected, sent, and then silence. Every connection ends after `give_up` seconds at the latest,
so a downloader without a deadline is slow, not stuck forever. `requests` counts the requests
read per path. Loopback only; nothing here imports flux_worker.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter

PATHS = ("/headers", "/body", "/unframed", "/silent")


class HostileImageHost:
    """Serve the trickling paths; `url(path)` links one; `close()` ends every connection."""

    def __init__(self, *, pause: float = 0.2, give_up: float = 120.0):
        self.pause, self.give_up = pause, give_up
        self.requests: Counter[str] = Counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port = self._listener.getsockname()[1]
        # Connections to this one wait in the kernel's backlog: connected, never answered.
        self._unaccepted = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.never_accepted = f"http://127.0.0.1:{self._unaccepted.getsockname()[1]}/cat.png"
        threading.Thread(target=self._accept, name="hostile-host", daemon=True).start()

    def url(self, path: str, *, scheme: str = "http", host: str = "127.0.0.1") -> str:
        """A link to `path` on this host (`host` is the name put in the link)."""
        return f"{scheme}://{host}:{self.port}{path}"

    def __enter__(self) -> "HostileImageHost":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        for sock in (self._listener, self._unaccepted):
            sock.close()
        with self._lock:
            for conn in self._conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        until = time.monotonic() + self.give_up
        try:
            conn.settimeout(self.give_up)
            head = conn.recv(65536)
            if head.startswith(b"\x16\x03"):            # a TLS ClientHello
                path = "/tls"
            else:
                parts = head.split(b" ", 2)
                path = parts[1].decode("latin-1") if len(parts) > 1 else "?"
            with self._lock:
                self.requests[path] += 1
            if path == "/headers":
                self._trickle(conn, b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nX-Pad: ",
                              b"a", until)
            elif path == "/body":
                self._trickle(conn, b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n"
                              b"Content-Length: 1000000\r\n\r\n\x89PNG", b"\0", until)
            elif path == "/unframed":
                self._trickle(conn, b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n"
                              b"Connection: close\r\n\r\n\x89PNG", b"\0", until)
            elif path == "/tls":
                # A handshake record of 16 KB: the client waits for all of it.
                self._trickle(conn, b"\x16\x03\x03\x40\x00\x02", b"\0", until)
            else:                                        # /silent, and anything else
                self._hold(conn, until)
        except OSError:
            pass  # the downloader hung up (or was cut): what a test wants
        finally:
            with self._lock:
                if conn in self._conns:
                    self._conns.remove(conn)
            conn.close()

    def _hold(self, conn: socket.socket, until: float) -> None:
        """Send nothing until `until`, a hang-up or `close()`."""
        conn.settimeout(self.pause)
        while time.monotonic() < until and not self._stop.is_set():
            try:
                if not conn.recv(1):
                    return                               # the downloader hung up
            except TimeoutError:
                pass

    def _trickle(self, conn: socket.socket, start: bytes, filler: bytes, until: float) -> None:
        """Send `start`, then `filler` forever, one byte per pause, until `until` or a hang-up."""
        data = iter(start)
        while time.monotonic() < until and not self._stop.is_set():
            byte = next(data, filler[0])
            conn.sendall(bytes([byte]))
            self._stop.wait(self.pause)
