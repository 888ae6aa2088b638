"""flux-worker: chat your way to an image, through any OpenAI-compatible client."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Mapping

from .config import Config, ConfigError
from .version import __version__

if TYPE_CHECKING:  # importing the package stays cheap: Flask loads with create_app
    from flask import Flask

    from .services import Services

__all__ = ["create_app", "Config", "ConfigError", "__version__"]

log = logging.getLogger(__name__)


def create_app(config: Config | None = None, *, services: "Services | None" = None,
               environ: Mapping[str, str] | None = None) -> "Flask":
    """Create the Flask app; raise ConfigError for a bad configuration.

    `config` defaults to the environment; `services` lets tests pass prepared parts.
    """
    if services is not None:
        config = services.config
    elif config is None:
        config = Config.from_env(os.environ if environ is None else environ)
    from flask import Flask

    from . import logs
    from .services import build_services
    logs.configure(config.log_level, config.secrets())
    if services is None:
        services = build_services(config)

    from .web import (
        admin,
        admin_api,
        admin_keys,
        api,
        context,
        edits,
        errors,
        history,
        hooks,
        image_files,
        mcp,
        metrics,
        openapi,
        pages,
        proxies,
        responses,
        routes,
        usage,
    )

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.json = context.AnswerJSON(app)
    app.extensions["flux_worker"] = services

    errors.register(app)
    hooks.install(app)
    for blueprint in (pages.bp, image_files.bp, openapi.bp, metrics.bp, admin.bp):
        app.register_blueprint(blueprint)
    for blueprint in (api.bp, edits.bp, responses.bp, usage.bp, history.bp):
        routes.register_api(app, blueprint)
    # The admin API only under /v1: /admin at the root is the admin page's.
    for blueprint in (admin_keys.bp, admin_api.bp):
        app.register_blueprint(blueprint, url_prefix=routes.API_PREFIX)
    # Wrapping wsgi_app is Flask's documented way to add WSGI middleware; mypy sees a method.
    app.wsgi_app = image_files.ImageFastPath(app.wsgi_app, app)  # type: ignore[method-assign]
    # /mcp: MCP over streamable HTTP
    app.wsgi_app = mcp.mount(app.wsgi_app, services)  # type: ignore[method-assign]
    app.wsgi_app = proxies.TrustedProxyFix(  # type: ignore[method-assign]
        app.wsgi_app, config.trusted_proxies)
    _announce(services)
    return app


def _announce(services: "Services") -> None:
    cfg = services.config
    if services.backend.name == "demo":
        log.warning("DEMO backend active: images are drawn locally, no Cloudflare account is "
                    "used. Set CF_ACCOUNT_ID, CF_API_TOKEN and API_KEY for real images.")
    log.info("flux-worker %s: backend=%s storage=%s models=%d default=%s auth=%s translation=%s",
             __version__, services.backend.name, services.store, len(services.models.models),
             services.models.default.id, "on" if cfg.auth_required else "OFF (no API_KEY)",
             services.translator.model if services.translator else "off")
