"""gunicorn settings for flux-worker: `gunicorn -c gunicorn.conf.py` (the Procfile, `make run`,
the container) reads them through that file, and the `flux-worker` command loads this module
itself (`-c python:flux_worker.serving.gunicorn_settings`), so an installed package needs no
file from the repository.

Every generation waits seconds on the upstream model, so each process runs many threads:
a thread waiting on a socket costs little, and one process can hold many generations in
flight. Settings can be overridden on the command line (`-b 127.0.0.1:9000`, `-w 4`).
"""

import os
import shutil
import sys
import tempfile

# Each worker process counts its own metrics; prometheus_client's multiprocess mode keeps them in
# files in this folder so /metrics can add up all workers. It must be set before any worker
# imports prometheus_client (that is when the storage is chosen), hence here, in the master.
_METRICS_DIR_OWNED = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _METRICS_DIR_OWNED:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="flux-worker-metrics-")

bind = [f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"]
# gthread, except that a request is gathered before a thread serves it, within
# REQUEST_READ_TIMEOUT: clients sending slowly hold no thread (see flux_worker/gunicorn_worker.py).
worker_class = "flux_worker.gunicorn_worker.GatheringWorker"


def _typed_config():
    """The service's configuration, or None when it is bad (on_starting then stops the start
    with a message naming the variable)."""
    from ..config import Config, ConfigError

    try:
        return Config.from_env(os.environ)
    except ConfigError:
        return None


_CONFIG = _typed_config()
# memory:// keeps images inside one process, so it gets one worker unless told otherwise.
_ONE_PROCESS_STORE = _CONFIG is not None and _CONFIG.storage.scheme == "memory"


def _env_int(name: str, default: str) -> int:
    """A positive whole number from the environment, or a start that stops naming the variable."""
    raw = os.environ.get(name, default)
    if not raw.strip().isdigit() or int(raw) < 1:
        sys.exit(f"flux-worker: configuration error: {name} must be a positive whole number, "
                 f"got {raw!r}")
    return int(raw)


workers = _env_int("WEB_CONCURRENCY", "1" if _ONE_PROCESS_STORE else "2")
# flux_worker/config/ owns GUNICORN_THREADS, so that MAX_INFLIGHT's default can stay below it.
threads = _CONFIG.gunicorn_threads if _CONFIG is not None else 1
# gthread workers heartbeat from their main loop, so a long generation in a thread does not
# trip this; it only catches a worker that is truly stuck.
timeout = 60
# Let generations in flight finish on a restart (UPSTREAM_TIMEOUT defaults to 120 s).
try:
    graceful_timeout = int(float(os.environ.get("UPSTREAM_TIMEOUT", "120"))) + 10
except ValueError:
    graceful_timeout = 130  # on_starting stops the start with a message naming the variable
keepalive = 5
# The app logs one access line per request itself (with request id and model).
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# X-Forwarded-* are judged by the app against TRUSTED_PROXIES alone, so gunicorn trusts none.
forwarded_allow_ips = ""
proc_name = "flux-worker"


def on_starting(server):
    """Check the configuration and reset the metrics, in the master, before any worker starts."""
    _reset_metrics_dir(server)
    from ..config import Config, ConfigError

    try:
        config = Config.from_env(os.environ)
    except ConfigError as exc:
        print(f"flux-worker: configuration error: {exc}", file=sys.stderr)
        sys.exit(4)
    if config.storage.scheme == "memory" and server.cfg.workers > 1:
        server.log.warning(
            "STORAGE_URL=memory:// keeps images inside each process, but %d worker processes "
            "run: an image made by one is not found by the others. Use disk:// or redis://, "
            "or run one worker (WEB_CONCURRENCY=1).", server.cfg.workers)
    from .startup import exposure_warning, startup_problems

    # The addresses really bound, after any -b on the command line, not only HOST.
    exposed = exposure_warning(server.cfg.address, config)
    if exposed:
        server.log.warning(exposed)
    # Once, in the master: names what is wrong with the storage before any request meets it.
    for level, message in startup_problems(config):
        if level == "error":
            server.log.error(message)
        else:
            server.log.warning(message)


def _reset_metrics_dir(server):
    """Create the metrics folder, emptied of files left by an earlier run."""
    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(path, exist_ok=True)
    if server.master_pid:
        # A USR2 upgrade: the old master's workers still write here; their counts carry on.
        return
    for name in os.listdir(path):
        # Stale files of dead processes would otherwise be summed into this run's counters.
        if name.endswith(".db"):
            os.remove(os.path.join(path, name))


def child_exit(server, worker):
    """Drop a dead worker from the live gauges (generations in flight)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """Remove the metrics folder this config created, unless an upgraded master still uses it."""
    if _METRICS_DIR_OWNED and not server.reexec_pid:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)

# gunicorn 27's control socket is one path per user ($XDG_RUNTIME_DIR or ~/.gunicorn/
# gunicorn.ctl): a second instance on the same host replaced the first's. Nothing here uses it
# (stop, reload and scale go through signals, systemd or the platform), so it stays off.
control_socket_disable = True
