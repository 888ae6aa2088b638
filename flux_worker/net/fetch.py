"""Downloads of images from other sites, refusing anything that points inside (SSRF-safe).

Beside the upstream client (`upstream.py`): both are this service's outgoing HTTP, but the
upstream is trusted and configured, while these links come from clients.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from typing import Callable
from urllib.parse import urljoin, urlsplit

import urllib3

from ..errors import ImageRefused

log = logging.getLogger(__name__)

REMOTE_TIMEOUT = 10.0          # seconds for one remote fetch, connect + whole body
REMOTE_MAX_REDIRECTS = 3


Resolver = Callable[[str, int], list[str]]


def system_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


# IPv6 forms that carry an IPv4 address in their last 32 bits; they are judged by that address
# (a NAT64 gateway turns 64:ff9b::7f00:1 into a connection to 127.0.0.1).
_EMBEDDING_IPV4 = tuple(ipaddress.IPv6Network(net) for net in (
    "::/96",               # IPv4-compatible (RFC 4291, deprecated): ::127.0.0.1
    "::ffff:0:0:0/96",     # IPv4-translated (RFC 2765, SIIT)
    "64:ff9b::/96",        # NAT64's well-known prefix (RFC 6052)
))
# Prefixes that are someone's inside network whatever follows: NAT64 for local use (RFC 8215)
# and the site-local addresses (RFC 3879 deprecated them; old routers still route them inside).
_INSIDE_IPV6 = tuple(ipaddress.IPv6Network(net) for net in ("64:ff9b:1::/48", "fec0::/10"))


def is_public_address(address: str) -> bool:
    """Whether an address is on the public internet (not loopback, private, link-local, ...)."""
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(
        address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        # Teredo hides its client's IPv4 address (obfuscated): nothing to judge it by.
        if any(ip in net for net in _INSIDE_IPV6) or ip.teredo is not None:
            return False
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped                              # ::ffff:127.0.0.1
        elif ip.sixtofour is not None:
            ip = ip.sixtofour                                # 2002:7f00:1::
        elif any(ip in net for net in _EMBEDDING_IPV4):
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    # is_global excludes loopback, RFC 1918, link-local (169.254.169.254, the cloud metadata
    # address), CGNAT, ULA (fd00:ec2::254) and the reserved ranges; multicast is global but no host.
    return ip.is_global and not ip.is_multicast


class RemoteFetcher:
    """Downloads an image from the internet, refusing anything that points inside.

    The host name is resolved once, every address is checked, and the connection goes to the
    checked address (with the original Host header and TLS name), so a DNS answer that changes
    between the check and the connection cannot redirect it inside. Redirects are followed only
    on the same host, each one checked again.
    """

    def __init__(self, *, max_bytes: int, timeout: float = REMOTE_TIMEOUT,
                 resolver: Resolver = system_resolver,
                 allowed: Callable[[str], bool] = is_public_address,
                 max_redirects: int = REMOTE_MAX_REDIRECTS):
        self.max_bytes = max_bytes
        self.timeout = timeout
        self._resolve = resolver
        self._allowed = allowed
        self.max_redirects = max_redirects

    def fetch(self, url: str, label: str) -> bytes:
        """Return the body at url; raise ImageRefused for a refused or failed download."""
        deadline = time.monotonic() + self.timeout
        first_host = urlsplit(url).hostname
        for _ in range(self.max_redirects + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ImageRefused(f"{label}: only http(s) links can be fetched.", param="image")
            if parts.hostname != first_host:
                raise ImageRefused(f"{label} redirects to another host ({parts.hostname}); "
                                   "send the final link.", param="image")
            response = self._request(parts, label, deadline)
            try:
                if response.status in (301, 302, 303, 307, 308):
                    location = response.headers.get("Location")
                    if not location:
                        raise ImageRefused(f"{label} answered a redirect without a target.",
                                           param="image")
                    url = urljoin(url, location)
                    continue
                if response.status != 200:
                    raise ImageRefused(f"{label} could not be downloaded: its server answered "
                                       f"HTTP {response.status}.", param="image")
                return self._body(response, label, deadline)
            finally:
                response.release_conn()
        raise ImageRefused(f"{label} redirects more than {self.max_redirects} times.",
                           param="image")

    def _request(self, parts, label: str, deadline: float) -> urllib3.BaseHTTPResponse:
        host = parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            addresses = self._resolve(host, port)
        except (OSError, UnicodeError):
            addresses = []
        if not addresses:
            raise ImageRefused(f"{label}: the host {host} could not be resolved.", param="image")
        refused = [a for a in addresses if not self._allowed(a)]
        if refused:
            # The operator may see where the name points; the caller learns only that it is
            # inside, not which inside address a name of theirs (or of this network) has.
            log.info("refused to fetch from %s: it resolves to %s", host, refused[0])
            raise ImageRefused(
                f"{label} points to an internal address ({host}); only public internet "
                "addresses are fetched. Link the image on a public host or attach it.",
                param="image")
        address = addresses[0]
        left = max(0.1, deadline - time.monotonic())
        timeout = urllib3.Timeout(connect=min(5.0, left), read=left)
        pool: urllib3.HTTPConnectionPool
        if parts.scheme == "https":
            pool = urllib3.HTTPSConnectionPool(address, port, server_hostname=host,
                                               assert_hostname=host, timeout=timeout,
                                               retries=False, maxsize=1)
        else:
            pool = urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False,
                                              maxsize=1)
        default_port = 443 if parts.scheme == "https" else 80
        host_header = host if port == default_port else f"{host}:{port}"
        if ":" in host and not host.startswith("["):
            host_header = f"[{host}]" if port == default_port else f"[{host}]:{port}"
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            return pool.urlopen("GET", path, headers={"Host": host_header, "Accept": "image/*"},
                                redirect=False, preload_content=False, retries=False)
        except urllib3.exceptions.HTTPError as exc:
            raise ImageRefused(f"{label} could not be downloaded ({type(exc).__name__}).",
                               param="image") from None

    def _body(self, response: urllib3.BaseHTTPResponse, label: str, deadline: float) -> bytes:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise ImageRefused.too_large(label, self.max_bytes)
        chunks, total = [], 0
        try:
            for chunk in response.stream(64 * 1024):
                total += len(chunk)
                if total > self.max_bytes:
                    raise ImageRefused.too_large(label, self.max_bytes)
                if time.monotonic() > deadline:
                    raise ImageRefused(f"{label} took longer than {self.timeout:g} seconds to "
                                       "download.", param="image")
                chunks.append(chunk)
        except urllib3.exceptions.HTTPError as exc:
            raise ImageRefused(f"{label} could not be downloaded ({type(exc).__name__}).",
                               param="image") from None
        return b"".join(chunks)


