"""fal.ai's models (`fal:fal-ai/flux/schnell`, ...): one image per call, paid in dollars.

Which path a generation takes:

- the synchronous endpoint (`POST {FAL_API_BASE}/{endpoint}`), for every model not known to be
  slow: one round trip, the answer in seconds. It may wait at most SYNC_WAIT seconds (less when
  the generation's deadline is nearer), and fal is told so (`X-Fal-Request-Timeout`), so that
  fal itself gives up with a 504 `request_timeout`, which bills nothing;
- the queue (queue.py), for models known to take longer than that (QUEUE_FIRST), and for a
  synchronous call that timed out (fal's 504 `request_timeout` / `startup_timeout`, or no answer
  within the wait) while the deadline leaves time: the queue has no time limit of its own, it
  can be polled, and it can be cancelled when the client goes, which a synchronous call cannot.

Either way the whole generation, its calls, its polls and the download of the result, ends by
UPSTREAM_TIMEOUT. Nothing is retried on the same path: fal bills no failure, and a passing fault
(429, 5xx, timeout) is cured faster by MODEL_FALLBACKS than by waiting here. The result file is
downloaded at once under net/provider_files.py's rules (fal's media hosts, no key sent); a data
URI (`sync_mode`) is taken as it is. A picture fal's safety checker flagged is refused
(`content_policy_violation`), never delivered.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

import requests

from ...errors import ContentPolicy, UpstreamError, UpstreamTimeout, raise_if_cancelled
from ...generation import fitting
from ...generation.backend import GeneratedImage, GenerationRequest
from ...net.provider_files import PROVIDER_FILE_TIMEOUT, FileHosts, ProviderFiles
from ...net.upstream import UpstreamProblem, call
from ...redaction import redact
from ..results import malformed, oversized
from .failures import CONTENT_POLICY_MESSAGE, answer_error, classify
from .payloads import Malformed, build_body, endpoint_of, read_result
from .queue import CONNECT_TIMEOUT, FalQueue

log = logging.getLogger(__name__)
PROVIDER = "fal"                   # how errors name who answered

# fal's result files (`https://v3.fal.media/files/...`): its media domain and every host under
# it, https only, public addresses only. PROVIDER_FILE_HOSTS adds others (a local fake, a mirror).
FAL_FILE_DOMAINS = ("fal.media",)
SYNC_WAIT = 30.0          # seconds a synchronous call may take before the queue takes over
SYNC_GRACE = 2.0          # beyond fal's own timeout, for its 504 to reach us
MIN_QUEUE_TIME = 1.0      # seconds of the deadline left that make the queue worth a try
# Endpoints that often take longer than SYNC_WAIT (FLUX.2 [flex] edit: up to 50 steps over
# several input pictures): submitted to the queue at once, so they stay cancellable.
QUEUE_FIRST = frozenset({"fal-ai/flux-2-flex/edit"})


class FalBackend:
    """Generates images with fal's models, synchronously or through its queue."""

    name = "fal"

    def __init__(self, *, key: str, session: requests.Session, api_base: str, queue_base: str,
                 timeout: float = 120.0, files: ProviderFiles | None = None,
                 file_hosts: tuple[str, ...] = (), sync_wait: float = SYNC_WAIT,
                 clock: Callable[[], float] = time.monotonic):
        if not key:
            raise ValueError("fal needs FAL_KEY")
        self._key = key
        self._headers = {"Authorization": f"Key {key}"}
        self.api_base = api_base.rstrip("/")
        self.timeout = float(timeout)
        self.sync_wait = float(sync_wait)
        self.files = files or ProviderFiles(
            FileHosts(FAL_FILE_DOMAINS, file_hosts), sniff=fitting.sniff,
            timeout=min(self.timeout, PROVIDER_FILE_TIMEOUT))
        self._session = session
        self._clock = clock
        self.queue = FalQueue(base=queue_base, headers=self._headers, session=session,
                              redact=self._redact, clock=clock)

    def __repr__(self) -> str:
        # Never the key: a repr can end up in a log line or a traceback.
        return f"FalBackend(api_base={self.api_base!r}, queue_base={self.queue.base!r})"

    def _redact(self, text: str) -> str:
        return redact(text, (self._key, *self._key.split(":")))

    def generate(self, request: GenerationRequest) -> GeneratedImage:
        """Draw one image (sync first, or the queue; see the module's text) and download it."""
        raise_if_cancelled(request.cancel)
        model = request.model
        endpoint = endpoint_of(model)
        body = build_body(model, request)
        deadline = self._clock() + self.timeout
        output = None if endpoint in QUEUE_FIRST else self._sync(request, endpoint, body,
                                                                   deadline)
        if output is None:
            output = self.queue.run(model, endpoint, body, deadline, request.cancel,
                                    lambda: self._book(request))
        return self._image(request, output)

    def _sync(self, request: GenerationRequest, endpoint: str, body: dict,
              deadline: float) -> Any | None:
        """fal's output JSON, or None when the queue should take over (fal timed out)."""
        model = request.model
        wait = min(self.sync_wait, deadline - self._clock())
        headers = {**self._headers, "X-Fal-Request-Timeout": str(max(1, int(wait)))}
        started = self._clock()
        try:
            resp = call(self._session, "POST", f"{self.api_base}/{endpoint}", json=body,
                        timeout=min(wait + SYNC_GRACE, deadline - started),
                        connect_timeout=CONNECT_TIMEOUT, headers=headers)
        except UpstreamProblem as exc:
            raise UpstreamError(f"fal's answer for {model.id} was refused: {exc}.") from exc
        except requests.ConnectTimeout as exc:
            raise UpstreamTimeout(f"Could not connect to fal for {model.id} within "
                                  f"{CONNECT_TIMEOUT:g} seconds. Try again later.") from exc
        except requests.Timeout as exc:
            # fal was told to stop at `wait`; its answer did not come. The queue gets the rest.
            if deadline - self._clock() >= MIN_QUEUE_TIME:
                log.info("fal %s: no synchronous answer in %.0f s; using the queue", model.id,
                         wait)
                return None
            raise UpstreamTimeout(f"fal did not answer within {self.timeout:g} seconds for "
                                  f"{model.id}. Try again, perhaps with fewer steps or a "
                                  "smaller size.") from exc
        except requests.RequestException as exc:
            raise UpstreamError(f"Could not reach fal for {model.id} ({type(exc).__name__}). "
                                "Try again later.") from exc
        log.log(logging.INFO if resp.status_code >= 400 else logging.DEBUG,
                "fal %s: HTTP %d in %d ms", model.id, resp.status_code,
                (self._clock() - started) * 1000)
        if resp.status_code >= 400:
            err = answer_error(resp, self._redact)
            if err.timed_out and deadline - self._clock() >= MIN_QUEUE_TIME:
                log.info("fal %s: %s on the synchronous call; using the queue", model.id,
                         err.error_type or "HTTP 504")
                return None
            raise classify(model, err)
        try:
            return resp.json()
        except ValueError:
            self._book(request)
            raise malformed(PROVIDER, model, "the body is not JSON") from None

    def _image(self, request: GenerationRequest, output: Any) -> GeneratedImage:
        """The picture fal's output names: refused when flagged, downloaded when a link."""
        model = request.model
        try:
            result = read_result(output)
        except Malformed as exc:
            self._book(request)
            raise malformed(PROVIDER, model, str(exc)) from exc
        if result.flagged:
            # fal made (and bills) the picture; its checker flagged it: never delivered.
            self._book(request)
            raise ContentPolicy(CONTENT_POLICY_MESSAGE, param="prompt")
        if request.cancel is not None and request.cancel.is_set():
            self._book(request)
            raise_if_cancelled(request.cancel)
        data = result.data
        if result.link is not None:
            try:
                data, _ = self.files.download(result.link, f"the file {model.id} made")
            except UpstreamError:
                self._book(request)       # drawn and billed, but not had
                raise
        assert data is not None
        refused = oversized(PROVIDER, model, data)
        if refused is not None:
            self._book(request)
            raise refused
        return GeneratedImage(data, content_type=fitting.sniff(data))

    @staticmethod
    def _book(request: GenerationRequest) -> None:
        """Book a call fal billed although no image is delivered (the estimate's dollars)."""
        if request.cost is not None:
            request.cost.billed(None)
