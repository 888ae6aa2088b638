"""Who may administer this service: the holder of ADMIN_API_KEY.

Every admin route (the keys you hand out, the admin page's data) calls `require_admin` once.
A request proves the admin key as a Bearer header (scripts, the admin API); the admin page's
signed-in browser proves it with its session cookie (web/admin_session.py), and for a method
that changes something, with the session's CSRF token too. A Bearer key that is not the admin
key is refused even beside a session cookie: a client key never reaches an admin route.
Without ADMIN_API_KEY the admin routes do not exist for anyone: a 404 that says how to turn
them on, so nothing about spend or keys is ever open.
"""

from __future__ import annotations

from flask import request

from ..auth import key_matches
from ..errors import AuthenticationError, NotFound
from . import admin_session
from .auth import presented_key, prove_key
from .context import services

# Methods that change nothing: a session needs no CSRF token for them.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def bearer_is_admin() -> bool:
    """Whether the request's Bearer key is ADMIN_API_KEY (read from the one parse of it)."""
    admin_key = services().config.admin_api_key
    token = presented_key()
    return bool(admin_key and token) and key_matches((admin_key,), token)


def require_admin() -> None:
    """Raise unless the request proves ADMIN_API_KEY (Bearer, or the page's session and its
    CSRF token); 404 when the service has none."""
    if not services().config.admin_api_key:
        raise NotFound("The admin API is off on this server. Set ADMIN_API_KEY to turn it on.")
    if not bearer_is_admin():
        session = admin_session.current() if presented_key() is None else None
        if session is None:
            raise AuthenticationError(
                "This route needs the admin key: send ADMIN_API_KEY as `Authorization: Bearer "
                "<key>`, or sign in on the admin page (/admin).")
        if request.method not in SAFE_METHODS:
            admin_session.require_csrf(session)
    prove_key()
