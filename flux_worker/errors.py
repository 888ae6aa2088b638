"""The project's errors, each of which knows its OpenAI-shaped answer.

    APIError                      any error a client sees: status, type, code, message
    ├── InvalidRequest            400 invalid_request_error (bad JSON, fields, empty prompt)
    │   ├── PromptTooLong         400 prompt_too_long
    │   ├── ContentPolicy         400 content_policy_violation (Cloudflare 3030)
    │   │   └── ModerationRefused     this server's MODERATION refused the prompt
    │   └── ImageRefused          400 invalid_image (an input image cannot be used)
    │       └── ImageExpired      400 image_expired (an own link whose image is gone)
    ├── AuthenticationError       401 invalid_api_key
    ├── PermissionDenied          403 (the admin page's request without its CSRF token)
    │   └── ModelNotAllowed       403 model_not_allowed (a run-time key limited to some models)
    ├── NotFound                  404 (routes, image keys)
    │   └── ModelNotFound         404 model_not_found
    ├── MethodNotAllowed          405
    ├── PayloadTooLarge           413
    ├── RateLimited               429 rate_limit_exceeded (+ Retry-After)
    ├── QuotaExceeded             429 insufficient_quota (Cloudflare 4006 / 3036)
    ├── Overloaded                503 rate_limit_exceeded (capacity, + Retry-After)
    ├── ModerationUnavailable     503 moderation_unavailable (MODERATION_ON_ERROR=refuse)
    ├── UpstreamError             502 upstream_error (5xx, malformed answer, not an image)
    │   ├── UpstreamAuthFailed    502 upstream_auth_failed (the server's token was refused)
    │   ├── UpstreamRejected      502 upstream_error (the provider refused the request: a 4xx)
    │   └── UpstreamTimeout       504 upstream_error
    ├── StorageError              503 storage_error
    │   └── StorageFull           507 storage_error
    ├── Cancelled                 499 cancelled (the client left; never sent, only counted)
    └── ServerError               500 server_error (a bug: never for bad input)

Each error also says whether another model may draw instead (`fallback`, MODEL_FALLBACKS): the
reason a provider's failure gives ("capacity", "quota", "rate_limit", "upstream_error",
"timeout"), or None where another model would fail the same way or the fault is not the
provider's moment (a refused prompt, a bad request, this server's credentials).

This module does not import Flask: views and logic raise these, `web.errors` turns them into
responses at the boundary.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import threading


# What a caller without a key learns when storage fails: what failed, not where it lives (a
# Redis error names host and port, an S3 one its endpoint, a disk one may name a path).
_ADDRESSES = re.compile(
    r"[A-Za-z][A-Za-z0-9+.-]*+://\S++"                    # URLs
    r"|\[[0-9A-Fa-f:.]++\](?::[0-9]++)?+"                   # [IPv6]:port
    r"|\b[0-9]{1,3}(?:\.[0-9]{1,3}){3}(?::[0-9]++)?+"       # IPv4[:port]
    r"|\b[A-Za-z0-9-]++(?:\.[A-Za-z0-9-]++)*+:[0-9]{2,5}\b"  # host:port
    r"|(?<![\w.])/[\w.~-]++(?:/[\w.~-]*+)++")              # absolute paths


def error_body(message: str, type_: str, param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """OpenAI's error answer `{"error": {message, type, param, code}}`."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class APIError(Exception):
    """An error with an OpenAI-shaped answer."""

    status = 500
    type = "server_error"
    code: str | None = None
    # Why another model may draw when a provider answers this (README: Fallback); None: never.
    # The one rule of what triggers a fallback: generation/fallback.py reads only this.
    fallback: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 retry_after: int | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.retry_after = retry_after

    def body(self) -> dict:
        """The JSON body: {"error": {message, type, param, code}}."""
        return error_body(self.message, self.type, self.param, self.code)

    def headers(self) -> dict[str, str]:
        """Extra response headers (Retry-After where it applies)."""
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}


class InvalidRequest(APIError):
    """The request is malformed or misses something (400)."""

    status = 400
    type = "invalid_request_error"


class PromptTooLong(InvalidRequest):
    """The prompt is longer than the model accepts (400)."""

    code = "prompt_too_long"


class ContentPolicy(InvalidRequest):
    """The upstream safety filter refused the prompt or its output (400)."""

    code = "content_policy_violation"


class ModerationRefused(ContentPolicy):
    """This server's moderation (MODERATION) refused the prompt (400); `categories` say why."""

    def __init__(self, message: str, *, categories: tuple[str, ...] = (), **kwargs: Any):
        kwargs.setdefault("param", "prompt")
        super().__init__(message, **kwargs)
        self.categories = categories


class ImageRefused(InvalidRequest):
    """An input image cannot be used (400): unreadable, too large, expired, not allowed."""

    code = "invalid_image"

    @classmethod
    def too_large(cls, label: str, max_bytes: int) -> "ImageRefused":
        """One input image over MAX_INPUT_IMAGE_BYTES."""
        return cls(f"{label} is larger than {max_bytes} bytes (MAX_INPUT_IMAGE_BYTES). "
                   "Send a smaller image.", param="image")


class ImageExpired(ImageRefused):
    """A link to this service's own image that is no longer stored (400)."""

    code = "image_expired"


class AuthenticationError(APIError):
    """The client's API key is missing or wrong (401)."""

    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"

    def headers(self) -> dict[str, str]:
        """Name the scheme the client must use (RFC 9110 requires a challenge on a 401)."""
        # The bare scheme, on every edge: MCP clients (the SDKs, MCP Inspector) read this
        # challenge for RFC 9728's resource_metadata and for scope/error to start an OAuth
        # flow; this server has no OAuth to offer, so it names only what works: a Bearer key.
        # A realm would tell no client anything (there is one protection space).
        return {**super().headers(), "WWW-Authenticate": "Bearer"}


class PermissionDenied(APIError):
    """The caller is known but this request is refused: an admin page request whose CSRF
    token is missing or wrong (403)."""

    status = 403
    type = "invalid_request_error"
    code = "permission_denied"


class NotFound(APIError):
    """No such route or image (404)."""

    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    """No such model (404)."""

    code = "model_not_found"


class ModelNotAllowed(PermissionDenied):
    """The model exists, but the caller's run-time key may not use it (403)."""

    code = "model_not_allowed"


class MethodNotAllowed(APIError):
    """The route exists, the method does not (405)."""

    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"

    def __init__(self, message: str, *, allow: tuple[str, ...] = (), param: str | None = None,
                 code: str | None = None, retry_after: int | None = None):
        super().__init__(message, param=param, code=code, retry_after=retry_after)
        self.allow = allow

    def headers(self) -> dict[str, str]:
        """Name the methods the route takes (RFC 9110 requires Allow on a 405)."""
        extra = {"Allow": ", ".join(self.allow)} if self.allow else {}
        return {**super().headers(), **extra}


class PayloadTooLarge(APIError):
    """The body exceeds the size limit (413)."""

    status = 413
    type = "invalid_request_error"
    code = "payload_too_large"


class RateLimited(APIError):
    """Too many requests; try again after Retry-After (429)."""

    status = 429
    type = "rate_limit_exceeded"
    code = "rate_limit_exceeded"
    fallback = "rate_limit"


class QuotaExceeded(APIError):
    """The upstream daily allocation is used up (429)."""

    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"
    fallback = "quota"


class Overloaded(APIError):
    """Upstream or this server has no capacity right now (503)."""

    status = 503
    type = "rate_limit_exceeded"
    code = "rate_limit_exceeded"
    fallback = "capacity"


class ModerationUnavailable(APIError):
    """The moderation service could not judge and MODERATION_ON_ERROR=refuse (503)."""

    status = 503
    type = "server_error"
    code = "moderation_unavailable"


class UpstreamError(APIError):
    """The image provider failed or answered nonsense (502)."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"
    fallback: str | None = "upstream_error"


class UpstreamAuthFailed(UpstreamError):
    """The provider refused the server's own credentials; the client's key was fine (502)."""

    code = "upstream_auth_failed"
    fallback = None   # the operator must fix the token; it is not a passing fault


class UpstreamRejected(UpstreamError):
    """The provider refused the request as malformed (a 4xx other than quota or rate) (502).

    Another model would be sent the same request, so it is no reason to fall back.
    """

    fallback = None


class UpstreamTimeout(UpstreamError):
    """The provider did not answer in time (504)."""

    status = 504
    fallback = "timeout"


class StorageError(APIError):
    """Image storage is unreachable (503)."""

    status = 503
    type = "storage_error"
    code = "storage_error"


class StorageFull(StorageError):
    """Image storage has no room (507)."""

    status = 507


class Cancelled(APIError):
    """The client went away, so the generation stopped early; nobody sees this answer (499)."""

    # 499 is nginx's "client closed request": it only shows in metrics and logs.
    status = 499
    type = "cancelled"
    code = "cancelled"


def json_type_name(value: object) -> str:
    """Name a JSON value's type the way the client wrote it, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return "a string" if isinstance(value, str) else type(value).__name__


def raise_if_cancelled(cancel: "threading.Event | None") -> None:
    """Raise Cancelled when `cancel` is set: the client of this generation has gone."""
    if cancel is not None and cancel.is_set():
        raise Cancelled("The client closed the connection; the generation was abandoned.")


class ServerError(APIError):
    """An unexpected fault in this server (500)."""

    status = 500
    type = "server_error"
    code = "server_error"


def without_addresses(text: str) -> str:
    """Text with URLs, IP addresses, host:port pairs and absolute paths replaced."""
    return _ADDRESSES.sub("<address>", text)


def public_error(exc: APIError, *, behind_key: bool) -> APIError:
    """The error as this caller may see it: storage errors name no address unless `behind_key`.

    `behind_key` means the caller proved one of the configured API keys. Open routes (images,
    health), and every interface of a server without keys, answer anyone, and where the store
    lives is not anyone's business; the log keeps the whole message.
    """
    if behind_key or not isinstance(exc, StorageError):
        return exc
    hidden = type(exc)(without_addresses(exc.message), retry_after=exc.retry_after)
    hidden.status = exc.status
    return hidden
