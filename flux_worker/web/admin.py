"""The admin page at /admin: sign in with ADMIN_API_KEY, then see and manage the service.

The page is plain HTML, CSS and a small script (static/admin.*), under the playground's strict
CSP (no inline code, only this service's files) with forms that may post to the service
itself. It carries no data: its script reads the admin JSON routes (/v1/admin/...) with the
session cookie and sends the session's CSRF token on every change (web/admin_session.py).
Without ADMIN_API_KEY the page is off: a 404 that says how to turn it on.
"""

from __future__ import annotations

from flask import Blueprint, make_response, redirect, render_template, request
from werkzeug.wrappers import Response

from ..auth import key_matches
from ..errors import APIError, NotFound, PermissionDenied, RateLimited
from . import admin_session
from .context import services
from .pages import page_csp

bp = Blueprint("admin", __name__)

# Every admin answer: never cached (it shows spend and, once, a new key's secret), never in a
# frame, and no Referer to image hosts the page's thumbnails load from.
PRIVATE_HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                   "Referrer-Policy": "no-referrer"}


def private(response: Response) -> Response:
    """Add PRIVATE_HEADERS to an admin answer."""
    response.headers.update(PRIVATE_HEADERS)
    return response


@bp.get("/admin")
def page() -> Response:
    """The admin page: off, the sign-in form, or the signed-in page."""
    config = services().config
    if not config.admin_api_key:
        return _refused("off", _off())
    session = admin_session.current()
    if session is None:
        return _page("sign-in")
    return _page("signed-in", csrf=admin_session.csrf_token(config.admin_api_key, session))


@bp.post("/admin/login")
def login() -> Response:
    """Sign in with ADMIN_API_KEY (the form's `key`); then back to the page with a session."""
    admin_key = services().config.admin_api_key
    if not admin_key:
        return _refused("off", _off())
    try:
        admin_session.check_login_allowed()
    except RateLimited as exc:
        return _refused("sign-in", exc)
    if not key_matches((admin_key,), request.form.get("key", "").strip()):
        admin_session.login_failed()
        return _refused("sign-in", PermissionDenied("That is not the admin key (ADMIN_API_KEY).",
                                                    param="key"))
    admin_session.login_succeeded()
    answer = redirect(request.script_root + "/admin", 303)
    admin_session.start(answer)
    return private(answer)


@bp.post("/admin/logout")
def logout() -> Response:
    """Sign out (with the session's CSRF token); then back to the sign-in form."""
    session = admin_session.current()
    if session is not None:
        admin_session.require_csrf(session)
    answer = redirect(request.script_root + "/admin", 303)
    admin_session.end(answer, session)
    return private(answer)


def _off() -> NotFound:
    return NotFound("The admin page is off on this server. Set ADMIN_API_KEY to turn it on.")


def _refused(state: str, error: APIError) -> Response:
    """The page with `error` for a browser; the error's JSON for a client that asks for JSON
    (as `/` answers), so every refusal also has the service's one error shape."""
    if request.accept_mimetypes.best == "application/json":
        raise error
    answer = _page(state, error.status, error=error.message)
    answer.headers.update(error.headers())
    return answer


def _page(state: str, status: int = 200, *, csrf: str | None = None,
          error: str | None = None) -> Response:
    svc = services()
    root = request.script_root
    data = {"csrf": csrf, "api": root + "/v1/admin", "root": root}
    answer = make_response(render_template("admin.html", state=state, error=error, csrf=csrf,
                                           data=data), status)
    answer.headers["Content-Security-Policy"] = page_csp(
        svc.config.public_base_url, svc.links.foreign_origin(), form_action="'self'")
    return private(answer)
