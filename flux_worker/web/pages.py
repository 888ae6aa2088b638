"""The welcome page and the health probes."""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

from flask import Blueprint, jsonify, make_response, render_template, request

from ..errors import StorageError
from .base_url import public_base_url
from .context import services
from .errors import public

log = logging.getLogger(__name__)

bp = Blueprint("pages", __name__)


def status() -> dict:
    """What the service runs with: backend, storage, models, auth, lifetime."""
    svc = services()
    cfg = svc.config
    return {
        "service": "flux-worker",
        "status": "ok",
        "backend": svc.backend.name,
        "demo": svc.backend.name == "demo",
        "storage": svc.store.kind,
        "image_expiration": cfg.image_expiration,
        "auth_required": cfg.auth_required,
        "translation": svc.translator.model if svc.translator else None,
        "default_model": svc.models.default.id,
        "models": [m.id for m in svc.models.models],
        "base_url": public_base_url() + "/v1",
        **spend(svc),
    }


def spend(svc) -> dict:
    """Today's spend: the service's against DAILY_NEURONS, and each account's (no tokens)."""
    spent = svc.books.spent()
    return {"budget": {"service": svc.books.usage_of_service(spent), **svc.books.resets()},
            "accounts": svc.accounts.status() if svc.accounts else []}


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
            # Each model's steps range ({field, min, max}, or null for fixed steps), so the
            # steps input follows the chosen model.
            "steps": {m.id: m.capabilities()["steps"] for m in svc.models.models}}
    response = make_response(render_template("index.html", info=info, models=svc.models.models,
                                             page=page, ratios=RATIOS))
    response.headers["Content-Security-Policy"] = page_csp(svc.config.public_base_url,
                                                           svc.links.foreign_origin())
    return response


def page_csp(public_base: str, image_origin: str | None = None) -> str:
    """The welcome page's Content-Security-Policy: only this service's own files and API.

    Images may also come from PUBLIC_BASE_URL's origin when links point elsewhere, and from
    the bucket's (`image_origin`) when IMAGE_LINKS sends them straight there.
    """
    images = ["'self'", "data:", "blob:"]
    for base in filter(None, (public_base, image_origin)):
        parts = urlsplit(base)
        origin = f"{parts.scheme}://{parts.netloc}"
        # Only a plain host[:port] goes into the header, so no value can inject a directive.
        plain = re.fullmatch(r"[A-Za-z0-9.\-:\[\]]+", parts.netloc) is not None
        if parts.scheme in ("http", "https") and plain and origin != request.host_url.rstrip("/"):
            images.append(origin)
    return "; ".join([
        "default-src 'none'", "script-src 'self'", "style-src 'self'",
        "img-src " + " ".join(images), "connect-src 'self'", "form-action 'none'",
        "frame-ancestors 'none'", "base-uri 'none'"])


@bp.get("/healthz")
def healthz():
    """Liveness: the process answers."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    """Readiness: storage reachable and writable, counters reachable, configuration loaded."""
    svc = services()
    checks: dict = {"config": "ok", "backend": svc.backend.name}
    if svc.accounts is not None:
        # Detail only: a rejected token is logged loudly, and a restart would not fix it.
        checks["accounts"] = svc.accounts.status()
    failure: StorageError | None = None
    try:
        # Real pings, which also tell generations at once that the counters of budgets and rate
        # limits, or storage, are back (or gone).
        checks["counters"] = svc.books.counters_state()
    except StorageError as exc:
        failure = exc
        checks["counters"] = public(exc).message
    try:
        svc.pipeline.health.probe()
        checks["storage"] = "ok"
    except StorageError as exc:
        # An open route: the cause is told, its addresses (host, port, path) only in the log.
        log.warning("readiness: storage unavailable: %s", exc.message)
        failure = failure or exc
        checks["storage"] = public(exc).message
    if failure is not None:
        shown = public(failure)
        body = shown.body()
        body["status"] = "unavailable"
        body["checks"] = checks
        response = jsonify(body)
        response.status_code = 503
        response.headers["Retry-After"] = "5"
        return response
    return jsonify({"status": "ready", "checks": checks})
