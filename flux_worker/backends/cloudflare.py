"""The Cloudflare Workers AI image backend (REST, optionally through an AI Gateway).

One generation is one POST to `.../ai/run/{model}`. The body carries only the fields the model's
catalog entry accepts, because today's API rejects any other with error 5006 (the original Worker
sent width/height/num_steps to flux-1-schnell and broke). Answers come in two kinds, told apart by
their Content-Type: raw `image/*` bytes, or a JSON envelope with base64 in `result.image`.

Failures are mapped to the project's error tree by Cloudflare's error code *and* text, with the
HTTP status as fallback (reference §4):

    3030 safety filter                   -> ContentPolicy (400), never retried
    4006 / 3036 / "daily free allocation" -> QuotaExceeded (429), never retried, resets 00:00 UTC
    3040 capacity                        -> retried, then Overloaded (503)
    other 429 (per-minute limit)         -> retried, then RateLimited (429)
    10000, 401/403, 7003, gateway 2009    -> UpstreamAuthFailed (502), never retried
    5006 prompt length                   -> PromptTooLong (400); other 5006 -> UpstreamError (502)
    5007 / 3042 unknown model, other 4xx -> UpstreamError (502)
    5xx, 8008                            -> retried, then UpstreamError (502)
    read timeout                         -> UpstreamTimeout (504), never retried
    connection failure                   -> retried, then UpstreamError (502)
"""

from __future__ import annotations

import binascii
import logging
import math
import random
import re
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Mapping

import orjson
import pybase64
import requests

from ..catalog.spec import ModelSpec
from ..config import DEFAULT_CF_API_BASE
from ..cost.accounts import Account, AccountPool
from ..errors import (
    APIError,
    ContentPolicy,
    Overloaded,
    PromptTooLong,
    QuotaExceeded,
    RateLimited,
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamTimeout,
    raise_if_cancelled,
)
from ..generation import fitting
from ..inputs import intake
from ..net.upstream import Answer, UpstreamProblem, call, retry_after_seconds
from ..redaction import redact
from .base import GeneratedImage, GenerationRequest

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
BACKOFF_BASE = 0.5          # seconds; doubled per attempt, full jitter
BACKOFF_CAP = 8.0
RETRY_AFTER_CAP = 30.0      # an upstream asking for a longer wait is not waited for
OVERLOADED_RETRY_AFTER = 10
RATE_LIMITED_RETRY_AFTER = 60
_MAX_CF_MESSAGE = 300       # characters of Cloudflare's message quoted in our errors

CONTENT_POLICY_MESSAGE = ("The image model's safety filter rejected this prompt or its output. "
                          "Rephrase the prompt and try again.")
TOKEN_REJECTED_MESSAGE = ("Cloudflare rejected this server's API token (check CF_API_TOKEN / its "
                          "Workers AI permission); your API key was accepted.")

# Model errors read "AiError: 3030: Input prompt ..." or "AiError: 8008: Internal server error"
# with no separate code (reference §4), so a code is also looked for in the text.
_CODE_IN_TEXT = re.compile(r"\b(\d{4,5}):")
_DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?(;[^,]*)?;base64,", re.I)
_WHITESPACE = b" \t\r\n\f\v"


def _b64decode(encoded: bytes) -> bytes:
    """Decode strict base64, tolerating line breaks; raise binascii.Error for anything else.

    pybase64 (SIMD) takes ~0.01 ms for a 150 KB image where the standard library takes ~0.5 ms;
    the rare answer with line breaks is cleaned in one C pass (translate) and decoded again.
    """
    try:
        return pybase64.b64decode(encoded, validate=True)
    except binascii.Error:
        return pybase64.b64decode(encoded.translate(None, _WHITESPACE), validate=True)


def build_request(model: ModelSpec, request: GenerationRequest
                  ) -> tuple[dict[str, Any] | None, dict[str, tuple] | None]:
    """Build the body as (json, None) or (None, multipart files) from accepted fields only.

    Values arrive resolved and clamped to the model's limits (the pipeline's job); this only
    encodes them, in the fields the model's schema names.
    """
    fields: dict[str, Any] = {"prompt": request.prompt}
    if model.steps_field and request.steps is not None:
        fields[model.steps_field] = int(request.steps)
    if model.size is not None:
        # The pipeline crops/scales the output to the exact requested size, so rounding is fine.
        fields["width"], fields["height"] = model.upstream_size(request.width, request.height)
    if model.seed and request.seed is not None:
        fields["seed"] = int(request.seed)
    if model.guidance is not None and request.guidance is not None:
        fields["guidance"] = float(request.guidance)
    if model.negative_prompt and request.negative_prompt:
        fields["negative_prompt"] = request.negative_prompt
    if model.encoding == "multipart":
        # flux-2-* take only multipart/form-data, "even if you just have a prompt" (reference §2);
        # (None, value) makes a plain form field, and requests writes the boundary.
        form: dict[str, tuple] = {name: (None, str(value)) for name, value in fields.items()}
        form.update(_reference_files(model, request))
        return None, form
    fields.update(_source_fields(model, request, fields))
    return fields, None


def _reference_files(model: ModelSpec, request: GenerationRequest) -> dict[str, tuple]:
    """FLUX.2 reference images as files input_image_0..3, each scaled under 512x512."""
    if not request.images or not model.reference_images:
        return {}
    return {f"input_image_{index}": (f"input_image_{index}.jpg", intake.reference_copy(image),
                                     "image/jpeg")
            for index, image in enumerate(request.images[:model.reference_images])}


def _source_fields(model: ModelSpec, request: GenerationRequest,
                   fields: dict[str, Any]) -> dict[str, Any]:
    """SD 1.5 img2img/inpainting: the source as image_b64 and the mask as uint8 bytes.

    Both are cropped and scaled to the output size sent, so the mask always matches the image
    (Cloudflare wants them the same size) and the model needs no resizing of its own.
    """
    if not request.images or not model.source_image:
        return {}
    width = fields.get("width", request.width)
    height = fields.get("height", request.height)
    source = fitting.fit(request.images[0].data, width, height, "png").data
    extra: dict[str, Any] = {"image_b64": pybase64.b64encode(source).decode("ascii")}
    if model.mask and request.mask is not None:
        extra["mask"] = list(fitting.fit(request.mask, width, height, "png").data)
    if model.strength and request.strength is not None:
        extra["strength"] = float(max(0.0, min(1.0, request.strength)))
    return extra


def seconds_until_utc_midnight(now: datetime | None = None) -> int:
    """Return the whole seconds until the next 00:00 UTC, when the free allocation resets."""
    now = now or datetime.now(timezone.utc)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, math.ceil((midnight - now).total_seconds()))


def billed_neurons(headers: Mapping[str, str]) -> float | None:
    """The neurons Cloudflare reports in `cf-ai-neurons` (third parties saw it), else None."""
    raw = headers.get("cf-ai-neurons")
    try:
        value = float(raw) if raw is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) and value >= 0 else None


class _Malformed(Exception):
    """A 2xx answer that carries no usable image."""


@dataclass
class _Failure:
    """One failed attempt: the error to raise, and whether another attempt may help."""

    error: APIError
    retryable: bool = False
    retry_after: float | None = None       # what upstream asked for, in seconds
    cause: BaseException | None = None


@dataclass(frozen=True)
class _CloudflareError:
    """Cloudflare's error, read from the envelope `errors[0]` (code may be missing)."""

    status: int
    code: int | None
    message: str


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
        """Generate one image on the first usable account, moving on when one is out."""
        model = request.model
        json_body, files = build_request(model, request)
        direct = self._goes_direct(model, bool(request.images))
        # CF_ACCOUNTS: the first usable account draws; one used up or refused passes it on.
        estimate = model.estimate(request.width, request.height, request.steps) or 0.0
        last: APIError | None = None
        for index, account in enumerate(self.accounts.choose(estimate)):
            if index:
                raise_if_cancelled(request.cancel)   # the next account bills again
            try:
                image = self._generate_on(account, model, json_body, files, request.cancel,
                                          direct)
            except QuotaExceeded as exc:       # 4006/3036: this account's allocation is gone
                self.accounts.exhausted(account)
                last = exc
                continue
            except UpstreamAuthFailed as exc:  # its token or id was refused
                self.accounts.rejected(account, exc.message)
                last = exc
                continue
            return replace(image, account=account.id)
        raise self.accounts.out_of_accounts(last, estimate)

    def _generate_on(self, account: Account, model: ModelSpec, json_body: dict | None,
                     files: dict | None, cancel: threading.Event | None,
                     direct: bool = False) -> GeneratedImage:
        """Generate on one account, retrying only failures that a retry can fix."""
        attempts = 1 + self.retries
        for attempt in range(1, attempts + 1):
            outcome = self._attempt(model, json_body, files, attempt, attempts, account, direct)
            if isinstance(outcome, GeneratedImage):
                return outcome
            wait = self._wait_before_retry(outcome, attempt)
            if attempt == attempts or wait is None:
                raise outcome.error from outcome.cause
            self._sleep(wait)
            # A retry is a second bill: not for a client that has gone meanwhile.
            raise_if_cancelled(cancel)
        raise AssertionError("unreachable")  # the loop always returns or raises

    def _wait_before_retry(self, failure: _Failure, attempt: int) -> float | None:
        """Return the seconds to wait before the next attempt, or None when not to retry."""
        if not failure.retryable:
            return None
        if failure.retry_after is not None:
            # Waiting longer than the cap would hold a worker thread for nothing; the client
            # gets the upstream's Retry-After instead.
            return failure.retry_after if failure.retry_after <= RETRY_AFTER_CAP else None
        return self._rng() * min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1))

    # -- multipart calls past the gateway (reference §8) ------------------------------------

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
                 direct: bool = False) -> GeneratedImage | _Failure:
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
            # Too large or a redirect: refused whole, and a retry would meet the same.
            return _Failure(UpstreamError(
                f"Cloudflare's answer for {model.id} was refused: {exc}."), cause=exc)
        except requests.RequestException as exc:
            return self._transport_failure(model, exc, attempts)
        if resp.status_code < 400:
            try:
                image = self._read_image(resp)
                refused = _oversized(model, image.data)
                if refused is not None:
                    return _Failure(refused)
                return replace(image, neurons=billed_neurons(resp.headers))
            except _Malformed as exc:
                cf = self._error_from(resp)
                if cf.code is not None:
                    # A 2xx carrying an error envelope is still that error.
                    return self._classify(model, cf, resp, attempts)
                return _Failure(self._malformed(model, str(exc)), cause=exc)
        return self._classify(model, self._error_from(resp), resp, attempts)

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

    # -- answers ------------------------------------------------------------------------------

    @staticmethod
    def _content_type(resp: Answer) -> str:
        return resp.headers.get("Content-Type", "").split(";")[0].strip().lower()

    def _read_image(self, resp: Answer) -> GeneratedImage:
        """Return the image from a 2xx answer; raise _Malformed when there is none."""
        ctype = self._content_type(resp)
        body = resp.content
        if ctype.startswith("image/"):
            # phoenix answers image/jpeg, the SD family image/png (reference §3); the pipeline
            # sniffs the bytes, so they are passed on as they are.
            if not body:
                raise _Malformed("empty image body")
            return GeneratedImage(body, content_type=ctype)
        looks_json = body[:64].lstrip()[:1] in (b"{", b"[")
        if ctype == "application/json" or ctype.endswith("+json") or looks_json:
            return self._read_envelope(resp)
        if ctype in ("", "application/octet-stream") and body:
            # An undeclared binary answer may still be an image; the pipeline sniffs it and
            # turns anything else into a 502.
            return GeneratedImage(body, content_type=None)
        raise _Malformed(f"unexpected content type {ctype or 'none'!r}"
                         + ("" if body else " with an empty body"))

    def _read_envelope(self, resp: Answer) -> GeneratedImage:
        """Decode `result.image` from a JSON envelope; raise _Malformed on anything else."""
        try:
            # orjson parses the ~200 KB envelope in about 0.1 ms, less than half of json's time.
            data = orjson.loads(resp.content)
        except orjson.JSONDecodeError as exc:
            raise _Malformed("the body is not valid JSON") from exc
        if not isinstance(data, dict):
            raise _Malformed("the JSON body is not an object")
        if data.get("success") is not True:
            raise _Malformed("the envelope does not say success")
        result = data.get("result")
        image = result.get("image") if isinstance(result, dict) else None
        if not isinstance(image, str) or not image.strip():
            raise _Malformed("no result.image in the envelope")
        content_type = None
        match = _DATA_URL.match(image[:256].strip())
        if match:
            content_type = (match.group(1) or "").lower() or None
            image = image.strip()[match.end():]
        try:
            raw = _b64decode(image.encode("ascii"))
        except (binascii.Error, ValueError) as exc:
            raise _Malformed("result.image is not valid base64") from exc
        if not raw:
            raise _Malformed("result.image is empty")
        return GeneratedImage(raw, content_type=content_type)

    def _error_from(self, resp: Answer) -> _CloudflareError:
        """Read Cloudflare's error envelope; tolerate bodies that are not one (e.g. HTML)."""
        code: int | None = None
        message = ""
        try:
            data = resp.json()
        except ValueError:
            data = None
        if isinstance(data, dict):
            errors = data.get("errors")
            first = errors[0] if isinstance(errors, list) and errors else None
            if isinstance(first, dict):
                message = str(first.get("message") or "")
                raw_code = first.get("code")
                try:
                    code = int(raw_code) if raw_code is not None else None
                except (TypeError, ValueError):
                    code = None
            elif isinstance(data.get("error"), str):
                message = data["error"]
        if code is None and message:
            found = _CODE_IN_TEXT.search(message)
            code = int(found.group(1)) if found else None
        message = self._redact(" ".join(message.split()))
        if len(message) > _MAX_CF_MESSAGE:
            message = message[:_MAX_CF_MESSAGE - 1] + "…"
        return _CloudflareError(resp.status_code, code, message)

    def _is_7003(self, resp: Answer) -> bool:
        return resp.status_code == 404 and self._error_from(resp).code == 7003

    # -- error mapping ------------------------------------------------------------------------

    def _classify(self, model: ModelSpec, cf: _CloudflareError, resp: Answer,
                  attempts: int) -> _Failure:
        """Map Cloudflare's answer to a failure: codes and texts first, HTTP status last."""
        code, status, text = cf.code, cf.status, cf.message.lower()
        quoted = self._quote(cf)
        retry_after = retry_after_seconds(resp.headers.get("Retry-After"))

        if code == 3030 or "has been flagged" in text or "nsfw" in text:
            # 3030 is generic (also undecodable input images) but a prompt rephrase is the fix.
            return _Failure(ContentPolicy(CONTENT_POLICY_MESSAGE, param="prompt"))
        if code in (4006, 3036) or "daily free allocation" in text:
            # The free allocation resets at 00:00 UTC (reference §6); retrying only burns time.
            wait = seconds_until_utc_midnight()
            return _Failure(QuotaExceeded(
                "The Cloudflare account's daily free Workers AI allocation is used up. It resets "
                f"at 00:00 UTC (in {_human(wait)}); try again then, or upgrade the account to "
                "Workers Paid.", retry_after=wait))
        if code == 3040 or "capacity temporarily exceeded" in text:
            after = math.ceil(retry_after) if retry_after is not None else OVERLOADED_RETRY_AFTER
            return _Failure(Overloaded(
                f"Cloudflare Workers AI has no capacity for {model.short_name} right now "
                f"(code 3040). Try again in {after} seconds.", retry_after=after),
                retryable=True, retry_after=retry_after)
        if self.gateway_url and (code == 2009 or (status == 401 and code != 10000)):
            return _Failure(UpstreamAuthFailed(
                "The Cloudflare AI Gateway rejected this server's gateway token (check "
                "CF_AI_GATEWAY_TOKEN); your API key was accepted."))
        if code == 10000 or (status in (401, 403) and code not in (5035, 5007, 3042)):
            return _Failure(UpstreamAuthFailed(TOKEN_REJECTED_MESSAGE))
        if code == 7003:
            where = " and CF_AI_GATEWAY" if self.gateway_url else ""
            return _Failure(UpstreamAuthFailed(
                f"Cloudflare could not route the request ({quoted}): check CF_ACCOUNT_ID{where}; "
                "your API key was accepted."))
        if code == 5006 and "length of '/prompt'" in text:
            return _Failure(PromptTooLong(
                f"The prompt is longer than {model.short_name} accepts ({quoted}). Shorten the "
                "prompt and try again.", param="prompt"))
        if code == 5006:
            # A schema mismatch means this server built a body the model no longer takes.
            return _Failure(UpstreamError(
                f"Cloudflare rejected the request this server built for {model.id} ({quoted}). "
                "This is a bug in the server, not in your request."))
        if code in (5007, 3042):
            return _Failure(UpstreamError(
                f"The model {model.id} is not available to this Cloudflare account ({quoted})."))
        if status == 429:
            after = math.ceil(retry_after) if retry_after is not None else RATE_LIMITED_RETRY_AFTER
            return _Failure(RateLimited(
                f"Cloudflare Workers AI is rate-limiting this server ({quoted}). Try again in "
                f"{after} seconds.", retry_after=after), retryable=True, retry_after=retry_after)
        if status >= 500 or code == 8008 or "internal server error" in text:
            return _Failure(UpstreamError(
                f"Cloudflare Workers AI failed for {model.id} ({quoted}) after {attempts} "
                f"attempt{'s' if attempts != 1 else ''}. Try again later."),
                retryable=True, retry_after=retry_after)
        return _Failure(UpstreamError(
            f"Cloudflare refused the request for {model.id} ({quoted})."))

    @staticmethod
    def _quote(cf: _CloudflareError) -> str:
        """Describe Cloudflare's error as `HTTP 400, code 5006: message`."""
        parts = f"HTTP {cf.status}"
        if cf.code is not None:
            parts += f", code {cf.code}"
        return parts + (f": {cf.message}" if cf.message else "")

    def _malformed(self, model: ModelSpec, detail: str) -> UpstreamError:
        return UpstreamError(f"Cloudflare returned a malformed answer for {model.id}: {detail}.")

    def _transport_failure(self, model: ModelSpec, exc: requests.RequestException,
                           attempts: int) -> _Failure:
        """Map a transport exception; the text names its class only (URLs carry the account)."""
        kind = type(exc).__name__
        if isinstance(exc, requests.ConnectTimeout):
            # The connection never opened, so nothing ran or was billed: safe to retry.
            return _Failure(UpstreamTimeout(
                f"Could not connect to Cloudflare Workers AI within {CONNECT_TIMEOUT:g} seconds "
                f"for {model.id} ({attempts} attempt{'s' if attempts != 1 else ''}). Try again "
                "later."), retryable=True, cause=exc)
        if isinstance(exc, requests.Timeout):
            # Not retried: the generation may still be running, and billed, upstream.
            return _Failure(UpstreamTimeout(
                f"Cloudflare Workers AI did not answer within {self.timeout:g} seconds for "
                f"{model.id}. Try again, perhaps with fewer steps or a smaller size."), cause=exc)
        if isinstance(exc, requests.ConnectionError):
            return _Failure(UpstreamError(
                f"Could not reach Cloudflare Workers AI for {model.id} ({kind}, {attempts} "
                f"attempt{'s' if attempts != 1 else ''}). Try again later."),
                retryable=True, cause=exc)
        # Broken bodies and the like: the request may have run, so no retry.
        return _Failure(UpstreamError(
            f"The connection to Cloudflare Workers AI failed for {model.id} ({kind})."), cause=exc)


def _oversized(model: ModelSpec, data: bytes) -> UpstreamError | None:
    """The error for an image larger than any model makes (decoding it could take gigabytes)."""
    size = fitting.oversized(data)
    if size is None:
        return None
    return UpstreamError(
        f"Cloudflare returned a {size[0]}x{size[1]} image for {model.id}; no image model makes "
        f"more than {fitting.MAX_GENERATED_SIDE} pixels a side, so it was refused undecoded.")


def _human(seconds: int) -> str:
    """Format a duration as `5 h 12 min` or `7 min`."""
    hours, minutes = divmod(max(1, math.ceil(seconds / 60)), 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"
