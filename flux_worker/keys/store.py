"""Where run-time keys are kept: the counters store (COUNTERS_URL), beside rate limits.

Redis when counters are shared (every host sees a new or revoked key on its next request), a
diskcache directory of its own on one host (every worker process sees it), memory in one
process. Nothing is cached in the service: a revocation must hold on the very next request.
Records are small JSON documents by key id; errors propagate (keys/ring.py fails closed).
"""

from __future__ import annotations

import os
import threading
from typing import Protocol

from ..storage.counters import directory, redis_client
from ..storage.location import DISK, REDIS, CountersLocation
from .records import IssuedKey

_HASH = "flux-worker:keys"      # Redis: one hash, field = key id, value = the record's JSON
_DISK_PREFIX = "key:"


class KeyStore(Protocol):
    """The run-time keys, by id."""

    def get(self, key_id: str) -> IssuedKey | None:
        """The key with this id, or None."""

    def put(self, key: IssuedKey) -> None:
        """Keep `key` (a new one, or a change of a kept one)."""

    def all(self) -> list[IssuedKey]:
        """Every kept key, revoked ones too, oldest first."""

    def any(self) -> bool:
        """Whether any key has been created."""

    def close(self) -> None:
        """Release connections and files."""


class MemoryKeys:
    """Keys in this process (COUNTERS_URL=memory://)."""

    def __init__(self) -> None:
        self._keys: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, key_id: str) -> IssuedKey | None:
        with self._lock:
            text = self._keys.get(key_id)
        return IssuedKey.loads(text) if text is not None else None

    def put(self, key: IssuedKey) -> None:
        with self._lock:
            self._keys[key.id] = key.dumps()

    def all(self) -> list[IssuedKey]:
        with self._lock:
            texts = list(self._keys.values())
        return _oldest_first(texts)

    def any(self) -> bool:
        return bool(self._keys)

    def close(self) -> None:
        return None


class DiskKeys:
    """Keys in a diskcache directory of their own, shared by every process of one host."""

    def __init__(self, path: str):
        from ..storage.diskcaches import OwnThreadsCache

        self.shared = OwnThreadsCache(path, timeout=10)

    def get(self, key_id: str) -> IssuedKey | None:
        text = self.shared.read(lambda cache: cache.get(_DISK_PREFIX + key_id))
        return IssuedKey.loads(text) if text is not None else None

    def put(self, key: IssuedKey) -> None:
        self.shared.write(lambda cache: cache.set(_DISK_PREFIX + key.id, key.dumps()))

    def all(self) -> list[IssuedKey]:
        def read(cache) -> list[str]:
            return [text for name in cache.iterkeys()
                    if str(name).startswith(_DISK_PREFIX)
                    and (text := cache.get(name)) is not None]

        return _oldest_first(self.shared.read(read))

    def any(self) -> bool:
        return bool(self.shared.read(len))

    def close(self) -> None:
        self.shared.close()


class RedisKeys:
    """Keys in one Redis hash, shared by every host."""

    def __init__(self, location: CountersLocation):
        # The counters' client: short timeouts, so a hung Redis cannot hold a request.
        self.client = redis_client(location)

    def get(self, key_id: str) -> IssuedKey | None:
        text = self.client.hget(_HASH, key_id)
        return IssuedKey.loads(text) if text is not None else None

    def put(self, key: IssuedKey) -> None:
        self.client.hset(_HASH, key.id, key.dumps())

    def all(self) -> list[IssuedKey]:
        return _oldest_first(list(self.client.hvals(_HASH)))

    def any(self) -> bool:
        return bool(self.client.exists(_HASH))

    def close(self) -> None:
        self.client.close()


def _oldest_first(texts: list) -> list[IssuedKey]:
    return sorted((IssuedKey.loads(t) for t in texts), key=lambda k: (k.created, k.id))


def keys_from_location(location: CountersLocation) -> KeyStore:
    """The key store where COUNTERS_URL keeps counters; on disk in a diskcache of its own."""
    if location.scheme == REDIS:
        return RedisKeys(location)
    if location.scheme == DISK:
        return DiskKeys(os.path.join(directory(location), "keys"))
    return MemoryKeys()
