"""fal's queue API: submit, poll the status until COMPLETED, fetch the result, cancel.

`POST {FAL_QUEUE_BASE}/{endpoint}` answers `{request_id, status_url, response_url, cancel_url}`.
Those URLs drop the endpoint's subpath (`fal-ai/flux/dev` -> `fal-ai/flux/requests/{id}`), so
they are used as given, never rebuilt; and since the key goes with them, each must be on the
queue's own origin (scheme, host and port of FAL_QUEUE_BASE), else it is refused unfetched.
The status is polled with growing pauses; the wait wakes at once when the client goes, and then
the job is cancelled (`PUT cancel_url`: fal cancels only jobs still queued, so a job already
running still runs to its end and is billed, and is booked as such). Every call and the whole
wait end by the generation's deadline (UPSTREAM_TIMEOUT).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit

import requests

from ...catalog.spec import ModelSpec
from ...errors import Cancelled, UpstreamError, UpstreamTimeout
from ...net.upstream import UpstreamProblem, call
from .failures import answer_error, classify, read_error

log = logging.getLogger(__name__)

POLL_FIRST = 0.25           # seconds before the first status request
POLL_MAX = 2.0              # the pauses grow by half each time, up to this
CALL_TIMEOUT = 15.0         # one submit, status or result request (within the deadline)
CANCEL_TIMEOUT = 5.0        # the cancel is best effort: the caller has gone already
CONNECT_TIMEOUT = 10.0
WAITING = ("IN_QUEUE", "IN_PROGRESS")


@dataclass(frozen=True)
class Job:
    """One queued request: the URLs fal answered the submit with."""

    request_id: str
    status_url: str
    response_url: str
    cancel_url: str


class Expired(Exception):
    """The generation's deadline passed (the caller raises UpstreamTimeout)."""


class FalQueue:
    """The queue's calls for one backend: its key, origin and session."""

    def __init__(self, *, base: str, headers: dict[str, str], session: requests.Session,
                 redact: Callable[[str], str], clock: Callable[[], float] = time.monotonic):
        self.base = base.rstrip("/")
        origin = urlsplit(self.base)
        self._origin = (origin.scheme, origin.netloc.lower())
        self._headers = headers
        self._session = session
        self._redact = redact
        self._clock = clock

    def run(self, model: ModelSpec, endpoint: str, body: dict, deadline: float,
            cancel: threading.Event | None, billed: Callable[[], None]) -> Any:
        """Submit, wait for the result and return fal's output JSON.

        :raises Cancelled: the client went (the job was cancelled, or booked when it ran on).
        :raises APIError: fal's failure, mapped; UpstreamTimeout when the deadline passed.
        """
        job = self._submit(model, endpoint, body, deadline)
        try:
            return self._wait(model, job, deadline, cancel)
        except (Cancelled, UpstreamTimeout):
            # Gone, or out of time: the job must not run on for nobody.
            self.cancel(job, billed)
            raise

    def _wait(self, model: ModelSpec, job: Job, deadline: float,
              cancel: threading.Event | None) -> Any:
        pause = POLL_FIRST
        while True:
            wait = min(pause, self._left(deadline, floor=0))
            if cancel is None:
                time.sleep(wait)
            else:
                # wait() wakes when the event is set; is_set() also notices a closed connection
                # (chat/streaming.ClientWatch), which sets nothing by itself.
                cancel.wait(wait)
                if cancel.is_set():
                    raise Cancelled("The client closed the connection; the fal job was "
                                    "cancelled.")
            if self._left(deadline, floor=0) <= 0:
                raise UpstreamTimeout(f"fal did not finish {model.id} within the deadline "
                                      "(UPSTREAM_TIMEOUT); the queued job was cancelled.")
            status = self._get(model, job.status_url, deadline)
            state = status.get("status") if isinstance(status, dict) else None
            if state in WAITING:
                pause = min(POLL_MAX, pause * 1.5)
                continue
            if state != "COMPLETED":
                raise UpstreamError(f"fal's queue answered an unknown status for {model.id}.")
            if status.get("error") or status.get("error_type"):
                # A job that failed bills nothing (fal bills successes only).
                raise classify(model, read_error(0, {"detail": status.get("error"),
                                                     "error_type": status.get("error_type")},
                                                 None, self._redact))
            return self._get(model, job.response_url, deadline)

    def cancel(self, job: Job, billed: Callable[[], None]) -> None:
        """Ask fal to cancel `job`; one it refuses (already running) is booked as billed."""
        try:
            resp = call(self._session, "PUT", job.cancel_url, timeout=CANCEL_TIMEOUT,
                        connect_timeout=CONNECT_TIMEOUT, headers=self._headers)
        except (requests.RequestException, UpstreamProblem) as exc:
            log.info("fal job %s: the cancel failed (%s)", job.request_id, type(exc).__name__)
            billed()
            return
        log.info("fal job %s: cancel answered HTTP %d", job.request_id, resp.status_code)
        if resp.status_code >= 300:
            billed()        # it runs on to its end, and fal bills it

    def _submit(self, model: ModelSpec, endpoint: str, body: dict, deadline: float) -> Job:
        resp = self._call(model, "POST", f"{self.base}/{endpoint}", deadline, json=body)
        try:
            data = resp.json()
        except ValueError:
            data = None
        fields = [data.get(name) if isinstance(data, dict) else None
                  for name in ("request_id", "status_url", "response_url", "cancel_url")]
        urls = [value for value in fields if isinstance(value, str) and value]
        if len(urls) != len(fields):
            raise UpstreamError(f"fal's queue answered no job for {model.id} (request_id, "
                                "status_url, response_url and cancel_url are needed).")
        job = Job(*urls)
        for url in urls[1:]:
            parts = urlsplit(url)
            if (parts.scheme, parts.netloc.lower()) != self._origin:
                # The key goes with these requests: never to a host the operator did not name.
                raise UpstreamError(f"fal's queue named a job URL on {parts.hostname}, not on "
                                    "FAL_QUEUE_BASE's host; it was not followed.")
        log.info("fal %s: queued as %s", model.id, job.request_id)
        return job

    def _get(self, model: ModelSpec, url: str, deadline: float) -> Any:
        resp = self._call(model, "GET", url, deadline)
        try:
            return resp.json()
        except ValueError:
            raise UpstreamError(f"fal's queue answered something that is not JSON for "
                                f"{model.id}.") from None

    def _call(self, model: ModelSpec, method: str, url: str, deadline: float, **kwargs: Any):
        left = self._left(deadline)
        try:
            resp = call(self._session, method, url, timeout=min(CALL_TIMEOUT, left),
                        connect_timeout=CONNECT_TIMEOUT, headers=self._headers, **kwargs)
        except UpstreamProblem as exc:
            raise UpstreamError(f"fal's queue answer for {model.id} was refused: {exc}.") \
                from exc
        except requests.Timeout as exc:
            raise UpstreamTimeout(f"fal's queue did not answer in time for {model.id}. Try "
                                  "again later.") from exc
        except requests.RequestException as exc:
            raise UpstreamError(f"Could not reach fal's queue for {model.id} "
                                f"({type(exc).__name__}). Try again later.") from exc
        if resp.status_code >= 400:
            raise classify(model, answer_error(resp, self._redact))
        return resp

    def _left(self, deadline: float, floor: float = 0.001) -> float:
        """Seconds until the deadline; at least `floor` (a call with no time left fails)."""
        return max(floor, deadline - self._clock())

