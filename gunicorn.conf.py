"""gunicorn settings for flux-worker (used by the Procfile and the README's start command).

Every generation waits seconds on the upstream model, so each process runs many threads:
a thread waiting on a socket costs little, and one process can hold many generations in
flight. Settings can be overridden on the command line (`-b 127.0.0.1:9000`, `-w 4`).
"""

import os
import sys

bind = [f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"]
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "128"))
# gthread workers heartbeat from their main loop, so a long generation in a thread does not
# trip this; it only catches a worker that is truly stuck.
timeout = 60
# Let generations in flight finish on a restart (UPSTREAM_TIMEOUT defaults to 120 s).
graceful_timeout = int(float(os.environ.get("UPSTREAM_TIMEOUT", "120"))) + 10
keepalive = 5
# The app logs one access line per request itself (with request id and model).
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# X-Forwarded-* are judged by the app against TRUSTED_PROXIES alone, so gunicorn trusts none.
forwarded_allow_ips = ""
proc_name = "flux-worker"


def on_starting(server):
    """Check the configuration once, in the master, before any worker starts."""
    from flux_worker.config import Config, ConfigError

    try:
        config = Config.from_env(os.environ)
    except ConfigError as exc:
        print(f"flux-worker: configuration error: {exc}", file=sys.stderr)
        sys.exit(4)
    if config.storage_url.startswith("memory://") and server.cfg.workers > 1:
        server.log.warning(
            "STORAGE_URL=memory:// keeps images inside each process, but %d worker processes "
            "run: an image made by one is not found by the others. Use disk:// or redis://, "
            "or run one worker (WEB_CONCURRENCY=1).", server.cfg.workers)
