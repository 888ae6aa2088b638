"""What is kept of a run-time key, and how its secret is made and recognised.

The secret is shown once, when the key is created; only its SHA-256 is kept. A key's id is
derived from that hash, so a presented key is found with one read and no secret is stored.
256 random bits make a plain hash safe (no salt or slow hash is needed against guessing).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import asdict, dataclass, replace

from ..cost.ledgers import short_hash
from ..cost.terms import KeyTerms

SECRET_PREFIX = "sk-fw-"   # OpenAI-shaped (clients that check for `sk-` accept it), and ours
ID_PREFIX = "key_"
ACTIVE, EXPIRED, REVOKED = "active", "expired", "revoked"


def new_secret() -> str:
    """A fresh key: the prefix and 256 random bits."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def digest_of(secret: str) -> str:
    """The SHA-256 of a presented key, as kept."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def id_of_digest(digest: str) -> str:
    """A key's id: from its hash, so a presented key is found without a second index."""
    return ID_PREFIX + digest[:20]


@dataclass(frozen=True)
class IssuedKey:
    """One run-time key as stored: its terms, its dates, never its secret."""

    id: str
    name: str
    digest: str                      # SHA-256 of the secret, hex
    owner: str                       # the short hash that ledgers and history name it by
    prefix: str                      # the secret's start, to recognise it in a list
    created: int
    expires_at: int | None = None
    revoked_at: int | None = None
    terms: KeyTerms = KeyTerms()

    @classmethod
    def create(cls, secret: str, name: str, terms: KeyTerms, *, now: int,
               expires_at: int | None = None) -> "IssuedKey":
        """The record of a new key whose secret is `secret`."""
        digest = digest_of(secret)
        return cls(id=id_of_digest(digest), name=name, digest=digest, owner=short_hash(secret),
                   prefix=secret[:len(SECRET_PREFIX) + 4] + "…", created=now,
                   expires_at=expires_at, terms=terms)

    def matches(self, digest: str) -> bool:
        """Whether a presented key's hash is this key's (constant time)."""
        return hmac.compare_digest(self.digest, digest)

    def status(self, now: float) -> str:
        """`active`, `expired` or `revoked` at `now` (unix seconds)."""
        if self.revoked_at is not None:
            return REVOKED
        if self.expires_at is not None and self.expires_at <= now:
            return EXPIRED
        return ACTIVE

    def revoke(self, now: int) -> "IssuedKey":
        """This key, revoked at `now` (a key revoked before stays revoked at its first time)."""
        return self if self.revoked_at is not None else replace(self, revoked_at=now)

    def dumps(self) -> str:
        """The stored JSON."""
        record = asdict(self)
        terms = record["terms"]
        terms["models"] = list(terms["models"]) if terms["models"] is not None else None
        return json.dumps(record, separators=(",", ":"))

    @classmethod
    def loads(cls, text: str | bytes) -> "IssuedKey":
        """A stored record, read back."""
        record = json.loads(text)
        terms = record.pop("terms") or {}
        models = terms.get("models")
        terms["models"] = tuple(models) if models is not None else None
        return cls(**record, terms=KeyTerms(**terms))
