"""Downloads of images from other sites, refusing anything that points inside (SSRF-safe).

Beside the upstream client (`upstream.py`): both are this service's outgoing HTTP, but the
upstream is trusted and configured, while these links come from clients.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from typing import Any, Callable
from urllib.parse import SplitResult, urljoin, urlsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection

from ..errors import APIError, ImageRefused
from .upstream import shut_at, spare

log = logging.getLogger(__name__)

# One total deadline per fetch, in seconds: connect, TLS handshake, headers, body and every
# redirect together. When it passes the socket is shut, whatever the host is doing (a byte
# every 0.1 s used to hold a thread for 70 s and more). The name's resolution comes before it
# and is bounded by the system resolver's own timeouts; the fetch ends at once if it used it up.
REMOTE_TIMEOUT = 10.0
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


class _Deadline:
    """One fetch's total deadline: every socket the fetch opens is shut when it passes."""

    def __init__(self, seconds: float):
        self.at = time.monotonic() + seconds
        self._watched: list[tuple[int, socket.socket]] = []

    def left(self) -> float:
        """Seconds until the deadline (negative once passed)."""
        return self.at - time.monotonic()

    def passed(self) -> bool:
        """Whether the deadline has passed (after a cut, it has: the watchdog cuts no sooner)."""
        return time.monotonic() >= self.at

    def watch(self, sock: socket.socket) -> None:
        """Shut `sock`'s connection at the deadline unless `close` comes first."""
        # A second descriptor of the same connection: TLS wraps and detaches the socket urllib3
        # made, but a shutdown through any descriptor ends every wait on the connection,
        # the handshake's included.
        twin = sock.dup()
        self._watched.append((shut_at(self.at, twin), twin))

    def close(self) -> None:
        """Call off the cuts still armed; the fetch is over."""
        for ticket, twin in self._watched:
            spare(ticket)
            twin.close()
        self._watched.clear()


class _WatchedMixin:
    """A connection whose socket is handed to the fetch's deadline as soon as it exists."""

    _deadline: _Deadline

    def __init__(self, *args: Any, deadline: _Deadline, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._deadline = deadline

    def _new_conn(self) -> socket.socket:
        # urllib3 opens the socket here and only then shakes hands (TLS) and sends: watched from
        # here, no stage of the fetch can outlast the deadline.
        sock = super()._new_conn()  # type: ignore[misc]
        self._deadline.watch(sock)
        return sock


class _WatchedConnection(_WatchedMixin, HTTPConnection):
    pass


class _WatchedTLSConnection(_WatchedMixin, HTTPSConnection):
    pass


class _WatchedPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _WatchedConnection


class _WatchedTLSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _WatchedTLSConnection


class RemoteFetcher:
    """Downloads an image from the internet, refusing anything that points inside.

    The host name is resolved once, every address is checked, and the connection goes to the
    checked address (with the original Host header and TLS name), so a DNS answer that changes
    between the check and the connection cannot redirect it inside. Redirects are followed only
    on the same host, each one checked again.

    The checks and the wording of refusals are methods (`_check_link`, `_address_allowed`,
    `_refuse`, `_too_large`), so that a download with other rules (providers' result files,
    provider_files.py) reuses the same connection and deadline machinery.
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
        deadline = _Deadline(self.timeout)
        try:
            return self._follow(url, label, deadline)
        finally:
            deadline.close()

    def _follow(self, url: str, label: str, deadline: _Deadline) -> bytes:
        first = urlsplit(url)
        for _ in range(self.max_redirects + 1):
            parts = urlsplit(url)
            self._check_link(parts, first, label)
            address = self._checked_address(parts, label, deadline)
            with self._pool(parts, address, deadline) as pool:
                response = self._request(pool, parts, label, deadline)
                try:
                    if response.status in (301, 302, 303, 307, 308):
                        location = response.headers.get("Location")
                        if not location:
                            raise self._refuse(f"{label} answered a redirect without a target.")
                        url = urljoin(url, location)
                        continue
                    if response.status != 200:
                        raise self._refuse(f"{label} could not be downloaded: its server "
                                           f"answered HTTP {response.status}.")
                    return self._body(response, label, deadline)
                finally:
                    response.release_conn()
        raise self._refuse(f"{label} redirects more than {self.max_redirects} times.")

    # -- the rules and their wording (a subclass may change them) ----------------------------

    def _check_link(self, parts: SplitResult, first: SplitResult, label: str) -> None:
        """Refuse a link that is not http(s), or a redirect to another host than the first."""
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise self._refuse(f"{label}: only http(s) links can be fetched.")
        if parts.hostname != first.hostname:
            raise self._refuse(f"{label} redirects to another host ({parts.hostname}).",
                               "Send the final link.")

    def _address_allowed(self, parts: SplitResult, address: str) -> bool:
        """Whether `address`, one that `parts.hostname` resolves to, may be connected to."""
        return self._allowed(address)

    def _refuse(self, text: str, advice: str = "") -> APIError:
        """The error for a refused download: `advice` tells a client what to do instead."""
        return ImageRefused(f"{text} {advice}".strip(), param="image")

    def _too_large(self, label: str) -> APIError:
        return ImageRefused.too_large(label, self.max_bytes)

    def _checked_address(self, parts, label: str, deadline: _Deadline) -> str:
        """The address to connect to, after every address of the host passed the guard."""
        host = parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            addresses = self._resolve(host, port)
        except (OSError, UnicodeError):
            addresses = []
        if not addresses:
            raise self._refuse(f"{label}: the host {host} could not be resolved.")
        refused = [a for a in addresses if not self._address_allowed(parts, a)]
        if refused:
            # The operator may see where the name points; the caller learns only that it is
            # inside, not which inside address a name of theirs (or of this network) has.
            log.info("refused to fetch from %s: it resolves to %s", host, refused[0])
            raise self._refuse(
                f"{label} points to an internal address ({host}); only public internet "
                "addresses are fetched.", "Link the image on a public host or attach it.")
        if deadline.passed():
            raise self._too_slow(label)
        return addresses[0]

    def _pool(self, parts, address: str, deadline: _Deadline) -> urllib3.HTTPConnectionPool:
        """A one-connection pool to the checked address whose sockets the deadline watches."""
        host = parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80)
        # The per-read timeout only backs up the watchdog; the deadline is what ends a fetch.
        left = max(0.1, deadline.left())
        timeout = urllib3.Timeout(connect=min(5.0, left), read=left)
        if parts.scheme == "https":
            return _WatchedTLSPool(address, port, server_hostname=host, assert_hostname=host,
                                   timeout=timeout, retries=False, maxsize=1,
                                   deadline=deadline)
        return _WatchedPool(address, port, timeout=timeout, retries=False, maxsize=1,
                            deadline=deadline)

    def _request(self, pool: urllib3.HTTPConnectionPool, parts, label: str,
                 deadline: _Deadline) -> urllib3.BaseHTTPResponse:
        host = parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80)
        default_port = 443 if parts.scheme == "https" else 80
        host_header = host if port == default_port else f"{host}:{port}"
        if ":" in host and not host.startswith("["):
            host_header = f"[{host}]" if port == default_port else f"[{host}]:{port}"
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            return pool.urlopen("GET", path, headers={"Host": host_header, "Accept": "image/*"},
                                redirect=False, preload_content=False, retries=False)
        except urllib3.exceptions.HTTPError as exc:
            raise self._failed(label, exc, deadline) from None

    def _body(self, response: urllib3.BaseHTTPResponse, label: str,
              deadline: _Deadline) -> bytes:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise self._too_large(label)
        chunks, total = [], 0
        try:
            for chunk in response.stream(64 * 1024):
                total += len(chunk)
                if total > self.max_bytes:
                    raise self._too_large(label)
                chunks.append(chunk)
        except urllib3.exceptions.HTTPError as exc:
            raise self._failed(label, exc, deadline) from None
        if deadline.passed():
            # Cut at the deadline, a body without a length just stops: it is not whole.
            raise self._too_slow(label)
        return b"".join(chunks)

    def _failed(self, label: str, exc: Exception, deadline: _Deadline) -> APIError:
        """The refusal for a download that broke off: too slow, or failed for its own reason."""
        if deadline.passed():
            return self._too_slow(label)
        return self._refuse(f"{label} could not be downloaded ({type(exc).__name__}).")

    def _too_slow(self, label: str) -> APIError:
        return self._refuse(f"{label} took longer than {self.timeout:g} seconds to download;",
                            "link the image on a faster host or attach it.")
