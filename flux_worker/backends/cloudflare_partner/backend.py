"""Cloudflare's partner image models (`openai/gpt-image-2`, `google/imagen-4`, ...).

One generation is one `POST {CF_API_BASE}/accounts/{account}/ai/run` with
`{"model": id, "input": {...}}` and the Workers AI token, on the first account (CF_ACCOUNTS, in
order) that can pay: an account without credit (402) or whose token is refused moves on to the
next. The answer names a link to the provider's file, which expires: it is downloaded at once,
under net/provider_files.py's rules, and handed to the pipeline like any image (which fits it to
the exact size asked). Retried only where a retry can help (429 and 5xx answers, connections
that never opened); a call that may have run is never repeated, as it bills dollars.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import replace
from typing import Callable

import requests

from ...catalog.spec import ModelSpec
from ...cost.accounts import Account
from ...errors import APIError, QuotaExceeded, UpstreamAuthFailed, UpstreamError, raise_if_cancelled
from ...generation import fitting
from ...generation.backend import GeneratedImage, GenerationRequest
from ...net.provider_files import FileHosts, ProviderFiles
from ...net.upstream import Answer, BodyTooLarge, UpstreamProblem, call
from ...redaction import redact
from ..cloudflare.backend import CONNECT_TIMEOUT, PROVIDER
from ..cloudflare.failures import Failure, retry_wait, transport_failure
from ..results import malformed, oversized
from .failures import classify, partner_error
from .payloads import Malformed, build_body, read_result

log = logging.getLogger(__name__)

# Where Cloudflare's partner answers put their files. The reference shows only
# `https://<r2-host>/x.png` and names no host, so the allowance is Cloudflare's own storage
# domains (R2's public `r2.dev` buckets and its S3 endpoints) and cloudflare.com itself: https
# only, public addresses only (provider_files.py). An answer naming anything else is refused;
# an operator who sees a real host refused can add it to PROVIDER_FILE_HOSTS.
CLOUDFLARE_FILE_DOMAINS = ("r2.dev", "r2.cloudflarestorage.com", "cloudflare.com")


class CloudflarePartnerBackend:
    """Generates images with Cloudflare's partner models over the unified `/ai/run` route."""

    name = "cloudflare-partner"

    def __init__(self, *, accounts: tuple[Account, ...], session: requests.Session,
                 api_base: str, timeout: float = 120.0, retries: int = 2,
                 files: ProviderFiles | None = None, file_hosts: tuple[str, ...] = (),
                 sleep: Callable[[float], None] = time.sleep,
                 rng: Callable[[], float] = random.random):
        if not accounts:
            raise ValueError("the partner models need a Cloudflare account and token")
        self.accounts = accounts
        self.api_base = api_base.rstrip("/")
        self.timeout = float(timeout)
        self.retries = max(0, int(retries))
        self.files = files or ProviderFiles(
            FileHosts(CLOUDFLARE_FILE_DOMAINS, file_hosts), sniff=fitting.sniff,
            timeout=min(self.timeout, 60.0))
        self._session = session
        self._sleep = sleep
        self._rng = rng

    def __repr__(self) -> str:
        # Never the tokens: a repr can end up in a log line or a traceback.
        return f"CloudflarePartnerBackend(api_base={self.api_base!r})"

    def _redact(self, text: str) -> str:
        return redact(text, tuple(account.token for account in self.accounts))

    def generate(self, request: GenerationRequest) -> GeneratedImage:
        """Draw on the first account that can pay; download the file the answer names."""
        body = build_body(request.model, request)
        last: APIError | None = None
        for index, account in enumerate(self.accounts):
            raise_if_cancelled(request.cancel)       # each account's call bills again
            try:
                return self._generate_on(account, request, body)
            except (QuotaExceeded, UpstreamAuthFailed) as exc:
                # No credit, or a token without the permission: another account may have both.
                last = exc
                if index + 1 < len(self.accounts):
                    log.info("cloudflare-partner %s: account %s refused (%s); trying the next",
                             request.model.id, account.label, type(exc).__name__)
        assert last is not None
        raise last

    def _generate_on(self, account: Account, request: GenerationRequest,
                     body: dict) -> GeneratedImage:
        model = request.model
        attempts = 1 + self.retries
        for attempt in range(1, attempts + 1):
            outcome = self._attempt(account, model, body, attempt, attempts)
            if isinstance(outcome, str):
                # The call ran and billed: the file must be had now, it expires.
                raise_if_cancelled(request.cancel)
                return self._download(account, request, outcome)
            if isinstance(outcome, GeneratedImage):
                return replace(outcome, account=account.id)
            wait = retry_wait(outcome, attempt, self._rng)
            if attempt == attempts or wait is None:
                if outcome.billed and request.cost is not None:
                    request.cost.billed(None, account.id)
                raise outcome.error from outcome.cause
            self._sleep(wait)
            raise_if_cancelled(request.cancel)       # a retry is a second bill
        raise AssertionError("unreachable")

    def _attempt(self, account: Account, model: ModelSpec, body: dict, attempt: int,
                 attempts: int) -> GeneratedImage | Failure | str:
        """One call: the image given inline, the link to download, or the failure."""
        url = f"{self.api_base}/accounts/{account.id}/ai/run"
        started = time.monotonic()
        try:
            # UPSTREAM_TIMEOUT bounds the whole answer; no redirect is followed (the token).
            resp = call(self._session, "POST", url, json=body, timeout=self.timeout,
                        connect_timeout=CONNECT_TIMEOUT,
                        headers={"Authorization": f"Bearer {account.token}"})
        except UpstreamProblem as exc:
            return Failure(UpstreamError(f"Cloudflare's answer for {model.id} was refused: "
                                         f"{exc}."), cause=exc,
                           billed=isinstance(exc, BodyTooLarge))
        except requests.RequestException as exc:
            log.info("cloudflare-partner %s attempt %d/%d: %s after %d ms", model.id, attempt,
                     attempts, type(exc).__name__, (time.monotonic() - started) * 1000)
            return transport_failure(model, exc, attempts, timeout=self.timeout,
                                     connect_timeout=CONNECT_TIMEOUT)
        log.log(logging.INFO if resp.status_code >= 400 else logging.DEBUG,
                "cloudflare-partner %s attempt %d/%d: HTTP %d in %d ms", model.id, attempt,
                attempts, resp.status_code, (time.monotonic() - started) * 1000)
        if resp.status_code >= 400:
            return classify(model, partner_error(resp, self._redact), resp, attempts)
        return self._read(model, resp, attempts)

    def _read(self, model: ModelSpec, resp: Answer, attempts: int
              ) -> GeneratedImage | Failure | str:
        try:
            data = resp.json()
        except ValueError:
            return Failure(malformed(PROVIDER, model, "the body is not JSON"), billed=True)
        if isinstance(data, dict) and data.get("state") == "Failed":
            return classify(model, partner_error(resp, self._redact), None, attempts)
        try:
            result = read_result(data)
        except Malformed as exc:
            return Failure(malformed(PROVIDER, model, str(exc)), cause=exc, billed=True)
        if result.link is not None:
            return result.link
        assert result.data is not None
        return self._checked(model, result.data)

    def _download(self, account: Account, request: GenerationRequest,
                  link: str) -> GeneratedImage:
        model = request.model
        label = f"the file {model.id} made"
        try:
            data, kind = self.files.download(link, label)
        except UpstreamError:
            # Drawn and billed, but not had: booked, and the error says why.
            if request.cost is not None:
                request.cost.billed(None, account.id)
            raise
        image = self._checked(model, data)
        if isinstance(image, Failure):
            if request.cost is not None:
                request.cost.billed(None, account.id)
            raise image.error
        return GeneratedImage(image.data, content_type=kind, account=account.id)

    @staticmethod
    def _checked(model: ModelSpec, data: bytes) -> GeneratedImage | Failure:
        refused = oversized(PROVIDER, model, data)
        if refused is not None:
            return Failure(refused, billed=True)
        return GeneratedImage(data, content_type=fitting.sniff(data))
