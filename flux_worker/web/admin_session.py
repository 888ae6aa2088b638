"""The admin page's session: a signed cookie any instance can check, and its CSRF token.

A browser signs in once with ADMIN_API_KEY (web/admin.py) and then carries a cookie instead of
the key. The cookie is `<expires>.<nonce>.<signature>`, signed with HMAC-SHA256 under a key
derived from ADMIN_API_KEY: every gunicorn worker and every host behind one load balancer checks
it without a shared secret of its own or a new setting, and changing ADMIN_API_KEY ends every
session at once. Sign-out marks the session's nonce as ended in the shared marks
(COUNTERS_URL), so a copied cookie is refused on every instance too. A server-side session
store was rejected: it would need shared storage the service does not otherwise require.

Every state-changing request of a session carries a CSRF token (the `X-CSRF-Token` header from
the page's script, or a hidden form field): an HMAC of the session's nonce, so it is bound to
that session and checked in constant time. The cookie is also `SameSite=Strict`.

Failed sign-ins are counted per client address in the marks: past `LOGIN_FAILURES` within
`LOGIN_WINDOW`, that address may not try again until the window has passed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import math
import secrets
import time
from dataclasses import dataclass

from flask import g, request
from werkzeug.wrappers import Response

from ..errors import PermissionDenied, RateLimited
from .context import services

log = logging.getLogger(__name__)

COOKIE = "flux_admin"
LIFETIME = 12 * 3600              # seconds a sign-in lasts
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
LOGIN_FAILURES = 10               # failed sign-ins one address may make per window
LOGIN_WINDOW = 15 * 60            # seconds; the count restarts after a quiet window
_PURPOSE = b"flux-worker admin page session v1"


@dataclass(frozen=True)
class Session:
    """A signed-in admin browser: its nonce (what the CSRF token and sign-out name) and expiry."""

    nonce: str
    expires: int


def signing_key(admin_key: str) -> bytes:
    """The key sessions are signed with: derived from ADMIN_API_KEY, never the key itself."""
    return hmac.new(admin_key.encode("utf-8", "surrogatepass"), _PURPOSE, hashlib.sha256).digest()


def _mac(key: bytes, text: str) -> str:
    digest = hmac.new(key, text.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def issue(admin_key: str, now: float) -> tuple[str, Session]:
    """A new session's cookie value and the session it names."""
    session = Session(secrets.token_urlsafe(18), int(now) + LIFETIME)
    payload = f"{session.expires}.{session.nonce}"
    return f"{payload}.{_mac(signing_key(admin_key), payload)}", session


def verify(admin_key: str, value: str | None, now: float) -> Session | None:
    """The session a cookie value proves under `admin_key`, or None (forged, old key, expired)."""
    if not value or value.count(".") != 2:
        return None
    expires, nonce, signature = value.split(".")
    if not hmac.compare_digest(signature.encode(), _mac(signing_key(admin_key),
                                                        f"{expires}.{nonce}").encode()):
        return None
    if not expires.isdigit() or int(expires) <= now:
        return None
    return Session(nonce, int(expires))


def csrf_token(admin_key: str, session: Session) -> str:
    """The CSRF token of `session`: bound to it, and useless without its cookie."""
    return _mac(signing_key(admin_key), "csrf." + session.nonce)


# --- in a request --------------------------------------------------------------------------

def current() -> Session | None:
    """The request's admin session, checked once per request; None without a valid one."""
    if "admin_session" not in g:
        admin_key = services().config.admin_api_key
        session = verify(admin_key, request.cookies.get(COOKIE), time.time()) \
            if admin_key else None
        if session is not None and _ended(session):
            session = None
        g.admin_session = session
    return g.admin_session


def require_csrf(session: Session) -> None:
    """Raise PermissionDenied unless the request carries `session`'s CSRF token."""
    sent = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD) or ""
    expected = csrf_token(services().config.admin_api_key, session)
    if not hmac.compare_digest(sent.encode("utf-8", "surrogatepass"), expected.encode()):
        raise PermissionDenied(
            "This admin page request lacks its CSRF token (or sent a wrong one): reload the "
            "page and try again.", param=CSRF_HEADER)


def start(response: Response) -> Session:
    """Sign the browser in: set a new session's cookie on `response`."""
    value, session = issue(services().config.admin_api_key, time.time())
    response.set_cookie(COOKIE, value, max_age=LIFETIME, path="/", secure=request.is_secure,
                        httponly=True, samesite="Strict")
    return session


def end(response: Response, session: Session | None) -> None:
    """Sign the browser out: end `session` on every instance and drop its cookie."""
    if session is not None:
        remaining = max(1.0, session.expires - time.time())
        try:
            services().marks.put(_ended_mark(session), 1, remaining)
        except Exception as exc:  # noqa: BLE001 - any store failure (Redis, disk)
            log.warning("admin sign-out not shared (counters unreachable: %s); the cookie is "
                        "dropped and expires by itself", type(exc).__name__)
    response.delete_cookie(COOKIE, path="/", secure=request.is_secure, httponly=True,
                           samesite="Strict")


def check_login_allowed() -> None:
    """Raise RateLimited while this address has failed to sign in too often."""
    failures = _ask(lambda: services().marks.get(_failures_mark()))
    if failures is not None and failures >= LOGIN_FAILURES:
        raise RateLimited(
            f"Too many failed sign-ins from this address; try again in "
            f"{math.ceil(LOGIN_WINDOW / 60)} minutes.", retry_after=LOGIN_WINDOW)


def login_failed() -> None:
    """Count one failed sign-in of this address (logged by its short hash, never the key)."""
    count = _ask(lambda: services().marks.incr(_failures_mark(), LOGIN_WINDOW))
    log.warning("admin page: failed sign-in from %s (%s in a row)", _address_hash(), count)


def login_succeeded() -> None:
    """Forget this address's failed sign-ins."""
    _ask(lambda: services().marks.delete(_failures_mark()))


def _ended(session: Session) -> bool:
    return bool(_ask(lambda: services().marks.get(_ended_mark(session))))


def _ended_mark(session: Session) -> str:
    return "admin-session-ended:" + session.nonce


def _failures_mark() -> str:
    return "admin-login-failures:" + _address_hash()


def _address_hash() -> str:
    return hashlib.sha256((request.remote_addr or "").encode()).hexdigest()[:12]


def _ask(call):
    """One marks call; unreachable counters answer None (a sign-in is still checked by key)."""
    try:
        return call()
    except Exception as exc:  # noqa: BLE001 - any store failure (Redis, disk)
        log.warning("admin page: counters unreachable (%s)", type(exc).__name__)
        return None
