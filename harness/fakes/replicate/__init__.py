"""A strict fake of Replicate's predictions API on 127.0.0.1 (see app.py for what it models).

Use: `srv = start()`; point REPLICATE_API_BASE at `srv.api` and PROVIDER_FILE_HOSTS at
`srv.host_port`; `srv.add_faults("402")`, `srv.requests()`, `srv.advance_clock(3600)`,
`srv.stop()`. Like the Cloudflare fake it does not import flux_worker.
"""

from harness.fakes.replicate.app import FAULTS, FILE_LIFETIME, NSFW_ERROR, TOKEN
from harness.fakes.replicate.server import FakeReplicate, start

__all__ = ["FAULTS", "FILE_LIFETIME", "NSFW_ERROR", "TOKEN", "FakeReplicate", "start"]
