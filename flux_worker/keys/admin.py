"""What the admin does with run-time keys: create, change, revoke, list. No Flask here.

A change or revocation is written to the key store at once; every instance reads the store on
each request (keys/ring.py), so it holds on the next request everywhere. A revoked key is kept
(its name still labels its past spending and history) and never comes back.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Callable

from ..cost.terms import KeyTerms
from ..errors import InvalidRequest, NotFound
from .records import REVOKED, IssuedKey, new_secret
from .store import KeyStore
from .wire import KeyChange, KeyCreate, expiry_of, terms_of


class KeyAdmin:
    """The run-time keys as the admin API changes them."""

    def __init__(self, store: KeyStore, model_id: Callable[[str], str],
                 clock: Callable[[], float] = time.time):
        self.store = store
        self.model_id = model_id     # an offered model's id by any of its names (or raises)
        self.clock = clock

    def create(self, asked: KeyCreate) -> tuple[IssuedKey, str]:
        """A new key and its secret (shown to the admin once, then only its hash is kept)."""
        now = int(self.clock())
        secret = new_secret()
        key = IssuedKey.create(secret, asked.name, self._checked(terms_of(asked)), now=now,
                               expires_at=expiry_of(asked, now))
        self.store.put(key)
        return key, secret

    def change(self, key_id: str, asked: KeyChange) -> IssuedKey:
        """The key after `asked` (a revoked key cannot change)."""
        key = self.get(key_id)
        if key.status(self.clock()) == REVOKED:
            raise InvalidRequest(f"The key {key_id} is revoked and cannot change; create a new "
                                 "key instead.", param="id")
        changed = replace(key, name=asked.name or key.name,
                          terms=self._checked(terms_of(asked, key.terms)),
                          expires_at=expiry_of(asked, int(self.clock()), key.expires_at))
        self.store.put(changed)
        return changed

    def revoke(self, key_id: str) -> IssuedKey:
        """The key, revoked from now on (revoking twice keeps the first time)."""
        key = self.get(key_id).revoke(int(self.clock()))
        self.store.put(key)
        return key

    def get(self, key_id: str) -> IssuedKey:
        """The key with this id; NotFound otherwise."""
        key = self.store.get(key_id) if key_id.isascii() else None
        if key is None:
            raise NotFound(f"No key with the id {key_id!r}: GET /v1/admin/keys lists them.")
        return key

    def all(self) -> list[IssuedKey]:
        """Every key, revoked ones too, oldest first."""
        return self.store.all()

    def _checked(self, terms: KeyTerms) -> KeyTerms:
        """The terms with each allowed model named by its id (an unknown one is refused)."""
        if terms.models is None:
            return terms
        return replace(terms, models=tuple(dict.fromkeys(self.model_id(m) for m in terms.models)))
