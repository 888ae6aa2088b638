"""Start the real service under gunicorn on 127.0.0.1, for end-to-end tests and benchmarks.

`start_service(tmp, env)` runs `gunicorn -c gunicorn.conf.py app:app` from the repository root
with a small, explicit environment and waits until /healthz answers; `cloudflare_env(fake)` is
what points its Cloudflare backend at the fake (harness.fakes.cloudflare), with the account,
token and keys below.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import requests

from harness.ports import free_port

ROOT = pathlib.Path(__file__).resolve().parents[1]
API_KEY = "sk-e2e-client-key-0001"
CF_ACCOUNT = "test-account"
CF_TOKEN = "test-cf-token"
LLM_KEY = "test-llm-key"


@dataclass
class Service:
    """A running gunicorn with the app; `url` is its base, `log` its captured output."""

    url: str
    proc: subprocess.Popen
    log_path: pathlib.Path

    @property
    def api(self) -> str:
        return self.url + "/v1"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def worker_rss(self) -> dict[int, int]:
        """Each gunicorn worker's resident memory in bytes (VmRSS), by pid (Linux /proc)."""
        found = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                status = pathlib.Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue                    # gone since listed
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            if fields.get("PPid", "").strip() == str(self.proc.pid) and "VmRSS" in fields:
                found[int(entry)] = int(fields["VmRSS"].split()[0]) * 1024
        return found

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@dataclass
class RssSampler:
    """Samples the summed RSS of a service's workers every `interval` s while it is entered."""

    service: Service
    interval: float = 0.05
    samples: list[int] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> "RssSampler":
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(sum(self.service.worker_rss().values()))
            self._stop.wait(self.interval)

    @property
    def peak(self) -> int:
        return max(self.samples, default=0)


def start_service(tmp_path: pathlib.Path, env: dict[str, str], *, workers: int | None = 2,
                  wait: bool = True, port: int | None = None, app: str = "app:app") -> Service:
    """Start `gunicorn -c gunicorn.conf.py -b 127.0.0.1:<port> app:app` with `env`.

    `workers=None` leaves WEB_CONCURRENCY unset, so gunicorn.conf.py picks the number; `port`
    restarts a service where it was, so links it gave keep their address; `app` loads a test's
    wrapper of the app instead (harness/loopback_fetch_app.py).
    """
    port = port or free_port()
    tmp_path.mkdir(parents=True, exist_ok=True)
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
                "LANG": "C.UTF-8", "GUNICORN_THREADS": "16",
                "STORAGE_URL": f"disk://{tmp_path / 'images'}", "LOG_LEVEL": "DEBUG"}
    if workers is not None:
        full_env["WEB_CONCURRENCY"] = str(workers)
    full_env.update(env)
    log_path = tmp_path / f"gunicorn-{port}.log"
    out = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-b", f"127.0.0.1:{port}",
         app], cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT)
    out.close()
    service = Service(f"http://127.0.0.1:{port}", proc, log_path)
    if wait:
        try:
            _wait_healthy(service)
        except BaseException:
            service.stop()  # never leave a server behind, whatever went wrong
            raise
    return service


def _wait_healthy(service: Service, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited ({service.proc.returncode}):\n{service.log()}")
        try:
            if requests.get(service.url + "/healthz", timeout=1).status_code == 200:
                return
        except requests.RequestException:  # not listening yet, or busy starting
            pass
        time.sleep(0.1)
    raise RuntimeError(f"gunicorn did not become healthy:\n{service.log()}")


def cloudflare_env(fake, **extra) -> dict[str, str]:
    """Service variables that point the Cloudflare backend at `fake`."""
    env = {"API_KEY": API_KEY, "CF_ACCOUNT_ID": CF_ACCOUNT, "CF_API_TOKEN": CF_TOKEN,
           "CF_API_BASE": fake.url + "/client/v4", "UPSTREAM_RETRIES": "1",
           "UPSTREAM_TIMEOUT": "10"}
    env.update({k: str(v) for k, v in extra.items()})
    return env
