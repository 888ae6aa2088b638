"""Images kept in Redis, shared by every process on every host that uses the same server.

One hash per image, `flux-worker:image:<key>` = {data, type, created, expires}, written in one
MULTI/EXEC transaction together with its native expiry, so a reader sees the whole entry or none.
Redis removes the entry after `ttl` seconds by its own clock (relative, so clock skew between
hosts does not matter); `get` also compares `expires` with the injected clock, which lets tests
use a fake one. The size bound is Redis's own `maxmemory`, not STORAGE_MAX_BYTES.

The URL's password never appears in an error message: every message is built from the error
class, and any text taken from redis-py is scrubbed of the password.
"""

from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterator

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from ..errors import StorageError, StorageFull
from .base import KEEP_FOREVER, OpensFromMemory, StoredImage, new_entry
from .location import redact

PREFIX = "flux-worker:image:"
PING_KEY = "flux-worker:ping"
FIELDS = (b"data", b"type", b"created", b"expires")


class RedisStore(OpensFromMemory):
    """A store in Redis, reached through one thread-safe connection pool."""

    kind = "redis"

    def __init__(self, url: str, *, clock: Callable[[], float] = time.time,
                 socket_timeout: float = 5.0, connect_timeout: float = 3.0):
        """Create the client; nothing connects until the first command.

        :raises ValueError: when the URL cannot be parsed (the message hides the password).
        """
        self._url = url
        self._clock = clock
        try:
            self._client = redis.Redis.from_url(
                url, socket_timeout=socket_timeout, socket_connect_timeout=connect_timeout,
                # A pooled connection idle for 30 s is PINGed before use, so one left broken
                # by a Redis restart is replaced instead of failing a request.
                health_check_interval=30,
                # One quick retry on a new connection covers a stale pooled one; redis-py's
                # default (10 retries, up to 1 s apart) would hold a request ~10 s in an outage.
                retry=Retry(ExponentialWithJitterBackoff(cap=0.25, base=0.05), retries=1))
        except ValueError as exc:
            raise ValueError(
                f"invalid Redis URL {redact(url, url)!r}: {redact(str(exc), url)}") from None

    def put(self, key: str, data: bytes, content_type: str, ttl: int) -> StoredImage:
        """Store `data` under `key` for `ttl` seconds (KEEP_FOREVER: no expiry at all).

        :raises StorageFull: when Redis is out of memory (maxmemory reached).
        :raises StorageError: when Redis is unreachable or refuses the write.
        """
        item = new_entry(data, content_type, ttl, self._clock())
        name = PREFIX + key
        with self._errors():
            # One transaction: DEL so an overwrite cannot keep stray fields, HSET, EXPIRE.
            # A single SET of a packed value was rejected: the hash stays readable in redis-cli.
            with self._client.pipeline(transaction=True) as pipe:
                pipe.delete(name)
                pipe.hset(name, mapping={"data": item.data, "type": content_type,
                                         "created": repr(item.created),
                                         "expires": repr(item.expires)})
                if ttl != KEEP_FOREVER:  # for ever: only maxmemory (with an LRU policy) evicts
                    pipe.expire(name, ttl)
                pipe.execute()
        return item

    def get(self, key: str) -> StoredImage | None:
        """Return the entry, or None when it is missing or expired.

        :raises StorageError: when Redis is unreachable.
        """
        with self._errors():
            fields: dict[bytes, bytes] = self._client.hgetall(PREFIX + key)  # type: ignore[assignment]
        if not all(name in fields for name in FIELDS):
            return None
        try:
            item = StoredImage(fields[b"data"], fields[b"type"].decode(),
                               float(fields[b"created"]), float(fields[b"expires"]))
        except (ValueError, UnicodeDecodeError):
            return None  # not written by put(): treat as missing rather than serve garbage
        if item.expires <= self._clock():
            return None
        return item

    def delete(self, key: str) -> None:
        """Remove the entry if present.

        :raises StorageError: when Redis is unreachable.
        """
        with self._errors():
            self._client.delete(PREFIX + key)

    def ping(self) -> None:
        """Check that Redis accepts a write now (a PING alone would miss a full or read-only one).

        :raises StorageFull: when Redis is out of memory.
        :raises StorageError: when Redis is unreachable, read-only or refuses the credentials.
        """
        with self._errors():
            self._client.set(PING_KEY, b"1", ex=60)

    def close(self) -> None:
        """Close the pooled connections (the pool reconnects when used again)."""
        self._client.close()

    def __repr__(self) -> str:
        return f"RedisStore({redact(self._url, self._url)!r})"

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn redis-py errors into StorageError / StorageFull without leaking the password."""
        try:
            yield
        except redis.AuthenticationError as exc:
            raise StorageError(
                "Image storage (Redis) refused the credentials: check the user and password in "
                "STORAGE_URL.") from exc
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            # AuthenticationError is a ConnectionError too, hence the order of these clauses.
            raise StorageError(
                f"Image storage (Redis) is unreachable: {self._reason(exc)}. Check that Redis "
                "is running and that STORAGE_URL points at it.") from exc
        except redis.ResponseError as exc:
            text = str(exc)
            if isinstance(exc, redis.exceptions.OutOfMemoryError) or "OOM" in text:
                raise StorageFull(
                    "Image storage is full: Redis reached its maxmemory. Raise maxmemory, or "
                    "lower IMAGE_EXPIRATION so images leave sooner.") from exc
            if isinstance(exc, redis.exceptions.ReadOnlyError) or "READONLY" in text:
                raise StorageError(
                    "Image storage (Redis) is a read-only replica: point STORAGE_URL at the "
                    "primary.") from exc
            if isinstance(exc, redis.exceptions.NoPermissionError) or "NOPERM" in text:
                raise StorageError(
                    "Image storage (Redis) denied a command: give the STORAGE_URL user access "
                    "to the keys flux-worker:* and to HSET, HGETALL, EXPIRE, DEL, SET.") from exc
            raise StorageError(f"Image storage (Redis) failed: {self._reason(exc)}.") from exc
        except redis.RedisError as exc:
            raise StorageError(f"Image storage (Redis) failed: {self._reason(exc)}.") from exc

    def _reason(self, exc: Exception) -> str:
        text = redact(str(exc) or type(exc).__name__, self._url).rstrip(".")
        return text if len(text) <= 200 else text[:200] + "..."
