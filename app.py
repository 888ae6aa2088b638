"""The WSGI entry point: `gunicorn -c gunicorn.conf.py app:app` (or `flask --app app run`)."""

import sys

from flux_worker import ConfigError, create_app

try:
    app = create_app()
except ConfigError as exc:
    # A readable one-line reason beats a traceback; gunicorn stops when the app cannot load.
    print(f"flux-worker: configuration error: {exc}", file=sys.stderr)
    raise SystemExit(4) from None
