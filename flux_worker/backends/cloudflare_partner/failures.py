"""The partner route's failures mapped to the project's error tree (reference §1, Errors).

    401 code 2009                    -> UpstreamAuthFailed: a provider refused the credentials
    403 code 2049                    -> UpstreamAuthFailed: the token lacks `AI Gateway - Run`
    402 code 2021                    -> QuotaExceeded: no Unified Billing credit left
    401 / 403 other, 10000, 7003     -> UpstreamAuthFailed (token, account), as for Workers AI
    content refusal (moderation)     -> ContentPolicy, never retried
    429 (rate or spend limit)        -> RateLimited with the upstream's Retry-After
    5xx (503 also for refused keys)  -> retried, then UpstreamError
    state "Failed"                   -> UpstreamError naming the provider's code and message
    other 400                        -> InvalidRequest quoting Cloudflare (the prompt, or our bug)

The classes are the ones the Workers AI backend uses for the same meaning (capacity, quota,
rate, 5xx, timeout, auth, content policy, bad request), so what retries or falls back on them
treats both providers alike.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from ...catalog.spec import ModelSpec
from ...errors import (
    ContentPolicy,
    InvalidRequest,
    QuotaExceeded,
    RateLimited,
    UpstreamAuthFailed,
    UpstreamError,
)
from ...net.upstream import Answer, retry_after_seconds
from ..cloudflare.failures import (
    CONTENT_POLICY_MESSAGE,
    MAX_CF_MESSAGE,
    RATE_LIMITED_RETRY_AFTER,
    TOKEN_REJECTED_MESSAGE,
    CloudflareError,
    Failure,
    error_from,
)

# What OpenAI's and Google's refusals read like, passed through by Cloudflare.
_POLICY_WORDS = ("moderation_blocked", "content_policy", "safety", "content policy",
                 "has been flagged", "nsfw")

RUN_PERMISSION_MESSAGE = (
    "Cloudflare refused the partner model call: the API token lacks the `AI Gateway - Run` "
    "permission (code 2049). Add that permission to the token in the Cloudflare dashboard; "
    "your API key was accepted.")
NO_CREDIT_MESSAGE = (
    "The Cloudflare account has no Unified Billing credit left for partner models (code 2021). "
    "Add credit in the AI Gateway dashboard, or turn CF_PARTNER_MODELS off.")


def partner_error(resp: Answer, redact: Callable[[str], str]) -> CloudflareError:
    """Read an error in either shape: `{state: "Failed", error: {code, message}}` or the
    classic `{errors: [{code, message}]}` envelope."""
    try:
        data = resp.json()
    except ValueError:
        data = None
    failed = data.get("error") if isinstance(data, dict) else None
    if isinstance(failed, dict):
        return _failed_error(resp.status_code, failed, redact)
    return error_from(resp, redact)


def _failed_error(status: int, error: dict[str, Any],
                  redact: Callable[[str], str]) -> CloudflareError:
    code = error.get("code")
    message = " ".join(str(error.get("message") or "").split())
    # A provider's code is a word (`provider_unavailable`): kept in the message, not as a number.
    numeric = code if isinstance(code, int) and not isinstance(code, bool) else None
    if code is not None and numeric is None:
        message = f"{code}: {message}" if message else str(code)
    message = redact(message)
    if len(message) > MAX_CF_MESSAGE:
        message = message[:MAX_CF_MESSAGE - 1] + "…"
    return CloudflareError(status, numeric, message)


def _quote(cf: CloudflareError) -> str:
    parts = f"HTTP {cf.status}" if cf.status else "state Failed"
    if cf.code is not None:
        parts += f", code {cf.code}"
    return parts + (f": {cf.message}" if cf.message else "")


def _refused_content(cf: CloudflareError) -> bool:
    text = cf.message.lower()
    return any(word in text for word in _POLICY_WORDS)


def classify(model: ModelSpec, cf: CloudflareError, resp: Answer | None,
             attempts: int) -> Failure:
    """Map a failed answer (HTTP error, or `resp=None` for a 200 with state "Failed")."""
    code, status = cf.code, cf.status
    quoted = _quote(cf)
    if _refused_content(cf):
        return Failure(ContentPolicy(CONTENT_POLICY_MESSAGE, param="prompt"))
    if resp is None:
        # The provider ran and failed; a retry elsewhere may work, the same call may not.
        return Failure(UpstreamError(
            f"Cloudflare's partner model {model.id} failed ({quoted}). Try again later or pick "
            "another model."))
    retry_after = retry_after_seconds(resp.headers.get("Retry-After"))
    if code == 2049:
        return Failure(UpstreamAuthFailed(RUN_PERMISSION_MESSAGE))
    if code == 2021 or status == 402:
        return Failure(QuotaExceeded(NO_CREDIT_MESSAGE))
    if code == 2009:
        return Failure(UpstreamAuthFailed(
            f"The provider behind Cloudflare refused the credentials for {model.id} (code "
            "2009): check the provider key stored in the AI Gateway (BYOK) or remove it to pay "
            "from Unified Billing credit, and the gateway's authentication; your API key was "
            "accepted."))
    if code == 10000 or status in (401, 403):
        return Failure(UpstreamAuthFailed(TOKEN_REJECTED_MESSAGE))
    if code == 7003:
        return Failure(UpstreamAuthFailed(
            f"Cloudflare could not route the request ({quoted}): check CF_ACCOUNT_ID / "
            "CF_ACCOUNTS; your API key was accepted."))
    if status == 429:
        after = math.ceil(retry_after) if retry_after is not None else RATE_LIMITED_RETRY_AFTER
        return Failure(RateLimited(
            f"Cloudflare is rate-limiting partner model calls, or the gateway's spend limit is "
            f"reached ({quoted}). Try again in {after} seconds.", retry_after=after),
            retryable=True, retry_after=retry_after)
    if status >= 500:
        return Failure(UpstreamError(
            f"Cloudflare's partner model {model.id} failed ({quoted}) after {attempts} "
            f"attempt{'s' if attempts != 1 else ''}. Try again later."),
            retryable=True, retry_after=retry_after)
    if status == 400:
        return Failure(InvalidRequest(
            f"Cloudflare refused the request for {model.id} ({quoted}). If the prompt is "
            "unusual (very long, other languages' quirks), change it; otherwise this server "
            "built a body the model no longer takes: please report it."))
    return Failure(UpstreamError(f"Cloudflare refused the request for {model.id} ({quoted})."))
