"""Downloads of the files image providers answer with (a link to the picture they made).

Some providers answer a link instead of the bytes (Cloudflare's partner models; fal and Replicate
too). The link is fetched at once, because it expires, and it is fetched as carefully as a
client's link (fetch.py: one total deadline, the checked address pinned, a byte bound), with
rules of its own:

- only from the hosts the answer may name: each provider's documented file domains (https, and
  only when every address of the name is public), plus PROVIDER_FILE_HOSTS (`host` or
  `host:port`; such a host may be private or loopback: a local fake, an on-premise mirror; no
  other private address is ever fetched);
- redirects are followed only to such hosts, at most a few;
- no credentials: the request carries no Authorization header (the provider's token must never
  reach a file host);
- the body must be an image (its magic bytes, not its declared type).

Nothing here knows a provider: the backend passes its documented domains (`FileHosts`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable
from urllib.parse import SplitResult

from ..errors import APIError, UpstreamError
from .fetch import RemoteFetcher, Resolver, is_public_address, system_resolver

# The largest result file read: a 4 MP PNG is ~12 MB, so 50 MB bounds memory, not pictures.
MAX_PROVIDER_FILE_BYTES = 50 * 1024 * 1024
PROVIDER_FILE_TIMEOUT = 60.0          # seconds for the whole download, redirects included
PROVIDER_FILE_REDIRECTS = 3


@dataclass(frozen=True)
class FileHosts:
    """Where one provider's result files may come from.

    domains: documented file domains; a host matches one when it is the domain or under it
    (`pub-1.r2.dev` under `r2.dev`), over https only, and at public addresses only.
    extra: PROVIDER_FILE_HOSTS entries; `host` matches any port, `host:port` that port only;
    http or https, any address (the operator named it).
    """

    domains: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()

    def trusted(self, parts: SplitResult) -> bool:
        """Whether the link's host is one the operator listed (any address allowed)."""
        host = (parts.hostname or "").lower()
        port = parts.port or (443 if parts.scheme == "https" else 80)
        shown = f"[{host}]" if ":" in host else host
        return shown in self.extra or f"{shown}:{port}" in self.extra

    def documented(self, parts: SplitResult) -> bool:
        """Whether the link is https on one of the provider's documented domains."""
        host = (parts.hostname or "").lower().rstrip(".")
        return parts.scheme == "https" and any(
            host == domain or host.endswith("." + domain) for domain in self.domains)

    def allows(self, parts: SplitResult) -> bool:
        """Whether a file may be fetched from this link's host at all."""
        return self.trusted(parts) or self.documented(parts)


class ProviderFiles(RemoteFetcher):
    """Fetches a provider's result file under the rules above; refusals are UpstreamErrors."""

    def __init__(self, hosts: FileHosts, *, sniff: Callable[[bytes], str | None],
                 max_bytes: int = MAX_PROVIDER_FILE_BYTES,
                 timeout: float = PROVIDER_FILE_TIMEOUT, resolver: Resolver = system_resolver,
                 public: Callable[[str], bool] = is_public_address):
        super().__init__(max_bytes=max_bytes, timeout=timeout, resolver=resolver,
                         allowed=public, max_redirects=PROVIDER_FILE_REDIRECTS)
        self.hosts = hosts
        self._sniff = sniff

    def download(self, url: str, label: str) -> tuple[bytes, str]:
        """The file's bytes and the image type they are; raise UpstreamError otherwise."""
        data = self.fetch(url, label)
        kind = self._sniff(data)
        if kind is None:
            raise UpstreamError(f"{label} is not an image ({len(data)} bytes of something else).")
        return data, kind

    def _check_link(self, parts: SplitResult, first: SplitResult, label: str) -> None:
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise self._refuse(f"{label} is not an http(s) link.")
        if not self.hosts.allows(parts):
            # The host is named (it came from the provider), never the path or query: result
            # links often carry a signature.
            what = "redirects to" if parts != first else "is on"
            raise self._refuse(
                f"{label} {what} {parts.hostname}, which is not one of the provider's file "
                "hosts; an operator who trusts it can add it to PROVIDER_FILE_HOSTS.")

    def _address_allowed(self, parts: SplitResult, address: str) -> bool:
        return self.hosts.trusted(parts) or self._allowed(address)

    def _refuse(self, text: str, advice: str = "") -> APIError:
        # The provider's answer was unusable: a 502, without the advice a client's link gets
        # (a text cut before that advice ends in ";").
        return UpstreamError(text[:-1] + "." if text.endswith(";") else text)

    def _too_large(self, label: str) -> APIError:
        return UpstreamError(f"{label} is larger than {self.max_bytes // (1024 * 1024)} MB, more "
                             "than any picture needs; it was refused.")

