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
commands:
  discover-models [--json]   list the Cloudflare account's text-to-image models and their
                             input fields (see `flux-worker discover-models --help`)

examples:
  flux-worker                                  demo backend on 0.0.0.0:8000
  flux-worker --host 127.0.0.1 --port 9000     only this machine, behind a proxy
  API_KEY=sk-... CF_ACCOUNT_ID=... CF_API_TOKEN=... flux-worker
  CF_ACCOUNT_ID=... CF_API_TOKEN=... flux-worker discover-models

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


DISCOVER = "discover-models"
# The variables discovery reads; the rest of the configuration (API_KEY, storage, ...) is the
# service's business and must not stop an operator from listing models.
DISCOVERY_VARIABLES = ("CF_ACCOUNTS", "CF_ACCOUNT_ID", "CF_API_TOKEN", "CF_API_BASE")


def discover_parser() -> argparse.ArgumentParser:
    """The arguments of `flux-worker discover-models`."""
    cli = argparse.ArgumentParser(
        prog=f"flux-worker {DISCOVER}",
        description="List the text-to-image models the Cloudflare account offers (Workers AI "
                    "and partner models), with each model's input fields, from Cloudflare's "
                    "model search and schema routes. Uses CF_ACCOUNT_ID and CF_API_TOKEN (or "
                    "the first of CF_ACCOUNTS) and CF_API_BASE; the token needs Workers AI "
                    "Read.")
    cli.add_argument("--json", action="store_true",
                     help="print the raw list (name, description, task, properties, input "
                          "schema) as JSON")
    cli.add_argument("--task", default="Text-to-Image",
                     help="the model task to list (default Text-to-Image)")
    return cli


def discover_main(argv: Sequence[str], environ: dict[str, str] | None = None) -> int:
    """Run `discover-models`: 0 listed, 4 configuration wrong, 1 Cloudflare refused."""
    from ..config import Config, ConfigError
    from ..net.upstream import make_session
    from .discovery import DiscoveryError, discover, print_models

    args = discover_parser().parse_args(argv)
    env = os.environ if environ is None else environ
    wanted = {name: env[name] for name in DISCOVERY_VARIABLES if name in env}
    try:
        # IMAGE_BACKEND=demo: the service's own rules (a client key for a real backend) do not
        # apply to a command that only lists models.
        config = Config.from_env({**wanted, "IMAGE_BACKEND": "demo"})
    except ConfigError as exc:
        print(f"flux-worker {DISCOVER}: {exc}", file=sys.stderr)
        return 4
    if not config.cloudflare_accounts:
        print(f"flux-worker {DISCOVER}: set CF_ACCOUNT_ID and CF_API_TOKEN (or CF_ACCOUNTS)",
              file=sys.stderr)
        return 4
    session = make_session(1)
    try:
        models = discover(session, config.cf_api_base, config.cloudflare_accounts[0],
                          task=args.task)
    except DiscoveryError as exc:
        print(f"flux-worker {DISCOVER}: {exc}", file=sys.stderr)
        return 1
    finally:
        session.close()
    print_models(models, sys.stdout, as_json=args.json)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the flags into the environment, then hand over to gunicorn (which exits itself)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == [DISCOVER]:
        return discover_main(argv[1:])
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
