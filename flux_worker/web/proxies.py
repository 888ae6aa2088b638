"""Believe X-Forwarded-* only from trusted proxies (TRUSTED_PROXIES), and only sane values.

Even a trusted proxy may pass on what a client sent (nginx forwards a client's own
X-Forwarded-Host unless told otherwise), and these values end up in absolute links: a scheme
other than http/https (`javascript`), a host with a path or quotes, a port that is not a number
or a prefix that is not a path are dropped, so the request's own values stand.
"""

from __future__ import annotations

import ipaddress
import re

from werkzeug.middleware.proxy_fix import ProxyFix

# Last value of each header (ProxyFix takes one hop), as it must look to be believed.
_VALID = {
    "HTTP_X_FORWARDED_PROTO": re.compile(r"(?i)https?"),
    "HTTP_X_FORWARDED_HOST": re.compile(
        r"([A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(:[0-9]{1,5})?"),
    "HTTP_X_FORWARDED_PORT": re.compile(r"[0-9]{1,5}"),
    "HTTP_X_FORWARDED_PREFIX": re.compile(r"(/[A-Za-z0-9._~-]*){1,16}"),
}


def drop_invalid_forwarded(environ: dict) -> None:
    """Remove X-Forwarded-Proto/Host/Port/Prefix headers whose last value is not sane."""
    for name, pattern in _VALID.items():
        value = environ.get(name)
        if value is None:
            continue
        last = value.split(",")[-1].strip()
        if not pattern.fullmatch(last):
            del environ[name]


class TrustedPeers:
    """The addresses of TRUSTED_PROXIES: whether a peer is one of them (`addr in peers`).

    Also read by the gathering worker (gunicorn_worker.py), which does not bound the
    connections of a trusted proxy: they carry every client's requests.
    """

    def __init__(self, trusted: tuple[str, ...]):
        self.trust_all = "*" in trusted
        self.networks = [ipaddress.ip_network(t, strict=False) for t in trusted if t != "*"]

    def __contains__(self, addr: object) -> bool:
        if self.trust_all:
            return True
        if not isinstance(addr, str):
            return False
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in net for net in self.networks)


class TrustedProxyFix:
    """Apply ProxyFix only to requests that come from a trusted proxy.

    Plain ProxyFix believes X-Forwarded-* from anyone; gunicorn's forwarded_allow_ips shows the
    better habit of trusting only known peers, which this keeps (default: loopback).
    """

    def __init__(self, app, trusted: tuple[str, ...]):
        self.app = app
        self.fixed = ProxyFix(app, x_for=1, x_proto=1, x_host=1, x_port=1, x_prefix=1)
        self.trusted = TrustedPeers(trusted)

    def __call__(self, environ, start_response):
        if environ.get("REMOTE_ADDR", "") in self.trusted:
            drop_invalid_forwarded(environ)
            return self.fixed(environ, start_response)
        return self.app(environ, start_response)
