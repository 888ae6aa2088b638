"""gunicorn settings for flux-worker: `gunicorn -c gunicorn.conf.py app:app` (`make run`, the
Procfile, render.yaml, the Dockerfile). They live in the package, flux_worker/serving/
gunicorn_settings.py, so that the installed `flux-worker` command serves with the same ones;
gunicorn reads the names this file imports.
"""

from flux_worker.serving.gunicorn_settings import *  # noqa: F403
