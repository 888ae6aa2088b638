"""Replicate's official models: one prediction per image, held, then polled, then downloaded.

One generation is `POST {REPLICATE_API_BASE}/models/{owner}/{name}/predictions` with
`{"input": {...}}`, `Authorization: Bearer <REPLICATE_API_TOKEN>` and `Prefer: wait=N`: Replicate
holds the answer up to N seconds (PREFER_WAIT_MAX at most) and most FLUX predictions finish in
that time. A prediction still `starting`/`processing` then is polled at its `urls.get` until it
ends, the caller goes (its `urls.cancel` is posted, so nothing more runs or bills) or
UPSTREAM_TIMEOUT passes (cancelled too). The output link is downloaded at once (Replicate
deletes API files after an hour) under net/provider_files.py's rules: only from
`replicate.delivery` and PROVIDER_FILE_HOSTS, never with the token.

A create is never repeated: it may have started a billed prediction. Polls are GETs and are
simply tried again on the next tick when one fails (429, 5xx, a dropped connection).
One image per call (`num_outputs: 1`): the pipeline calls once per image of `n`, in parallel,
so fallback, cost and storage see each image alone.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable
from urllib.parse import quote

import requests

from ...catalog.replicate import replicate_name
from ...catalog.spec import ModelSpec
from ...errors import APIError, UpstreamError, UpstreamTimeout, raise_if_cancelled
from ...generation import fitting
from ...generation.backend import GeneratedImage, GenerationRequest
from ...net.provider_files import FileHosts, ProviderFiles
from ...net.upstream import Answer, UpstreamProblem, call, retry_after_seconds
from ...redaction import redact
from ..cloudflare.backend import CONNECT_TIMEOUT
from ..results import malformed, oversized
from .failures import canceled_error, failed_error, http_error
from .payloads import (
    CANCELED,
    FAILED,
    SUCCEEDED,
    Malformed,
    Prediction,
    build_input,
    read_prediction,
)

log = logging.getLogger(__name__)
PROVIDER = "Replicate"             # how errors name who answered

# Replicate's documented file host (reference §3, Files): https, public addresses only.
REPLICATE_FILE_DOMAINS = ("replicate.delivery",)
PREFER_WAIT_MAX = 60        # seconds Replicate holds a create at most (`Prefer: wait=N`, §3)
WAIT_MARGIN = 2             # seconds of the deadline left for the held answer to arrive
POLL_FIRST = 0.5            # seconds before the first poll (the official SDK polls every 0.5 s)
POLL_MAX = 1.0              # ... growing by POLL_GROWTH up to this
POLL_GROWTH = 1.25
POLL_RETRY_AFTER_CAP = 10    # a throttled poll waits at most this long before the next
CANCEL_TIMEOUT = 5.0        # seconds for the cancel call, which comes when the deadline is spent


def _pause(cancel: threading.Event | None, seconds: float) -> None:
    """Wait between polls; a caller who goes ends the wait at once."""
    if cancel is not None:
        cancel.wait(seconds)
    else:
        time.sleep(seconds)


class ReplicateBackend:
    """Generates images with Replicate's official models."""

    name = "replicate"

    def __init__(self, *, token: str, session: requests.Session, api_base: str,
                 timeout: float = 120.0, files: ProviderFiles | None = None,
                 file_hosts: tuple[str, ...] = (),
                 pause: Callable[[threading.Event | None, float], None] = _pause,
                 clock: Callable[[], float] = time.monotonic):
        if not token:
            raise ValueError("Replicate needs REPLICATE_API_TOKEN")
        self.api_base = api_base.rstrip("/")
        self.timeout = float(timeout)
        self.files = files or ProviderFiles(
            FileHosts(REPLICATE_FILE_DOMAINS, file_hosts), sniff=fitting.sniff,
            timeout=min(self.timeout, 60.0))
        self._token = token
        self._session = session
        self._pause = pause
        self._clock = clock

    def __repr__(self) -> str:
        # Never the token: a repr can end up in a log line or a traceback.
        return f"ReplicateBackend(api_base={self.api_base!r})"

    def _redact(self, text: str) -> str:
        return redact(text, (self._token,))

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def generate(self, request: GenerationRequest) -> GeneratedImage:
        """Create the prediction, follow it to its end, download its one image."""
        raise_if_cancelled(request.cancel)
        model = request.model
        body = build_input(model, request)
        deadline = self._clock() + self.timeout
        prediction = self._create(model, body, deadline)
        prediction = self._follow(request, prediction, deadline)
        if prediction.status == FAILED:
            raise failed_error(model, prediction.error_text(), self._redact)
        if prediction.status == CANCELED:
            raise canceled_error(model)
        if prediction.status != SUCCEEDED:
            raise malformed(PROVIDER, model,
                            f"its prediction ended with the status {prediction.status!r}")
        try:
            link = prediction.first_output()
        except Malformed as exc:
            self._book(request)
            raise malformed(PROVIDER, model, str(exc)) from exc
        if request.cancel is not None and request.cancel.is_set():
            self._book(request)               # drawn and billed, though nobody waits for it
            raise_if_cancelled(request.cancel)
        return self._download(request, link)

    # -- the calls -----------------------------------------------------------------------------

    def _create(self, model: ModelSpec, body: dict, deadline: float) -> Prediction:
        url = f"{self.api_base}/models/{replicate_name(model)}/predictions"
        remaining = deadline - self._clock()
        headers = self._headers()
        hold = min(PREFER_WAIT_MAX, int(remaining - WAIT_MARGIN))
        if hold >= 1:
            headers["Prefer"] = f"wait={hold}"
        try:
            # No redirect is followed and the whole answer has one deadline (net/upstream).
            resp = call(self._session, "POST", url, json=body, timeout=remaining,
                        connect_timeout=CONNECT_TIMEOUT, headers=headers)
        except UpstreamProblem as exc:
            raise UpstreamError(f"Replicate's answer for {model.id} was refused: {exc}.") from exc
        except requests.Timeout as exc:
            raise UpstreamTimeout(
                f"Replicate did not answer within {self.timeout:g} seconds for {model.id}. "
                "Try again later.") from exc
        except requests.RequestException as exc:
            raise UpstreamError(f"Could not reach Replicate for {model.id} "
                                f"({type(exc).__name__}). Try again later.") from exc
        return self._prediction(model, resp)

    def _prediction(self, model: ModelSpec, resp: Answer) -> Prediction:
        if resp.status_code >= 400:
            log.info("replicate %s: HTTP %d", model.id, resp.status_code)
            raise http_error(model, resp, self._redact)
        try:
            prediction = read_prediction(resp.json())
        except ValueError as exc:          # Malformed, or a body that is not JSON
            raise malformed(PROVIDER, model, str(exc) if isinstance(exc, Malformed)
                            else "the body is not JSON") from exc
        log.debug("replicate %s: prediction %s %s", model.id, prediction.id, prediction.status)
        return prediction

    def _follow(self, request: GenerationRequest, prediction: Prediction,
                deadline: float) -> Prediction:
        """Poll a running prediction until it ends; cancel it when the caller or time is up."""
        model = request.model
        delay = POLL_FIRST
        while prediction.running:
            if request.cancel is not None and request.cancel.is_set():
                self._cancel(prediction)
                raise_if_cancelled(request.cancel)
            if self._clock() + delay >= deadline:
                self._cancel(prediction)
                raise UpstreamTimeout(
                    f"Replicate's prediction for {model.id} did not finish within "
                    f"{self.timeout:g} seconds; it was cancelled. Try again later.")
            self._pause(request.cancel, delay)
            if request.cancel is not None and request.cancel.is_set():
                continue                          # cancelled at the top of the loop
            polled, wait = self._poll(model, prediction, deadline)
            prediction = polled or prediction
            delay = max(min(POLL_MAX, delay * POLL_GROWTH), wait)
        return prediction

    def _poll(self, model: ModelSpec, prediction: Prediction,
              deadline: float) -> tuple[Prediction | None, float]:
        """One GET of the prediction: it, or None and how long to wait after a passing fault."""
        try:
            resp = call(self._session, "GET", self._link(prediction, "get"),
                        timeout=max(1.0, deadline - self._clock()),
                        connect_timeout=CONNECT_TIMEOUT, headers=self._headers())
        except (requests.RequestException, UpstreamProblem) as exc:
            log.info("replicate %s: poll of %s failed (%s); polling again", model.id,
                     prediction.id, type(exc).__name__)
            return None, 0.0
        if resp.status_code == 429 or resp.status_code >= 500:
            wait = retry_after_seconds(resp.headers.get("Retry-After"), POLL_RETRY_AFTER_CAP)
            log.info("replicate %s: poll of %s answered HTTP %d; polling again", model.id,
                     prediction.id, resp.status_code)
            return None, wait or 0.0
        try:
            return self._prediction(model, resp), 0.0
        except APIError:
            self._cancel(prediction)          # whatever went wrong, stop what would still run
            raise

    def _link(self, prediction: Prediction, which: str) -> str:
        """The prediction's `urls.get`/`urls.cancel`, only when under REPLICATE_API_BASE.

        The token goes with it: a link elsewhere (a forged or odd answer) is replaced by the
        documented route built from the id, so the token never reaches another host.
        """
        named = getattr(prediction.urls, which)
        if isinstance(named, str) and named.startswith(self.api_base + "/"):
            return named
        route = f"{self.api_base}/predictions/{quote(prediction.id, safe='')}"
        return route if which == "get" else route + "/cancel"

    def _cancel(self, prediction: Prediction) -> None:
        """Cancel upstream so that nothing more runs or bills; a failure is only logged."""
        try:
            resp = call(self._session, "POST", self._link(prediction, "cancel"),
                        timeout=CANCEL_TIMEOUT, connect_timeout=CANCEL_TIMEOUT,
                        headers=self._headers())
            log.info("replicate: cancelled prediction %s (HTTP %d)", prediction.id,
                     resp.status_code)
        except (requests.RequestException, UpstreamProblem) as exc:
            log.warning("replicate: the cancel of prediction %s failed (%s)", prediction.id,
                        type(exc).__name__)

    def _download(self, request: GenerationRequest, link: str) -> GeneratedImage:
        model = request.model
        try:
            data, kind = self.files.download(link, f"the file {model.id} made")
        except UpstreamError:
            self._book(request)               # drawn and billed, but not had
            raise
        refused = oversized(PROVIDER, model, data)
        if refused is not None:
            self._book(request)
            raise refused
        return GeneratedImage(data, content_type=kind)

    @staticmethod
    def _book(request: GenerationRequest) -> None:
        """Count a prediction that succeeded (Replicate bills its output) but gave no image."""
        if request.cost is not None:
            request.cost.billed(None)
