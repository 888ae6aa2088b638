"""The Cloudflare Workers AI image backend (REST, optionally through an AI Gateway).

One generation is one POST to `.../ai/run/{model}` on the first usable account (CF_ACCOUNTS),
retried only when a retry can help: payloads.py builds the body and reads the answer,
failures.py maps what went wrong to the project's errors and says whether to retry.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import replace
from typing import Callable

import requests

from ...catalog.spec import ModelSpec
from ...config import DEFAULT_CF_API_BASE
from ...cost.accounts import Account, AccountPool
from ...cost.books import ImageCost
from ...errors import APIError, QuotaExceeded, UpstreamAuthFailed, UpstreamError, raise_if_cancelled
from ...generation.backend import GeneratedImage, GenerationRequest
from ...net.upstream import Answer, BodyTooLarge, UpstreamProblem, call
from ...redaction import redact
from ..results import malformed, oversized
from .failures import (
    CloudflareError,
    Failure,
    classify,
    error_from,
    retry_wait,
    transport_failure,
)
from .payloads import Malformed, billed_neurons, build_request, read_image

# The name these lines have always carried in the log, which operators may filter on.
log = logging.getLogger("flux_worker.backends.cloudflare")
PROVIDER = "Cloudflare"            # how errors name who answered

CONNECT_TIMEOUT = 10.0


class CloudflareBackend:
    """Generates images with Cloudflare Workers AI over REST."""

    name = "cloudflare"

    def __init__(self, *, account_id: str = "", api_token: str = "", session: requests.Session,
                 api_base: str = DEFAULT_CF_API_BASE, timeout: float = 120.0, retries: int = 2,
                 gateway_url: str = "", gateway_token: str = "",
                 sleep: Callable[[float], None] = time.sleep,
                 rng: Callable[[], float] = random.random,
                 accounts: AccountPool | None = None):
        # CF_ACCOUNTS gives a pool; CF_ACCOUNT_ID + CF_API_TOKEN is a pool of one.
        self.accounts = accounts or AccountPool((Account(account_id, api_token),))
        self.account_id = self.accounts.accounts[0].id
        self.api_base = api_base.rstrip("/")
        self.timeout = float(timeout)
        self.retries = max(0, int(retries))
        self.gateway_url = gateway_url.rstrip("/")
        self._gateway_token = gateway_token
        self._session = session
        self._sleep = sleep
        self._rng = rng
        # CF documents `/workers-ai/{model}`, some gateways only answer `/workers-ai/run/{model}`
        # (reference §7); flipped once the `/run/` form is seen to work.
        self._gateway_run_path = False
        # FLUX.2 multipart calls fail through AI Gateway (HTTP 500, code 7000; reference §8):
        # flipped on the first such failure, after which every multipart call goes direct.
        self._multipart_direct = False
        self._said_direct = False

    def __repr__(self) -> str:
        # Never the tokens: a repr can end up in a log line or a traceback.
        via = f", gateway={self.gateway_url!r}" if self.gateway_url else ""
        return f"CloudflareBackend(api_base={self.api_base!r}{via})"

    # -- URLs and headers ---------------------------------------------------------------------

    def url_for(self, model: ModelSpec, *, run_path: bool | None = None,
                account: Account | None = None, direct: bool = False) -> str:
        """Return the endpoint for `model`, keeping the id's slashes and `@` literally."""
        account = account or self.accounts.accounts[0]
        if direct or not self._gateway_for(account):
            return f"{self.api_base}/accounts/{account.id}/ai/run/{model.id}"
        use_run = self._gateway_run_path if run_path is None else run_path
        return f"{self.gateway_url}/workers-ai/{'run/' if use_run else ''}{model.id}"

    def _gateway_for(self, account: Account) -> bool:
        """Whether calls for `account` go through CF_AI_GATEWAY.

        A gateway belongs to one account (its id is in the gateway URL); with several accounts
        the others are called directly.
        """
        if not self.gateway_url:
            return False
        return self.accounts.single or f"/{account.id}/" in self.gateway_url + "/"

    def _headers(self, account: Account, direct: bool = False) -> dict[str, str]:
        """Return the auth headers (kept out of every log line and message)."""
        headers = {"Authorization": f"Bearer {account.token}"}
        if self._gateway_for(account) and not direct and self._gateway_token:
            headers["cf-aig-authorization"] = f"Bearer {self._gateway_token}"
        return headers

    def _redact(self, text: str) -> str:
        """Remove the tokens from text quoted from upstream or from an exception."""
        return redact(text, (*self.accounts.tokens(), self._gateway_token))

    # -- generation ---------------------------------------------------------------------------

    def generate(self, request: GenerationRequest) -> GeneratedImage:
        """Generate one image on the first usable account, moving on when one is out.

        An account with a budget of its own is reserved (`request.cost`) before it is called,
        as the key's budget is at admission, so the images in flight cannot all pass it; the
        claim is given back when the call there billed nothing (an error answer, a used-up
        allocation, a refused token, a client gone before a retry).
        """
        model = request.model
        json_body, files = build_request(model, request)
        direct = self._goes_direct(model, bool(request.images))
        cost = request.cost
        # CF_ACCOUNTS: the first usable account draws; one used up or refused passes it on.
        estimate = (cost.estimate if cost is not None and cost.estimate is not None
                    else model.estimate(request.width, request.height, request.steps) or 0.0)
        last: APIError | None = None
        for index, account in enumerate(self.accounts.choose(estimate)):
            if index:
                raise_if_cancelled(request.cancel)   # the next account bills again
            if cost is not None and not cost.claim(account.id, account.budget):
                continue                             # the images in flight took its budget
            try:
                image = self._generate_on(account, model, json_body, files, request.cancel,
                                          direct, cost)
            except QuotaExceeded as exc:       # 4006/3036: this account's allocation is gone
                self._unclaim(cost, account)
                self.accounts.exhausted(account)
                last = exc
                continue
            except UpstreamAuthFailed as exc:  # its token or id was refused
                self._unclaim(cost, account)
                self.accounts.rejected(account, exc.message)
                last = exc
                continue
            except BaseException:
                # A billed failure was booked on the claim already; whatever is left goes back.
                self._unclaim(cost, account)
                raise
            return replace(image, account=account.id)
        raise self.accounts.out_of_accounts(last, estimate)

    @staticmethod
    def _unclaim(cost: ImageCost | None, account: Account) -> None:
        if cost is not None:
            cost.unclaim(account.id)

    def _generate_on(self, account: Account, model: ModelSpec, json_body: dict | None,
                     files: dict | None, cancel: threading.Event | None,
                     direct: bool = False, cost: ImageCost | None = None) -> GeneratedImage:
        """Generate on one account, retrying only failures that a retry can fix.

        Only error answers and connections that never opened are retried, and Cloudflare bills
        neither, so a client gone before a retry has cost nothing. A failure that may have been
        billed (a read timeout, an answer that is no image) is never retried: its cost is
        booked on `cost` (the estimate: no figure came with it) before it is raised.
        """
        attempts = 1 + self.retries
        for attempt in range(1, attempts + 1):
            outcome = self._attempt(model, json_body, files, attempt, attempts, account, direct)
            if isinstance(outcome, GeneratedImage):
                return outcome
            wait = retry_wait(outcome, attempt, self._rng)
            if attempt == attempts or wait is None:
                if outcome.billed and cost is not None:
                    cost.billed(None, account.id)
                raise outcome.error from outcome.cause
            self._sleep(wait)
            # A retry is a second bill: not for a client that has gone meanwhile.
            raise_if_cancelled(cancel)
        raise AssertionError("unreachable")  # the loop always returns or raises

    def _goes_direct(self, model: ModelSpec, has_images: bool) -> bool:
        """Whether a multipart call skips the gateway (reference §8), saying so once in the log."""
        if not self.gateway_url or model.encoding != "multipart":
            return False
        if not (has_images or self._multipart_direct):
            return False
        self._say_direct("multipart calls with images")
        return True

    def _say_direct(self, what: str) -> None:
        if not self._said_direct:
            self._said_direct = True
            log.warning("cloudflare: %s go to the direct route, not through CF_AI_GATEWAY "
                        "(AI Gateway fails FLUX.2 multipart calls: HTTP 500, code 7000)", what)

    def _is_gateway_7000(self, model: ModelSpec, resp: Answer) -> bool:
        return (model.encoding == "multipart" and resp.status_code == 500
                and self._error_from(resp).code == 7000)

    def _attempt(self, model: ModelSpec, json_body: dict | None, files: dict | None,
                 attempt: int, attempts: int, account: Account,
                 direct: bool = False) -> GeneratedImage | Failure:
        """Make one attempt (two requests when the gateway path must be discovered)."""
        via_gateway = self._gateway_for(account) and not direct
        try:
            resp = self._post(model, self.url_for(model, account=account, direct=direct),
                              json_body, files, attempt, attempts, account, direct)
            if via_gateway and self._is_gateway_7000(model, resp):
                # AI Gateway fails FLUX.2 multipart calls: take the direct route, and stay there.
                self._multipart_direct = True
                self._say_direct("multipart calls")
                via_gateway = False
                resp = self._post(model, self.url_for(model, account=account, direct=True),
                                  json_body, files, attempt, attempts, account, True)
            if via_gateway and not self._gateway_run_path and self._is_7003(resp):
                # Reference §7: one 3P gateway answered 7003 without `/run/`; try that form once.
                run_resp = self._post(model, self.url_for(model, run_path=True, account=account),
                                      json_body, files, attempt, attempts, account)
                if run_resp.status_code < 400:  # remembered only once it has really worked
                    self._gateway_run_path = True
                    log.info("cloudflare gateway answers on /workers-ai/run/{model}; using it")
                resp = run_resp
        except UpstreamProblem as exc:
            # Too large or a redirect: refused whole, and a retry would meet the same. An answer
            # too large was drawn (error answers are small envelopes), so it may be billed.
            return Failure(UpstreamError(
                f"Cloudflare's answer for {model.id} was refused: {exc}."), cause=exc,
                billed=isinstance(exc, BodyTooLarge))
        except requests.RequestException as exc:
            return transport_failure(model, exc, attempts, timeout=self.timeout,
                                     connect_timeout=CONNECT_TIMEOUT)
        if resp.status_code < 400:
            try:
                image = read_image(resp)
                refused = oversized(PROVIDER, model, image.data)
                if refused is not None:
                    return Failure(refused, billed=True)
                return replace(image, neurons=billed_neurons(resp.headers))
            except Malformed as exc:
                cf = self._error_from(resp)
                if cf.code is not None:
                    # A 2xx carrying an error envelope is still that error.
                    return classify(model, cf, resp, attempts, gateway=bool(self.gateway_url))
                return Failure(malformed(PROVIDER, model, str(exc)), cause=exc, billed=True)
        return classify(model, self._error_from(resp), resp, attempts,
                        gateway=bool(self.gateway_url))

    def _post(self, model: ModelSpec, url: str, json_body: dict | None, files: dict | None,
              attempt: int, attempts: int, account: Account,
              direct: bool = False) -> Answer:
        """POST once and log one line: model, status, duration, attempt (never headers)."""
        started = time.monotonic()
        try:
            # One bounded call: UPSTREAM_TIMEOUT is the deadline of the whole answer, the body
            # is capped and no redirect is followed (the tokens must not go to another host).
            resp = call(self._session, "POST", url, json=json_body, files=files,
                        headers=self._headers(account, direct), timeout=self.timeout,
                        connect_timeout=CONNECT_TIMEOUT)
        except requests.RequestException as exc:
            log.info("cloudflare %s attempt %d/%d: %s after %d ms", model.id, attempt, attempts,
                     type(exc).__name__, (time.monotonic() - started) * 1000)
            raise
        code = ""
        if resp.status_code >= 400:
            cf = self._error_from(resp)
            code = f" code {cf.code}" if cf.code is not None else ""
        # Successes are DEBUG: the access line already reports them, and a log line per
        # upstream call costs measurable CPU at a hundred generations a second.
        log.log(logging.INFO if resp.status_code >= 400 else logging.DEBUG,
                "cloudflare %s attempt %d/%d: HTTP %d%s in %d ms%s%s", model.id, attempt,
                attempts, resp.status_code, code, (time.monotonic() - started) * 1000,
                " via gateway" if self._gateway_for(account) and not direct else "",
                "" if self.accounts.single else f" account {account.label}")
        return resp

    # -- Cloudflare's errors ------------------------------------------------------------------

    def _error_from(self, resp: Answer) -> CloudflareError:
        """Read Cloudflare's error envelope, with the tokens taken out of its message."""
        return error_from(resp, self._redact)

    def _is_7003(self, resp: Answer) -> bool:
        return resp.status_code == 404 and self._error_from(resp).code == 7003
