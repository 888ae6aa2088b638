"""The welcome page and the health probes."""

from __future__ import annotations

from flask import Blueprint, jsonify, render_template, request

from ..errors import StorageError
from .common import public_base_url, services

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
    }


@bp.get("/")
def index():
    """Welcome page: the service is up, with what it runs and how to connect a client."""
    info = status()
    if request.accept_mimetypes.best == "application/json":
        return jsonify(info)
    svc = services()
    return render_template("index.html", info=info, models=svc.models.models)


@bp.get("/healthz")
def healthz():
    """Liveness: the process answers."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    """Readiness: storage reachable and writable, configuration loaded."""
    svc = services()
    checks = {"config": "ok", "backend": svc.backend.name}
    try:
        svc.store.ping()
        checks["storage"] = "ok"
    except StorageError as exc:
        checks["storage"] = exc.message
        body = exc.body()
        body["status"] = "unavailable"
        body["checks"] = checks
        response = jsonify(body)
        response.status_code = 503
        response.headers["Retry-After"] = "5"
        return response
    return jsonify({"status": "ready", "checks": checks})
