"""A strict, fast test double of Cloudflare Workers AI, an OpenAI-compatible LLM and Images API.

What it models, and why it exists
---------------------------------
flux-worker calls Workers AI over REST. End-to-end tests run the real service under gunicorn with
``CF_API_BASE=http://127.0.0.1:<port>`` pointing here, and a benchmark uses it as a stand-in model
server. The fake is therefore *strict like today's API*: it enforces each model's input schema and
answers each model with its own encoding, so a service that builds a wrong request fails here the
way it would fail against Cloudflare.

Everything below was written from ``/work/shared/reference/cloudflare-workers-ai.md`` (section
numbers in comments refer to it). The fake deliberately does NOT import ``flux_worker``: it is an
independent model of Cloudflare, so it can catch the service's mistakes instead of copying them.
Where the reference gives a real error body it is reproduced; where it gives none (e.g. the exact
text of a type error) the text imitates the observed ``AiError: Bad input: ...`` style.

Routes
------
* ``POST [/client/v4]/accounts/<account>/ai/run/<model>``: text-to-image (§1-§4).
* ``POST /gateway/v1/<account>/<gateway>/workers-ai/[run/]<model>``: the AI Gateway forms (§7).
* ``POST [/client/v4]/accounts/<account>/ai/v1/chat/completions``, the gateway's
  ``.../workers-ai/v1/chat/completions`` and ``POST /v1/chat/completions``: OpenAI-style LLM (§5).
* ``POST /v1/images/generations`` and ``GET /_fake/files/<id>.png``: an OpenAI Images API.
* ``POST /client/v4/accounts/<account>/ai/run`` (``{model, input}``): the partner models, with
  ``GET .../ai/models/search`` and ``.../ai/models/schema`` (``partners``; image-providers.md §1).
* ``POST .../ai/run/@cf/meta/llama-guard-3-8b`` and ``POST /v1/moderations``: moderation, with
  trigger words (``guard``).
* ``/_fake/...``: control (faults, recorded requests, LLM reply, moderation, reset, health).

Use
---
* in-process: ``srv = start(latency=0)``; ``srv.url``, ``srv.add_faults("3030")``, ``srv.stop()``;
* a Flask test client: ``make_app().test_client()``;
* standalone: ``python -m harness.fakes.cloudflare --port 8788 --latency 2.0 --image-kb 150``;
* gunicorn: ``gunicorn 'harness.fakes.cloudflare:make_app(latency=2.0, image_kb=150)'`` (control
  state such as queued faults is per worker process, so use one worker when injecting faults).

Modules
-------
Imports flow one way: ``server`` -> ``app`` -> ``partners`` -> ``state`` / ``schemas`` /
``pictures``.

* ``schemas``: each model's input schema (``Prop``, ``ModelSchema``, ``MODELS``), the strict
  ``validate_json`` / ``validate_form`` and the image-input checks (img2img, inpainting, flux-2
  reference images);
* ``pictures``: ``ImageMaker``, the cached deterministic pictures and JPEGs of a given size;
* ``state``: the defaults, ``FakeState`` (faults, recorded requests, files), fault normalisation
  and the canned error bodies (``cf_error``, the §4 fault answers, OpenAI's error envelope);
* ``app``: ``make_app``, request recording and the route handlers (run, gateway, chat, images,
  image edits and variations, control);
* ``partners`` (with ``partner_schemas`` and ``model_search``): the partner route, its
  per-model JSON schemas, expiring result files and
  faults, model search and schemas (registered by ``make_app``);
* ``server``: ``FakeServer``, ``start`` and the command line (``main``, also ``__main__``).
"""

from harness.fakes.cloudflare.app import make_app
from harness.fakes.cloudflare.pictures import ImageMaker
from harness.fakes.cloudflare.schemas import (
    MODELS,
    BadInput,
    Flagged,
    ModelSchema,
    Prop,
    validate_form,
    validate_json,
)
from harness.fakes.cloudflare.server import (
    FakeServer,
    main,
    start,
)
from harness.fakes.cloudflare.state import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_API_TOKEN,
    DEFAULT_FAULT_SLEEP,
    DEFAULT_LLM_KEY,
    DEFAULT_LLM_REPLY,
    IMAGE_FAULTS,
    LLM_FAULTS,
    RANDOM_FAULTS,
    RATE_LIMIT_RETRY_AFTER,
    FakeState,
    cf_error,
)

__all__ = [
    "BadInput",
    "DEFAULT_ACCOUNT_ID",
    "DEFAULT_API_TOKEN",
    "DEFAULT_FAULT_SLEEP",
    "DEFAULT_LLM_KEY",
    "DEFAULT_LLM_REPLY",
    "FakeServer",
    "FakeState",
    "Flagged",
    "IMAGE_FAULTS",
    "ImageMaker",
    "LLM_FAULTS",
    "MODELS",
    "ModelSchema",
    "Prop",
    "RANDOM_FAULTS",
    "RATE_LIMIT_RETRY_AFTER",
    "cf_error",
    "main",
    "make_app",
    "start",
    "validate_form",
    "validate_json",
]
