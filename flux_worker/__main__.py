"""`python -m flux_worker`: the `flux-worker` command (flux_worker/serving/cli.py)."""

from .serving.cli import main

raise SystemExit(main())
