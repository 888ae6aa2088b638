"""Cloudflare's failures mapped to the project's error tree.

Failures are mapped by Cloudflare's error code *and* text, with the HTTP status as fallback
(reference §4):

    3030 safety filter                   -> ContentPolicy (400), never retried
    4006 / 3036 / "daily free allocation" -> QuotaExceeded (429), never retried, resets 00:00 UTC
    3040 capacity                        -> retried, then Overloaded (503)
    other 429 (per-minute limit)         -> retried, then RateLimited (429)
    10000, 401/403, 7003, gateway 2009    -> UpstreamAuthFailed (502), never retried
    5006 prompt length                   -> PromptTooLong (400)
    other 5006                           -> UpstreamRejected (502)
    5007 / 3042 unknown model            -> UpstreamError (502)
    other 4xx                            -> UpstreamRejected (502): no fallback
    5xx, 8008                            -> retried, then UpstreamError (502)
    read timeout                         -> UpstreamTimeout (504), never retried
    connection failure                   -> retried, then UpstreamError (502)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

import requests

from ...catalog.spec import ModelSpec
from ...cost.days import human_duration
from ...errors import (
    APIError,
    ContentPolicy,
    Overloaded,
    PromptTooLong,
    QuotaExceeded,
    RateLimited,
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
)
from ...net.upstream import Answer, retry_after_seconds

OVERLOADED_RETRY_AFTER = 10
RATE_LIMITED_RETRY_AFTER = 60
MAX_CF_MESSAGE = 300       # characters of Cloudflare's message quoted in our errors

CONTENT_POLICY_MESSAGE = ("The image model's safety filter rejected this prompt or its output. "
                          "Rephrase the prompt and try again.")
TOKEN_REJECTED_MESSAGE = ("Cloudflare rejected this server's API token (check CF_API_TOKEN / its "
                          "Workers AI permission); your API key was accepted.")

# Model errors read "AiError: 3030: Input prompt ..." or "AiError: 8008: Internal server error"
# with no separate code (reference §4), so a code is also looked for in the text.
_CODE_IN_TEXT = re.compile(r"\b(\d{4,5}):")


def seconds_until_utc_midnight(now: datetime | None = None) -> int:
    """Return the whole seconds until the next 00:00 UTC, when the free allocation resets."""
    now = now or datetime.now(timezone.utc)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, math.ceil((midnight - now).total_seconds()))


@dataclass
class Failure:
    """One failed attempt: the error to raise, and whether another attempt may help."""

    error: APIError
    retryable: bool = False
    retry_after: float | None = None       # what upstream asked for, in seconds
    cause: BaseException | None = None
    # Whether the call may have been billed: the model may have run to the end (a read timeout,
    # a broken body, an answer that is no usable image). Cloudflare's error answers are not.
    billed: bool = False


BACKOFF_BASE = 0.5          # seconds; doubled per attempt, full jitter
BACKOFF_CAP = 8.0
RETRY_AFTER_CAP = 30.0      # an upstream asking for a longer wait is not waited for


def retry_wait(failure: Failure, attempt: int, rng: Callable[[], float]) -> float | None:
    """The seconds to wait before attempt `attempt + 1`, or None when not to retry."""
    if not failure.retryable:
        return None
    if failure.retry_after is not None:
        # Waiting longer than the cap would hold a worker thread for nothing; the client
        # gets the upstream's Retry-After instead.
        return failure.retry_after if failure.retry_after <= RETRY_AFTER_CAP else None
    return rng() * min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1))


@dataclass(frozen=True)
class CloudflareError:
    """Cloudflare's error, read from the envelope `errors[0]` (code may be missing)."""

    status: int
    code: int | None
    message: str


def error_from(resp: Answer, redact: Callable[[str], str]) -> CloudflareError:
    """Read Cloudflare's error envelope; tolerate bodies that are not one (e.g. HTML).

    `redact` removes the tokens from the quoted message.
    """
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
    message = redact(" ".join(message.split()))
    if len(message) > MAX_CF_MESSAGE:
        message = message[:MAX_CF_MESSAGE - 1] + "…"
    return CloudflareError(resp.status_code, code, message)


def classify(model: ModelSpec, cf: CloudflareError, resp: Answer, attempts: int, *,
             gateway: bool) -> Failure:
    """Map Cloudflare's answer to a failure: codes and texts first, HTTP status last.

    `gateway`: the backend calls through CF_AI_GATEWAY, whose own token may be the one refused.
    """
    code, status, text = cf.code, cf.status, cf.message.lower()
    quoted = _quote(cf)
    retry_after = retry_after_seconds(resp.headers.get("Retry-After"))

    if code == 3030 or "has been flagged" in text or "nsfw" in text:
        # 3030 is generic (also undecodable input images) but a prompt rephrase is the fix.
        return Failure(ContentPolicy(CONTENT_POLICY_MESSAGE, param="prompt"))
    if code in (4006, 3036) or "daily free allocation" in text:
        # The free allocation resets at 00:00 UTC (reference §6); retrying only burns time.
        wait = seconds_until_utc_midnight()
        return Failure(QuotaExceeded(
            "The Cloudflare account's daily free Workers AI allocation is used up. It resets "
            f"at 00:00 UTC (in {human_duration(wait)}); try again then, or upgrade the account to "
            "Workers Paid.", retry_after=wait))
    if code == 3040 or "capacity temporarily exceeded" in text:
        after = math.ceil(retry_after) if retry_after is not None else OVERLOADED_RETRY_AFTER
        return Failure(Overloaded(
            f"Cloudflare Workers AI has no capacity for {model.short_name} right now "
            f"(code 3040). Try again in {after} seconds.", retry_after=after),
            retryable=True, retry_after=retry_after)
    if gateway and (code == 2009 or (status == 401 and code != 10000)):
        return Failure(UpstreamAuthFailed(
            "The Cloudflare AI Gateway rejected this server's gateway token (check "
            "CF_AI_GATEWAY_TOKEN); your API key was accepted."))
    if code == 10000 or (status in (401, 403) and code not in (5035, 5007, 3042)):
        return Failure(UpstreamAuthFailed(TOKEN_REJECTED_MESSAGE))
    if code == 7003:
        where = " and CF_AI_GATEWAY" if gateway else ""
        return Failure(UpstreamAuthFailed(
            f"Cloudflare could not route the request ({quoted}): check CF_ACCOUNT_ID{where}; "
            "your API key was accepted."))
    if code == 5006 and "length of '/prompt'" in text:
        return Failure(PromptTooLong(
            f"The prompt is longer than {model.short_name} accepts ({quoted}). Shorten the "
            "prompt and try again.", param="prompt"))
    if code == 5006:
        # A schema mismatch means this server built a body the model no longer takes.
        return Failure(UpstreamRejected(
            f"Cloudflare rejected the request this server built for {model.id} ({quoted}). "
            "This is a bug in the server, not in your request."))
    if code in (5007, 3042):
        return Failure(UpstreamError(
            f"The model {model.id} is not available to this Cloudflare account ({quoted})."))
    if status == 429:
        after = math.ceil(retry_after) if retry_after is not None else RATE_LIMITED_RETRY_AFTER
        return Failure(RateLimited(
            f"Cloudflare Workers AI is rate-limiting this server ({quoted}). Try again in "
            f"{after} seconds.", retry_after=after), retryable=True, retry_after=retry_after)
    if status >= 500 or code == 8008 or "internal server error" in text:
        return Failure(UpstreamError(
            f"Cloudflare Workers AI failed for {model.id} ({quoted}) after {attempts} "
            f"attempt{'s' if attempts != 1 else ''}. Try again later."),
            retryable=True, retry_after=retry_after)
    # Any other 4xx: the request itself was refused, so another model would be refused too.
    return Failure(UpstreamRejected(
        f"Cloudflare refused the request for {model.id} ({quoted})."))


def _quote(cf: CloudflareError) -> str:
    """Describe Cloudflare's error as `HTTP 400, code 5006: message`."""
    parts = f"HTTP {cf.status}"
    if cf.code is not None:
        parts += f", code {cf.code}"
    return parts + (f": {cf.message}" if cf.message else "")




def transport_failure(model: ModelSpec, exc: requests.RequestException, attempts: int, *,
                      timeout: float, connect_timeout: float) -> Failure:
    """Map a transport exception; the text names its class only (URLs carry the account)."""
    kind = type(exc).__name__
    if isinstance(exc, requests.ConnectTimeout):
        # The connection never opened, so nothing ran or was billed: safe to retry.
        return Failure(UpstreamTimeout(
            f"Could not connect to Cloudflare Workers AI within {connect_timeout:g} seconds "
            f"for {model.id} ({attempts} attempt{'s' if attempts != 1 else ''}). Try again "
            "later."), retryable=True, cause=exc)
    if isinstance(exc, requests.Timeout):
        # Not retried: the generation may still be running, and billed, upstream.
        return Failure(UpstreamTimeout(
            f"Cloudflare Workers AI did not answer within {timeout:g} seconds for "
            f"{model.id}. Try again, perhaps with fewer steps or a smaller size."), cause=exc,
            billed=True)
    if isinstance(exc, requests.ConnectionError):
        return Failure(UpstreamError(
            f"Could not reach Cloudflare Workers AI for {model.id} ({kind}, {attempts} "
            f"attempt{'s' if attempts != 1 else ''}). Try again later."),
            retryable=True, cause=exc)
    # Broken bodies and the like: the request may have run, so no retry.
    return Failure(UpstreamError(
        f"The connection to Cloudflare Workers AI failed for {model.id} ({kind})."), cause=exc,
        billed=True)


