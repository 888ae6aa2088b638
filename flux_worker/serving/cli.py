"""The `flux-worker` command (and `python -m flux_worker`): serve under gunicorn.

It is `gunicorn -c gunicorn.conf.py app:app` for an installed package, where neither file
exists: gunicorn loads the same settings module and builds the app with `create_app()`. Every
setting stays an environment variable (docs/configuration.md); the flags below only set the
gunicorn ones a command line is expected to take.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ..version import __version__

SETTINGS = "python:flux_worker.serving.gunicorn_settings"
APP = "flux_worker:create_app()"

DESCRIPTION = """\
Serve flux-worker (OpenAI-compatible image generation on Cloudflare Workers AI) under gunicorn,
with the same settings as `gunicorn -c gunicorn.conf.py app:app`.

Without CF_ACCOUNT_ID and CF_API_TOKEN the offline demo backend runs and needs no key. With a
real backend API_KEY is required. Every setting is an environment variable (see
docs/configuration.md): API_KEY, CF_ACCOUNT_ID, CF_API_TOKEN, STORAGE_URL, RATE_LIMIT, ...
"""

EPILOG = """\
examples:
  flux-worker                                  demo backend on 0.0.0.0:8000
  flux-worker --host 127.0.0.1 --port 9000     only this machine, behind a proxy
  API_KEY=sk-... CF_ACCOUNT_ID=... CF_API_TOKEN=... flux-worker

exit status 4: the configuration is wrong (the message names the variable).
"""


def parser() -> argparse.ArgumentParser:
    """The command's arguments; each flag sets the environment variable it names."""
    cli = argparse.ArgumentParser(
        prog="flux-worker", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--host", metavar="ADDRESS",
                     help="address to listen on (HOST; default 0.0.0.0, every interface)")
    cli.add_argument("--port", metavar="N", help="port to listen on (PORT; default 8000)")
    cli.add_argument("--workers", metavar="N",
                     help="worker processes (WEB_CONCURRENCY; default 2, 1 with memory://)")
    cli.add_argument("--threads", metavar="N",
                     help="threads per process (GUNICORN_THREADS; default 256)")
    cli.add_argument("--version", action="version", version=f"flux-worker {__version__}")
    return cli


FLAG_VARIABLES = {"host": "HOST", "port": "PORT", "workers": "WEB_CONCURRENCY",
                  "threads": "GUNICORN_THREADS"}


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the flags into the environment, then hand over to gunicorn (which exits itself)."""
    args = parser().parse_args(argv)
    for flag, name in FLAG_VARIABLES.items():
        value = getattr(args, flag)
        if value is not None:
            # Through the environment, so gunicorn's settings module reads and checks them as
            # it reads a deployment's (a bad value stops the start naming the variable).
            os.environ[name] = value
    from gunicorn.app.wsgiapp import run

    sys.argv = ["flux-worker", "-c", SETTINGS, APP]
    run()
    return 0
