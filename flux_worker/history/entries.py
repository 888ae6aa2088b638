"""One entry of the image history, and whose it is.

An entry names its owner by the short hash of the API key that made it (cost/ledgers.py
`short_hash`), never the key; an open service's images (no API_KEY) belong to "anonymous".
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass

import orjson

from ..cost.ledgers import short_hash

ANONYMOUS = "anonymous"
ID_PREFIX = "gen_"


def owner_of(key: str | None) -> str:
    """The owner name of a caller's key: its short hash, or "anonymous" without a key."""
    return short_hash(key) if key else ANONYMOUS


def new_entry_id() -> str:
    """A fresh, unguessable entry id (`gen_` and 96 random bits)."""
    return ID_PREFIX + secrets.token_urlsafe(12)


@dataclass(frozen=True)
class HistoryEntry:
    """One stored image: who made it, from what prompt, with which model, until when."""

    id: str
    owner: str                      # short hash of the key, or ANONYMOUS
    image_keys: tuple[str, ...]     # in the ImageStore
    prompt: str                     # as the user typed it
    revised_prompt: str | None      # what the model drew from, when it differs (translation)
    model: str
    provider: str
    size: str                       # "WxH"
    created: float                  # unix seconds (fractions order entries of one second)
    expires_at: int | None          # unix seconds; None: kept for ever (IMAGE_EXPIRATION=0)
    neurons: float | None = None
    usd: float | None = None

    def to_json(self) -> bytes:
        """The entry as the stores keep it."""
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> "HistoryEntry":
        """An entry from what `to_json` wrote."""
        data = orjson.loads(raw)
        data["image_keys"] = tuple(data["image_keys"])
        return cls(**data)

    def ttl(self, now: float) -> float | None:
        """Seconds left to keep the entry at `now` (None: for ever; at least a millisecond)."""
        return None if self.expires_at is None else max(0.001, self.expires_at - now)


@dataclass(frozen=True)
class Page:
    """Entries newest first, and whether older ones follow."""

    entries: list[HistoryEntry]
    has_more: bool


class UnknownAfter(LookupError):
    """The `after` of a page is not in the listing (another's, deleted, expired or made up)."""
