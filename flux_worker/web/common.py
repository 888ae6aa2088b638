"""Request plumbing shared by all blueprints: services, auth, JSON bodies, CORS, proxies, links."""

from __future__ import annotations

import ipaddress
import logging
import re
import secrets
import time

from flask import Flask, Response, current_app, g, request
from werkzeug.datastructures import Authorization
from werkzeug.middleware.proxy_fix import ProxyFix

from .. import metrics
from ..auth import key_matches
from ..errors import AuthenticationError, InvalidRequest
from ..services import Services

# A deliberately named logger: operators route access lines apart from the rest.
log = logging.getLogger("flux_worker.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_ALLOWED_HEADERS = "Authorization, Content-Type, X-Request-ID, OpenAI-Organization, OpenAI-Project"


def services() -> Services:
    """The services of the running app."""
    return current_app.extensions["flux_worker"]


def require_api_key() -> None:
    """Read the Bearer key once per request; raise AuthenticationError unless it is configured."""
    g.api_key = bearer_token(request.authorization)
    check_api_key(services().config.api_keys, g.api_key)


def bearer_token(auth: Authorization | None) -> str | None:
    """The Bearer token of a parsed Authorization header; anything else counts as no key."""
    token = auth.token if auth is not None and auth.type == "bearer" else None
    return token.strip() if token else None


def check_api_key(keys: tuple[str, ...], token: str | None) -> None:
    """Raise AuthenticationError unless `token` is one of `keys` (no keys: anyone may call)."""
    if not keys:
        return
    if not token:
        raise AuthenticationError(
            "You didn't provide an API key. Send it in the header `Authorization: Bearer <key>` "
            "(the key is the API_KEY configured on this server).")
    if not key_matches(keys, token):
        raise AuthenticationError(
            "Incorrect API key provided. Use one of the keys in this server's API_KEY, sent as "
            "`Authorization: Bearer <key>`.")


def caller_identity() -> str:
    """Whom rate limits count: the API key when keys are configured, else the client address."""
    if services().config.api_keys and getattr(g, "api_key", None):
        return g.api_key
    return request.remote_addr or "anonymous"


def json_body() -> dict:
    """The request's JSON object, or InvalidRequest saying what is wrong with it."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise InvalidRequest("The request body is empty: send a JSON object with "
                             "Content-Type: application/json.")
    data = request.get_json(force=True, silent=True)
    if data is None:
        raise InvalidRequest("The request body is not valid JSON: send a JSON object with "
                             "Content-Type: application/json.")
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object, such as "
                             '{"model": "...", "messages": [...]}.')
    return data


def public_base_url() -> str:
    """Base of absolute links: PUBLIC_BASE_URL, else this request's (proxy-aware) root URL."""
    configured = services().config.public_base_url
    return configured or request.url_root.rstrip("/")


def image_link(base: str, key: str) -> str:
    """The absolute URL of a stored image."""
    return f"{base}/image/{key}"


class TrustedProxyFix:
    """Apply ProxyFix only to requests that come from a trusted proxy.

    Plain ProxyFix believes X-Forwarded-* from anyone; gunicorn's forwarded_allow_ips shows the
    better habit of trusting only known peers, which this keeps (default: loopback).
    """

    def __init__(self, app, trusted: tuple[str, ...]):
        self.app = app
        self.fixed = ProxyFix(app, x_for=1, x_proto=1, x_host=1, x_port=1, x_prefix=1)
        self.trust_all = "*" in trusted
        self.networks = [ipaddress.ip_network(t, strict=False) for t in trusted if t != "*"]

    def __call__(self, environ, start_response):
        if self._trusted(environ.get("REMOTE_ADDR", "")):
            return self.fixed(environ, start_response)
        return self.app(environ, start_response)

    def _trusted(self, addr: str) -> bool:
        if self.trust_all:
            return True
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in net for net in self.networks)


def install(app: Flask) -> None:
    """Install request ids, CORS, preflight answers and the access log on `app`."""
    config = app.extensions["flux_worker"].config
    origins = config.cors_origins
    allow_any = "*" in origins

    @app.before_request
    def start_request():
        g.started = time.monotonic()
        g.request_id = request_id(request.headers.get("X-Request-ID", ""))
        if request.method == "OPTIONS":
            # Preflight for any path, known or not: browsers only need the CORS headers.
            return Response(status=204)
        return None

    @app.after_request
    def finish_request(response: Response):
        rid = getattr(g, "request_id", None)
        for name, value in common_headers(origins, request.headers.get("Origin"),
                                          request.headers.get("Access-Control-Request-Headers"),
                                          rid):
            response.headers[name] = value
        if not allow_any:
            response.vary.add("Origin")
        started = getattr(g, "started", None)
        if started is not None:
            done = request_done(started, rid, request.method, request.path,
                                request.url_rule.rule if request.url_rule else "unmatched",
                                response.status_code, getattr(g, "model", "-"))
            if response.is_streamed and not response.direct_passthrough:
                # A stream's body (the generation itself) is produced after this hook: log and
                # time it when the server closes the response, whether it ended or was cut.
                response.call_on_close(done)
            else:
                done()
        return response


def request_id(incoming: str) -> str:
    """The client's X-Request-ID when it is sane, else a fresh one."""
    return incoming if _REQUEST_ID.match(incoming or "") else secrets.token_hex(8)


def common_headers(origins: tuple[str, ...], origin: str | None, requested: str | None,
                   rid: str | None) -> list[tuple[str, str]]:
    """CORS, request id and nosniff headers that every answer carries."""
    headers = []
    if "*" in origins:
        headers.append(("Access-Control-Allow-Origin", "*"))
    elif origin and origin in origins:
        headers.append(("Access-Control-Allow-Origin", origin))
    headers += [
        ("Access-Control-Allow-Methods", "GET, HEAD, POST, OPTIONS"),
        ("Access-Control-Allow-Headers", requested or _ALLOWED_HEADERS),
        ("Access-Control-Expose-Headers", "X-Request-ID, Retry-After, ETag"),
        ("Access-Control-Max-Age", "86400"),
        ("X-Content-Type-Options", "nosniff"),
    ]
    if rid:
        headers.append(("X-Request-ID", rid))
    return headers


def request_done(started: float, rid: str | None, method: str, path: str, route: str,
                  status: int, model: str):
    """A callback that writes the access-log line and the request metrics.

    Everything is captured now: the request context may be gone when a stream closes.
    """

    def done() -> None:
        duration = time.monotonic() - started
        metrics.observe_request(method, route, status, duration)
        # Preflights are counted in the metrics but would only crowd the log.
        if method != "OPTIONS":
            log.info("%s %s %s %d %.0fms model=%s", rid, method, path, status,
                     duration * 1000, model)

    return done
