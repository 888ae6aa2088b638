"""Believe X-Forwarded-* only from trusted proxies (TRUSTED_PROXIES)."""

from __future__ import annotations

import ipaddress

from werkzeug.middleware.proxy_fix import ProxyFix


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
