"""Downloads of images from other sites, refusing anything that points inside (SSRF-safe).

Beside the upstream client (`upstream.py`): both are this service's outgoing HTTP, but the
upstream is trusted and configured, while these links come from clients.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from typing import Callable
from urllib.parse import urljoin, urlsplit

import urllib3

from ..errors import ImageRefused
from . import upstream
from .upstream import DeadlinePool, DeadlineTLSPool

REMOTE_TIMEOUT = 10.0          # seconds for one remote fetch, connect + whole body
REMOTE_MAX_REDIRECTS = 3


Resolver = Callable[[str, int], list[str]]


def system_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


# IPv6 forms that carry an IPv4 address in their last 32 bits, and mean that address:
# IPv4-compatible (::a.b.c.d, deprecated but still routed by some stacks) and NAT64 (64:ff9b::/96,
# RFC 6052; 64:ff9b:1::/48, RFC 8215). ::ffff:a.b.c.d (mapped) has ipaddress's own accessor.
_EMBEDDING_IPV4 = (ipaddress.IPv6Network("::/96"), ipaddress.IPv6Network("64:ff9b::/96"),
                   ipaddress.IPv6Network("64:ff9b:1::/48"))


def is_public_address(address: str) -> bool:
    """Whether an address is on the public internet (not loopback, private, link-local, ...).

    An IPv6 address that embeds an IPv4 one (mapped, compatible, NAT64, 6to4, Teredo) is judged
    by the IPv4 address it reaches.
    """
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(
        address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.is_site_local:            # fec0::/10: deprecated, but some networks still route it
            return False
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and int(ip) > 1 and any(ip in net for net in _EMBEDDING_IPV4):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            ip = embedded               # ::ffff:127.0.0.1, ::7f00:1, 64:ff9b::7f00:1 are 127.0.0.1
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
        if not all(self._allowed(a) for a in addresses):
            raise ImageRefused(
                # Which internal address a name has is not the caller's business.
                f"{label} points to an internal address; only public internet addresses are "
                "fetched.", param="image")
        address = addresses[0]
        left = max(0.1, deadline - time.monotonic())
        timeout = urllib3.Timeout(connect=min(5.0, left), read=left)
        # The deadline pools' connections are shut by the process's watchdog when the fetch's
        # deadline passes while headers trickle in (a timeout per read never ends a trickle).
        pool: urllib3.HTTPConnectionPool
        if parts.scheme == "https":
            pool = DeadlineTLSPool(address, port, server_hostname=host, assert_hostname=host,
                                   timeout=timeout, retries=False, maxsize=1)
        else:
            pool = DeadlinePool(address, port, timeout=timeout, retries=False, maxsize=1)
        default_port = 443 if parts.scheme == "https" else 80
        host_header = host if port == default_port else f"{host}:{port}"
        if ":" in host and not host.startswith("["):
            host_header = f"[{host}]" if port == default_port else f"[{host}]:{port}"
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            with upstream.deadline(deadline):
                return pool.urlopen("GET", path, headers={"Host": host_header,
                                                          "Accept": "image/*"},
                                    redirect=False, preload_content=False, retries=False)
        except urllib3.exceptions.HTTPError as exc:
            raise self._failed(label, deadline, exc) from None

    def _body(self, response: urllib3.BaseHTTPResponse, label: str, deadline: float) -> bytes:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise ImageRefused.too_large(label, self.max_bytes)
        chunks, total = [], 0
        sock = getattr(getattr(response, "connection", None), "sock", None)
        try:
            # A body trickled a byte at a time is cut at the deadline, not between pieces.
            with upstream.deadline(deadline, sock):
                for chunk in response.stream(64 * 1024):
                    total += len(chunk)
                    if total > self.max_bytes:
                        raise ImageRefused.too_large(label, self.max_bytes)
                    chunks.append(chunk)
        except urllib3.exceptions.HTTPError as exc:
            raise self._failed(label, deadline, exc) from None
        if time.monotonic() >= deadline:
            raise self._failed(label, deadline, None)   # cut short: what came is not the image
        return b"".join(chunks)

    def _failed(self, label: str, deadline: float,
                exc: Exception | None) -> ImageRefused:
        """Why a download failed: too slow (its deadline passed), else the error's kind."""
        if exc is None or time.monotonic() >= deadline:
            return ImageRefused(f"{label} took longer than {self.timeout:g} seconds to "
                                "download.", param="image")
        return ImageRefused(f"{label} could not be downloaded ({type(exc).__name__}).",
                            param="image")


