"""The one check of a presented Bearer key: one of API_KEY's, or a run-time key.

Every interface (the API's views, /mcp) asks `KeyRing.check` and gets an `Access`: the key
that rate limits and budgets count (None on an open service) and a run-time key's own terms.
A run-time key is read from the key store on every request, never cached, so a revoked key is
refused on its next request on every instance. No Flask here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from ..auth import key_matches
from ..cost.terms import KeyTerms
from ..errors import AuthenticationError, StorageError
from .records import ACTIVE, EXPIRED, SECRET_PREFIX, IssuedKey, digest_of, id_of_digest
from .store import KeyStore


@dataclass(frozen=True)
class Access:
    """What a checked request may do, and whom its spending counts."""

    key: str | None = None                 # the proven key; None: an open service, no key
    terms: KeyTerms | None = None          # a run-time key's own terms; None: the settings'
    issued: IssuedKey | None = None        # the run-time key's record


class KeyRing:
    """API_KEY's keys and, when the admin API is on, the run-time keys of the key store."""

    def __init__(self, api_keys: tuple[str, ...], store: KeyStore | None = None, *,
                 closed: bool = False, clock: Callable[[], float] = time.time):
        self.api_keys = api_keys
        self.store = store                 # None: ADMIN_API_KEY is unset, no run-time keys
        # Closed whatever the store holds: API_KEY is set, or a real provider is on.
        self._always_closed = bool(api_keys) or closed
        self.clock = clock

    def closed(self) -> bool:
        """Whether every API request needs a key: API_KEY is set, a real provider is on, or
        the admin has created a key (an open demo closes once its first key is handed out)."""
        if self._always_closed or self.store is None:
            return self._always_closed
        return self._read(self.store.any)

    def check(self, token: str | None) -> Access:
        """The access `token` gives; raise AuthenticationError when a key is needed and this
        is none, or a run-time key that has expired or been revoked."""
        if token and self.api_keys and key_matches(self.api_keys, token):
            return Access(key=token)
        if token and self.store is not None and token.startswith(SECRET_PREFIX):
            issued = self.find(token)
            if issued is not None:
                return self._issued_access(token, issued)
        if not self.closed():
            return Access()     # an open service: whatever was presented is not a key here
        if not token:
            raise AuthenticationError(
                "You didn't provide an API key. Send it in the header `Authorization: Bearer "
                "<key>` (a key from this server's API_KEY, or one its admin created for you).")
        raise AuthenticationError(
            "Incorrect API key provided. Use a key from this server's API_KEY, or one its "
            "admin created for you, sent as `Authorization: Bearer <key>`.")

    def find(self, token: str) -> IssuedKey | None:
        """The run-time key whose secret `token` is, or None."""
        assert self.store is not None
        digest = digest_of(token)
        store = self.store
        issued = self._read(lambda: store.get(id_of_digest(digest)))
        return issued if issued is not None and issued.matches(digest) else None

    def _issued_access(self, token: str, issued: IssuedKey) -> Access:
        status = issued.status(self.clock())
        if status == ACTIVE:
            return Access(key=token, terms=issued.terms, issued=issued)
        if status == EXPIRED:
            assert issued.expires_at is not None
            raise AuthenticationError(
                f"This API key ({issued.name}) expired on {_date(issued.expires_at)}. Ask the "
                "server's admin for a new key or a later expiry.")
        raise AuthenticationError(
            f"This API key ({issued.name}) was revoked on {_date(issued.revoked_at or 0)}. Ask "
            "the server's admin for a new key.")

    def _read(self, call: Callable):
        """A key store read; an unreachable store refuses the request (fail closed)."""
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 (redis, diskcache and OS errors alike)
            raise StorageError(
                "The key store (COUNTERS_URL) cannot be read now, so no key can be checked. "
                "Try again shortly.") from exc


def _date(unix: int) -> str:
    return datetime.fromtimestamp(unix, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
