"""A strict test double of fal.ai: the synchronous endpoints, the queue API and the media host.

Written from /work/shared/reference/image-providers.md (section 2, and the fal line of the fakes'
checklist in section 5), independently of flux_worker (nothing here imports it), so that it
catches the service's mistakes instead of copying them:

* `Authorization: Key <FAL_KEY>` is required (401 otherwise);
* each endpoint's input is validated (`schemas`): prompt, `image_size` preset or
  `{width, height}`, schnell's steps 1-12, `num_images` 1-4, `output_format`, Kontext's
  `image_url` and string `safety_tolerance`, FLUX.2 edit's `image_urls`; a failure is 422
  `detail: [{loc, msg, type}]`, and a field an endpoint does not take is refused too;
* the queue's URLs drop the subpath; a job goes IN_QUEUE -> IN_PROGRESS -> COMPLETED across
  status polls; `logs` only with `?logs=1`; cancel is accepted only while the job is queued
  (else 400, as fal answers);
* `sync_mode` answers data URIs; otherwise the pictures are files on this server (`/files/..`),
  whose requests are logged with whether they carried an Authorization header;
* injectable faults (`app.FAULTS`): "429", "504" (request_timeout), "startup_timeout", "503",
  "no_credit", "nsfw" (a black picture flagged in `has_nsfw_concepts`), "held" (queued until
  cancelled, or a sync call that waits out X-Fal-Request-Timeout), "slow", "detail_string".

Use: `srv = start()`; `srv.env()` for the service; `srv.add_faults("429")`;
`srv.requests("cancel")`; `srv.stop()`. Standalone: `python -m harness.fakes.fal --port 8790`.
"""

from harness.fakes.fal.app import DEFAULT_FAL_KEY, FAULTS, FalState, make_app
from harness.fakes.fal.server import FakeFal, main, start

__all__ = ["DEFAULT_FAL_KEY", "FAULTS", "FakeFal", "FalState", "main", "make_app", "start"]
