"""The welcome page and the health probes."""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

from flask import Blueprint, jsonify, make_response, render_template, request

from ..cost.accounts import OK
from ..errors import StorageError, StorageFull
from .auth import key_proved, prove_presented_key
from .base_url import public_base_url
from .context import services
from .errors import public

log = logging.getLogger(__name__)

bp = Blueprint("pages", __name__)


def status() -> dict:
    """What the service runs with: backend, storage, models, auth, lifetime.

    An open route: spend, budgets and the Cloudflare accounts are not here but on GET /v1/usage
    (a client key its own line, ADMIN_API_KEY everything).
    """
    svc = services()
    cfg = svc.config
    return {
        "service": "flux-worker",
        "status": "ok",
        "backend": svc.backend.name,
        "demo": svc.backend.name == "demo",
        "storage": svc.store.kind,
        "image_expiration": cfg.image_expiration,
        "auth_required": svc.keyring.closed(),
        "translation": svc.translator.model if svc.translator else None,
        "default_model": svc.models.default.id,
        "models": [m.id for m in svc.models.models],
        "base_url": public_base_url() + "/v1",
    }


# The playground's aspect-ratio picker: the ratios whose sizes the README promises.
RATIOS = ("1:1", "1:2", "3:2", "3:4", "16:9", "9:16")


@bp.get("/")
def index():
    """Welcome page: the service is up, with what it runs and how to connect a client."""
    info = status()
    if request.accept_mimetypes.best == "application/json":
        return jsonify(info)
    svc = services()
    # What the playground script needs, rendered into a JSON block (CSP forbids inline code).
    page = {"auth_required": info["auth_required"], "image_expiration": info["image_expiration"],
            "default_model": info["default_model"],
            "chat_url": request.script_root + "/v1/chat/completions",
            # The key's images kept by the server: the gallery follows the key across browsers.
            "history_url": request.script_root + "/v1/images/history",
            # Each model's steps range ({field, min, max}, or null for fixed steps), so the
            # steps input follows the chosen model.
            "steps": {m.id: m.capabilities()["steps"] for m in svc.models.models}}
    response = make_response(render_template("index.html", info=info, models=svc.models.models,
                                             page=page, ratios=RATIOS))
    response.headers["Content-Security-Policy"] = page_csp(svc.config.public_base_url,
                                                           svc.links.foreign_origin())
    return response


def page_csp(public_base: str, image_origin: str | None = None, *,
             form_action: str = "'none'") -> str:
    """The welcome page's Content-Security-Policy: only this service's own files and API.

    Images may also come from PUBLIC_BASE_URL's origin when links point elsewhere. When
    IMAGE_LINKS sends them straight to the bucket (`image_origin`), images of that origin's
    scheme are allowed (`img-src https:`) instead of naming it: the page is an open route, and
    a bucket's host is the store's address (an R2 endpoint's carries the account id). Naming it
    only to an authenticated caller cannot work, since a browser opens the page without a key.
    Only images widen: scripts, styles, connections, forms, frames and the base stay this
    service's own or none, so an image from elsewhere can neither run nor read anything. The
    admin page's forms (sign-in, sign-out) post to the service itself (`form_action`).
    """
    images = ["'self'", "data:", "blob:"]
    if public_base:
        parts = urlsplit(public_base)
        origin = f"{parts.scheme}://{parts.netloc}"
        # Only a plain host[:port] goes into the header, so no value can inject a directive.
        plain = re.fullmatch(r"[A-Za-z0-9.\-:\[\]]+", parts.netloc) is not None
        if parts.scheme in ("http", "https") and plain and origin != request.host_url.rstrip("/"):
            images.append(origin)
    scheme = urlsplit(image_origin).scheme if image_origin else ""
    if scheme in ("http", "https"):
        images.append(scheme + ":")
    return "; ".join([
        "default-src 'none'", "script-src 'self'", "style-src 'self'",
        "img-src " + " ".join(images), "connect-src 'self'", "form-action " + form_action,
        "frame-ancestors 'none'", "base-uri 'none'"])


@bp.get("/healthz")
def healthz():
    """Liveness: the process answers."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    """Readiness: storage reachable and writable, counters reachable, configuration loaded.

    Each check is "ok" or a reason in general words: an open route says whether the service is
    ready and why not, never where storage lives nor how it failed (the log does, and so does
    this answer to a configured key), nor anything about accounts or spend (GET /v1/usage).
    """
    svc = services()
    prove_presented_key()
    checks: dict = {"config": "ok", "backend": svc.backend.name}
    if svc.pipeline.providers is not None:
        # Each provider's state: "ok" or "skipped for N s after K failures" (README: Fallback).
        checks["providers"] = {provider: svc.pipeline.providers.state(provider)
                               for provider in svc.config.image_providers}
    if svc.accounts is not None:
        # Detail only: a rejected token is logged loudly, and a restart would not fix it.
        checks["accounts"] = accounts_in_general(svc.accounts.status())
    failure: tuple[StorageError, str] | None = None
    try:
        # Real pings, which also tell generations at once that the counters of budgets and rate
        # limits, or storage, are back (or gone).
        checks["counters"] = svc.books.counters_state()
    except StorageError as exc:
        log.warning("readiness: counters unavailable: %s", exc.message)
        checks["counters"] = "the usage counters (COUNTERS_URL) are unreachable"
        failure = (exc, checks["counters"])
    try:
        svc.pipeline.health.probe()
        checks["storage"] = "ok"
    except StorageError as exc:
        log.warning("readiness: storage unavailable: %s", exc.message)
        checks["storage"] = storage_in_general(exc)
        # Storage first: its error carries the cause a configured key is told.
        failure = (exc, checks["storage"])
    if failure is not None:
        error, reason = failure
        shown = public(error) if key_proved() else not_ready(error, reason)
        body = shown.body()
        body["status"] = "unavailable"
        body["checks"] = checks
        response = jsonify(body)
        response.status_code = 503
        response.headers["Retry-After"] = "5"
        return response
    return jsonify({"status": "ready", "checks": checks})


def storage_in_general(exc: StorageError) -> str:
    """Why storage fails, in words that name no host, port, bucket or errno text."""
    if isinstance(exc, StorageFull):
        return "image storage is full"
    return "image storage is unreachable or refuses to store images"


def not_ready(exc: StorageError, reason: str) -> StorageError:
    """The error /readyz answers anyone: the reason in general words and what to do."""
    general = type(exc)(f"The service is not ready: {reason}. The service's log names the "
                        "cause (so does GET /readyz with an API key); it is ready again by "
                        "itself once storage (and the counters) are back.",
                        retry_after=exc.retry_after)
    general.status = exc.status
    return general


def accounts_in_general(lines: list[dict]) -> str:
    """Whether the Cloudflare accounts can take generations, naming none of them."""
    usable = sum(1 for line in lines if line["state"] == OK)
    which = "GET /v1/usage with ADMIN_API_KEY says which and why"
    if usable == len(lines):
        return "ok"
    if usable:
        return f"some Cloudflare accounts are skipped for now; {which}"
    return f"no Cloudflare account can take a generation now; {which}"
