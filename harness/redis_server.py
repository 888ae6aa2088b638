"""A real, throwaway redis-server: start, stop, restart on the same port.

    with RedisServer() as server:            # 127.0.0.1 on a free port, no persistence
        server.url                           # redis://127.0.0.1:<port>/0
        server.stop(); server.start()        # an outage and the recovery, same port

Without the redis-server binary, RedisServer() raises RedisUnavailable. The tests turn that into
a skip (a failure under FLUX_REQUIRE_REDIS=1, as in CI): see tests/support.py and the
`redis_url` and `redis_server` fixtures in tests/conftest.py.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

from harness.ports import free_port

CANDIDATES = ("/usr/bin/redis-server", "/usr/sbin/redis-server", "/usr/local/bin/redis-server")
START_TIMEOUT = 10.0


class RedisUnavailable(RuntimeError):
    """redis-server is not installed here."""


def redis_server_binary() -> str:
    """Return the path of redis-server; raise RedisUnavailable without it."""
    found = shutil.which("redis-server") or next(
        (path for path in CANDIDATES if os.access(path, os.X_OK)), None)
    if found:
        return found
    raise RedisUnavailable(
        "redis-server is not installed (Debian/Ubuntu: apt-get install -y redis-server)")


class RedisServer:
    """One redis-server process on 127.0.0.1, without persistence, restartable on its port."""

    def __init__(self, *, password: str | None = None, port: int | None = None):
        self.binary = redis_server_binary()
        self.password = password
        self.port = port or free_port()
        self._process: subprocess.Popen | None = None
        self._dir: str | None = None

    @property
    def url(self) -> str:
        """The redis:// URL of database 0, with the password when there is one."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        if self.running:
            return
        self._dir = self._dir or tempfile.mkdtemp(prefix="flux-redis-")
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self._dir, "--logfile", ""]
        if self.password:
            args += ["--requirepass", self.password]
        self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                error = self._process.stderr.read().decode(errors="replace")
                raise RuntimeError(f"redis-server exited at start on port {self.port}: {error}")
            if self._answers_ping():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} within "
                           f"{START_TIMEOUT:.0f} s")

    def stop(self) -> None:
        """Stop the server (data is lost: nothing is persisted)."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stderr:
            process.stderr.close()

    def restart(self) -> None:
        """Stop and start again on the same port."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and remove its working directory."""
        self.stop()
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _answers_ping(self) -> bool:
        # A raw inline PING: "+PONG", or "-NOAUTH" when a password is required; both mean up.
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

