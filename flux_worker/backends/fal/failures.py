"""fal's failures mapped to the project's error tree (reference §2, Errors).

    401, 403 (a key refused)            -> UpstreamAuthFailed: FAL_KEY is wrong or revoked
    402, 403 "Exhausted balance"/locked -> QuotaExceeded: the account's credit is used up
    422 detail[{loc, msg, type}]        -> InvalidRequest naming fal's field (a string detail
                                           is quoted); a content-policy type -> ContentPolicy
    400 bad_request                     -> InvalidRequest quoting fal
    429                                 -> RateLimited with fal's Retry-After (concurrency)
    504 request_timeout/startup_timeout -> UpstreamTimeout (the sync path first tries the queue)
    runner_* 5xx, internal_error, other -> UpstreamError
    the queue's `error`/`error_type`    -> mapped the same, from the status

fal sends the error type in the body (`error_type`) and in `X-Fal-Error-Type`; either is read.
The classes carry the meanings retries and MODEL_FALLBACKS rely on (errors.py `fallback`): a rate
limit, no credit, a 5xx or a timeout let another model draw; a refused prompt, a bad request or
a refused key do not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

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
    UpstreamTimeout,
)
from ...net.upstream import Answer, retry_after_seconds

MAX_FAL_MESSAGE = 300             # characters of fal's message quoted in our errors
TIMEOUT_TYPES = ("request_timeout", "startup_timeout")
# fal asks for no wait on its 429s; a client told to come back gets this much (seconds).
RATE_LIMITED_RETRY_AFTER = 10
CONTENT_POLICY_MESSAGE = ("fal's safety checker flagged this prompt or its picture. Rephrase "
                          "the prompt and try again.")
KEY_REFUSED_MESSAGE = ("fal refused this server's key (check FAL_KEY: `key_id:key_secret`); your "
                       "API key was accepted.")
NO_CREDIT_MESSAGE = ("The fal account has no credit left (its balance is used up). Add credit "
                     "in fal's billing dashboard, or pick a model of another provider.")
_NO_CREDIT_WORDS = ("balance", "locked", "credit")


@dataclass(frozen=True)
class FalError:
    """fal's error as read from an answer or a queue status."""

    status: int                     # HTTP status; 0 for a queue status that reports an error
    error_type: str | None          # `error_type` / X-Fal-Error-Type, e.g. "request_timeout"
    message: str                    # redacted and bounded
    field: str | None = None        # the first 422 detail's field (`image_size`)
    kind: str | None = None         # the first 422 detail's type (`value_error`, ...)
    retry_after: float | None = None

    @property
    def timed_out(self) -> bool:
        """Whether fal gave up waiting (the request may be sent through the queue instead)."""
        return self.error_type in TIMEOUT_TYPES or (self.status == 504 and not self.error_type)


def _short(text: str, redact: Callable[[str], str]) -> str:
    text = redact(" ".join(text.split()))
    return text if len(text) <= MAX_FAL_MESSAGE else text[:MAX_FAL_MESSAGE - 1] + "…"


def _detail(detail: Any, redact: Callable[[str], str]) -> tuple[str, str | None, str | None]:
    """fal's `detail`: a list of `{loc, msg, type}` (validation) or a string (the rest)."""
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        first = detail[0]
        loc = first.get("loc")
        parts = [str(p) for p in loc if p != "body"] if isinstance(loc, list) else []
        field = ".".join(parts) or None
        kind = first.get("type") if isinstance(first.get("type"), str) else None
        message = str(first.get("msg") or kind or "invalid value")
        more = f" (and {len(detail) - 1} more)" if len(detail) > 1 else ""
        return _short(f"{field}: {message}{more}" if field else message + more, redact), \
            field, kind
    if isinstance(detail, str):
        return _short(detail, redact), None, None
    return "", None, None


def read_error(status: int, data: Any, headers: Any,
               redact: Callable[[str], str]) -> FalError:
    """Read fal's error from a body (parsed JSON or None) and its headers."""
    body = data if isinstance(data, dict) else {}
    message, field, kind = _detail(body.get("detail"), redact)
    if not message and isinstance(body.get("error"), str):
        message = _short(body["error"], redact)
    error_type = body.get("error_type")
    if not isinstance(error_type, str):
        error_type = headers.get("X-Fal-Error-Type") if headers is not None else None
    retry_after = retry_after_seconds(headers.get("Retry-After")) if headers is not None else None
    return FalError(status, error_type or None, message, field, kind, retry_after)


def answer_error(resp: Answer, redact: Callable[[str], str]) -> FalError:
    """The error of an HTTP answer (a body that is no JSON is quoted as nothing)."""
    try:
        data = resp.json()
    except ValueError:
        data = None
    return read_error(resp.status_code, data, resp.headers, redact)


def _quote(err: FalError) -> str:
    parts = f"HTTP {err.status}" if err.status else "queue status"
    if err.error_type:
        parts += f", {err.error_type}"
    return parts + (f": {err.message}" if err.message else "")


def classify(model: ModelSpec, err: FalError) -> APIError:
    """The error a client sees for fal's failure on `model`."""
    status, quoted = err.status, _quote(err)
    text = f"{err.message} {err.kind or ''} {err.error_type or ''}".lower()
    if "content_policy" in text or "nsfw" in text:
        return ContentPolicy(CONTENT_POLICY_MESSAGE, param="prompt")
    if status == 402 or (status == 403 and any(w in text for w in _NO_CREDIT_WORDS)):
        return QuotaExceeded(NO_CREDIT_MESSAGE)
    if status in (401, 403):
        return UpstreamAuthFailed(KEY_REFUSED_MESSAGE)
    if status == 429:
        wait = err.retry_after if err.retry_after is not None else RATE_LIMITED_RETRY_AFTER
        return RateLimited(
            f"fal is at its concurrency limit for {model.id} ({quoted}). Try again shortly, or "
            "name another provider's model in MODEL_FALLBACKS.", retry_after=max(1, round(wait)))
    if status == 422 or status == 400 or err.error_type == "bad_request":
        where = f" (fal's field `{err.field}`)" if err.field else ""
        return InvalidRequest(
            f"fal refused the request for {model.id}{where}: {err.message or quoted}. Change "
            "that option (size, steps, guidance, the input image) or pick another model.")
    if err.timed_out:
        return UpstreamTimeout(
            f"fal did not finish {model.id} in time ({quoted}). Try again, perhaps with fewer "
            "steps or a smaller size.")
    if 400 <= status < 500:
        return UpstreamRejected(f"fal refused the request for {model.id} ({quoted}).")
    return UpstreamError(f"fal failed to draw with {model.id} ({quoted}). Try again later or "
                         "pick another model.")




