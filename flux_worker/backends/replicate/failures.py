"""Replicate's failures mapped to the project's error tree (reference §3, Errors).

    401 / 403                      -> UpstreamAuthFailed: REPLICATE_API_TOKEN was refused
    402 Payment Required           -> QuotaExceeded: no credit left (another model may draw)
    404                            -> UpstreamRejected: Replicate knows no such model
    422 (input refused)            -> InvalidRequest quoting Replicate's `detail`
    429 (+ Retry-After)            -> RateLimited, Retry-After kept
    5xx                            -> UpstreamError
    status "failed" + error        -> ContentPolicy for a safety refusal (NSFW), else UpstreamError
    status "canceled" (not by us)  -> UpstreamError

Bodies are RFC 7807 (`{type, title, status, detail}`); `detail` is quoted, bounded and redacted.
"""

from __future__ import annotations

from typing import Callable

from ...catalog.spec import ModelSpec
from ...errors import (
    APIError,
    ContentPolicy,
    InvalidRequest,
    QuotaExceeded,
    RateLimited,
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamRejected,
)
from ...net.upstream import Answer, retry_after_seconds
from ..cloudflare.failures import CONTENT_POLICY_MESSAGE, MAX_CF_MESSAGE, RATE_LIMITED_RETRY_AFTER

# How Replicate's FLUX models word a refusal by their safety checker.
_POLICY_WORDS = ("nsfw", "safety", "flagged", "content policy", "sensitive")

TOKEN_REFUSED_MESSAGE = ("Replicate refused this server's token (check REPLICATE_API_TOKEN); "
                         "your API key was accepted.")
NO_CREDIT_MESSAGE = ("The Replicate account has no credit left (402 Payment Required). Add "
                     "credit in Replicate's billing settings, or pick another model.")


def problem_detail(resp: Answer, redact: Callable[[str], str]) -> str:
    """Replicate's RFC 7807 `detail` (else `title`, else the text), one line, bounded."""
    try:
        data = resp.json()
    except ValueError:
        data = None
    text = ""
    if isinstance(data, dict):
        text = str(data.get("detail") or data.get("title") or "")
    return bounded(redact(text or resp.text[:MAX_CF_MESSAGE]))


def bounded(text: str) -> str:
    """One line of at most MAX_CF_MESSAGE characters."""
    text = " ".join(text.split())
    return text if len(text) <= MAX_CF_MESSAGE else text[:MAX_CF_MESSAGE - 1] + "…"


def http_error(model: ModelSpec, resp: Answer, redact: Callable[[str], str]) -> APIError:
    """The error of a 4xx/5xx answer to a create, poll or cancel."""
    status = resp.status_code
    detail = problem_detail(resp, redact)
    quoted = f"HTTP {status}" + (f": {detail}" if detail else "")
    if status in (401, 403):
        return UpstreamAuthFailed(TOKEN_REFUSED_MESSAGE)
    if status == 402:
        return QuotaExceeded(NO_CREDIT_MESSAGE)
    if status == 429:
        wait = retry_after_seconds(resp.headers.get("Retry-After"))
        seconds = max(1, round(wait)) if wait is not None else RATE_LIMITED_RETRY_AFTER
        return RateLimited(f"Replicate is rate limiting this server ({quoted}). Try again in "
                           f"{seconds} seconds.", retry_after=seconds)
    if status == 422:
        return InvalidRequest(f"Replicate refused the request for {model.id}: {detail or quoted}."
                              " Change the size, steps or image and try again.")
    if status == 404:
        return UpstreamRejected(f"Replicate does not know the model {model.id} ({quoted}); "
                                "pick another model.")
    if status >= 500:
        return UpstreamError(f"Replicate failed for {model.id} ({quoted}). Try again later or "
                             "pick another model.")
    return UpstreamRejected(f"Replicate refused the request for {model.id} ({quoted}).")


def failed_error(model: ModelSpec, error: str, redact: Callable[[str], str]) -> APIError:
    """The error of a prediction that ended `failed` with Replicate's error string."""
    text = bounded(redact(error))
    if any(word in text.lower() for word in _POLICY_WORDS):
        return ContentPolicy(CONTENT_POLICY_MESSAGE, param="prompt")
    return UpstreamError(f"Replicate's prediction for {model.id} failed"
                         + (f": {text}" if text else "") + ". Try again or pick another model.")


def canceled_error(model: ModelSpec) -> UpstreamError:
    """A prediction canceled by someone else (the dashboard, another client of the token)."""
    return UpstreamError(f"Replicate's prediction for {model.id} was canceled upstream. "
                         "Try again.")


