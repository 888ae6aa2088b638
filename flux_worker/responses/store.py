"""Stored responses: kept where the images are, for as long as the images are (no Flask).

A response is one JSON record in the ImageStore (memory, disk, Redis or S3), so every instance
sharing that storage can answer GET /v1/responses/{id}, and it lives as long as its image does
(IMAGE_EXPIRATION). What the record holds:

    owner       a hash of the API key that made it (never the key): another key gets a 404
    response    the Response object, without the image's base64 (`result` is null in it)
    image_key   the storage key of the image, so the image is kept once; `result` is filled
                from storage when the record is read
    input       the input items, with ids (GET /v1/responses/{id}/input_items)
    heartbeat   a background job's last sign of life (unix time, refreshed while it runs)

Only the job that runs a background response rewrites its record; a cancel, from any
instance, is a separate small mark (`<record key>.cancel`) that the job reads, so no two
writers can overwrite each other's state.

The record's storage key is derived from the owner and the response id, `response.<hash>`:
the dot makes it an invalid image key, so the public `/image/<key>` route (and its fast path)
never serves it, and a bucket's public URL cannot be guessed from the response id alone.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..storage import KEEP_FOREVER, ImageStore

CONTENT_TYPE = "application/vnd.flux-worker.response+json"
KEY_PREFIX = "response."
# What the mark beside a record says: stop the job, or stop it and never write the record again.
_CANCELLED = b"1"
_DELETED = b"deleted"


def owner_of(api_key: str | None) -> str:
    """Whose responses these are: a hash of the caller's key (no key: everyone's)."""
    return hashlib.sha256(b"flux-worker response owner\0" + (api_key or "").encode()).hexdigest()


@dataclass
class Record:
    """One stored response and what is needed to answer for it."""

    id: str
    owner: str
    response: dict[str, Any]
    input: list[dict[str, Any]] = field(default_factory=list)
    image_key: str | None = None
    expires: float = math.inf            # unix time (inf: kept for ever)
    heartbeat: float | None = None       # a running background job's last sign of life

    @property
    def status(self) -> str:
        return str(self.response.get("status"))

    def to_json(self) -> bytes:
        return json.dumps({"id": self.id, "owner": self.owner, "response": self.response,
                           "input": self.input, "image_key": self.image_key,
                           "expires": None if self.expires == math.inf else self.expires,
                           "heartbeat": self.heartbeat},
                          separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Record:
        raw = json.loads(data)
        expires = raw.get("expires")
        return cls(id=raw["id"], owner=raw["owner"], response=raw["response"],
                   input=raw.get("input") or [], image_key=raw.get("image_key"),
                   expires=math.inf if expires is None else float(expires),
                   heartbeat=raw.get("heartbeat"))


class ResponseStore:
    """Keeps response records in the image store, under keys no image route serves."""

    def __init__(self, images: ImageStore, expiration: int, *,
                 clock: Callable[[], float] = time.time):
        self.images = images
        self.expiration = expiration        # IMAGE_EXPIRATION: 0 keeps for ever
        self._clock = clock

    @staticmethod
    def storage_key(response_id: str, owner: str) -> str:
        """Where a response is kept: never a valid image key (see the module's docstring)."""
        digest = hashlib.sha256(f"{owner}\0{response_id}".encode()).hexdigest()
        return KEY_PREFIX + digest[:48]

    def new_record(self, response_id: str, owner: str, response: dict[str, Any],
                   input_items: list[dict[str, Any]]) -> Record:
        """A record that expires when an image stored now would."""
        expires = math.inf if self.expiration == KEEP_FOREVER else (
            self._clock() + self.expiration)
        return Record(response_id, owner, response, input_items, expires=expires)

    def save(self, record: Record) -> None:
        """Write the record (again), keeping its expiry; raise StorageError when it cannot."""
        if record.expires == math.inf:
            ttl = KEEP_FOREVER
        else:
            ttl = max(1, math.ceil(record.expires - self._clock()))
        self.images.put(self.storage_key(record.id, record.owner), record.to_json(),
                        CONTENT_TYPE, ttl)

    def load(self, response_id: str, owner: str) -> Record | None:
        """The record of `response_id` made by `owner`, or None (missing, expired, another's)."""
        stored = self.images.get(self.storage_key(response_id, owner))
        if stored is None or stored.content_type != CONTENT_TYPE:
            return None
        try:
            record = Record.from_json(stored.data)
        except (ValueError, KeyError, TypeError):
            return None           # not written by save(): as good as missing
        return record if record.id == response_id and record.owner == owner else None

    def delete(self, response_id: str, owner: str) -> bool:
        """Remove a response (not its image, which may be linked elsewhere); True if it was.

        A background job may still be running it, on any instance: the mark left beside the
        record says "deleted", which stops the job like a cancel and keeps it from writing the
        record back (`deleted`).
        """
        if self.load(response_id, owner) is None:
            return False
        self._mark(response_id, owner, _DELETED)
        self.images.delete(self.storage_key(response_id, owner))
        return True

    def mark_cancel(self, response_id: str, owner: str) -> None:
        """Leave the mark that asks a background job (on any instance) to stop."""
        self._mark(response_id, owner, _CANCELLED)

    def cancel_asked(self, response_id: str, owner: str) -> bool:
        """Whether a cancel (or a delete) was asked for the response."""
        return self.images.get(self.storage_key(response_id, owner) + ".cancel") is not None

    def deleted(self, response_id: str, owner: str) -> bool:
        """Whether the response was deleted: a job running it must not write it back."""
        mark = self.images.get(self.storage_key(response_id, owner) + ".cancel")
        return mark is not None and mark.data == _DELETED

    def _mark(self, response_id: str, owner: str, what: bytes) -> None:
        self.images.put(self.storage_key(response_id, owner) + ".cancel", what, CONTENT_TYPE,
                        max(1, int(self.expiration)) if self.expiration else KEEP_FOREVER)

    def image(self, record: Record) -> bytes | None:
        """The record's image bytes, or None when there is none or it has expired."""
        if not record.image_key:
            return None
        stored = self.images.get(record.image_key)
        return stored.data if stored is not None else None
