"""Images kept in an S3-compatible bucket (AWS S3, Cloudflare R2, MinIO) through boto3.

One object per image, `<prefix><key>`, with its content type as the object's Content-Type and
its times and size as user metadata (`x-amz-meta-created`, `-expires`, `-size`). Object stores
have no per-object expiry that acts at once (lifecycle rules run about daily), so every read
compares `expires` with the clock: an expired object is refused at once and deleted on the spot
(lazily); the bucket's lifecycle rule (README) removes the ones nobody asks for again.

The object also carries Cache-Control and Expires headers, so links that point straight at the
bucket (IMAGE_LINKS=direct or presigned) are cached no longer than the image lives.

Errors become StorageError with a message that names the problem (endpoint unreachable, bucket
missing, key refused) and never the secret key.
"""

from __future__ import annotations

import contextlib
import io
import time
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
)

from ..errors import StorageError
from .base import KEEP_FOREVER, NEVER, ImageFile, StoredImage, new_entry, seconds_left
from .links import MAX_PRESIGN_SECONDS
from .location import S3Options

PING_NAME = ".flux-worker-ping"  # never a valid image key (it starts with '.')
# Connections per process: one per gunicorn thread that may store or serve at once.
POOL_SIZE = 128
_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken",
                     "ExpiredToken", "InvalidClientTokenId"}
_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}


class _Body(io.RawIOBase):
    """A streamed object body as a plain readable file, read in chunks and never all at once.

    Without a fileno(), so a server's file wrapper reads it instead of trying sendfile() on
    the socket underneath.
    """

    def __init__(self, body: Any):
        super().__init__()
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        chunk = self._body.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


class S3Store:
    """A store in one bucket under a key prefix, through a pooled, thread-safe boto3 client."""

    kind = "s3"

    def __init__(self, bucket: str, prefix: str, options: S3Options, *,
                 clock: Callable[[], float] = time.time, connect_timeout: float = 3.0,
                 read_timeout: float = 10.0):
        """Create the client; nothing connects until the first request."""
        self.bucket = bucket
        self.prefix = prefix
        self.options = options
        self._clock = clock
        config = BotoConfig(
            signature_version="s3v4", connect_timeout=connect_timeout,
            read_timeout=read_timeout, max_pool_connections=POOL_SIZE,
            # Two attempts: a pooled connection the far end closed is replaced at once, and an
            # outage fails within seconds instead of boto3's default of several backed-off tries.
            retries={"max_attempts": 2, "mode": "standard"},
            # Path-style addressing works with every S3-compatible endpoint (MinIO needs it);
            # AWS itself keeps its default (virtual-hosted).
            s3={"addressing_style": "path" if options.endpoint_url else "auto"},
            # Checksums only where the API requires them: R2 and older MinIO refuse some of
            # the CRC headers that recent boto3 sends by default.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required")
        self._client = boto3.session.Session().client(
            "s3", region_name=options.region or None, endpoint_url=options.endpoint_url or None,
            aws_access_key_id=options.access_key_id or None,
            aws_secret_access_key=options.secret_access_key or None, config=config)

    def object_key(self, key: str) -> str:
        """The object's name in the bucket."""
        return self.prefix + key

    def put(self, key: str, data: bytes, content_type: str, ttl: int) -> StoredImage:
        """Store `data` under `key` for `ttl` seconds (KEEP_FOREVER: until the bucket's rule).

        :raises StorageError: when the bucket is unreachable, missing or refuses the write.
        """
        item = new_entry(data, content_type, ttl, self._clock())
        extra: dict[str, Any] = {}
        if ttl != KEEP_FOREVER:
            extra["Expires"] = datetime.fromtimestamp(item.expires, timezone.utc)
        with self._errors("store an image in"):
            self._client.put_object(
                Bucket=self.bucket, Key=self.object_key(key), Body=item.data,
                ContentType=content_type,
                CacheControl=f"public, max-age={seconds_left(item.expires, item.created)}, "
                             "immutable",
                Metadata={"created": repr(item.created),
                          "expires": "never" if item.expires == NEVER else repr(item.expires),
                          "size": str(len(item.data))},
                **extra)
        return item

    def get(self, key: str) -> StoredImage | None:
        """Return the entry, or None when it is missing or expired.

        :raises StorageError: when the bucket cannot be read.
        """
        opened = self.open(key)
        if opened is None:
            return None
        with opened.file:
            with self._errors("read an image from"):
                data = opened.file.read()
        return StoredImage(data, opened.content_type, opened.created, opened.expires)

    def open(self, key: str) -> ImageFile | None:
        """Return the entry as a stream straight from the bucket, or None when missing or expired.

        :raises StorageError: when the bucket cannot be read.
        """
        with self._errors("read an image from"):
            try:
                answer = self._client.get_object(Bucket=self.bucket, Key=self.object_key(key))
            except ClientError as exc:
                if _code(exc) in _MISSING_CODES:
                    return None
                raise
        body = answer["Body"]
        meta = _times(answer.get("Metadata") or {})
        if meta is None or meta[1] <= self._clock():
            body.close()
            if meta is not None:
                self._forget(key)
            return None
        return ImageFile(_Body(body), int(answer["ContentLength"]),  # type: ignore[arg-type]
                         answer.get("ContentType") or "application/octet-stream", *meta)

    def delete(self, key: str) -> None:
        """Remove the entry if present.

        :raises StorageError: when the bucket cannot be written.
        """
        with self._errors("delete an image from"):
            self._client.delete_object(Bucket=self.bucket, Key=self.object_key(key))

    def ping(self) -> None:
        """Check that the bucket is reachable and writable now: a tiny write and delete.

        :raises StorageError: naming the problem (endpoint, bucket, credentials, permission).
        """
        with self._errors("check"):
            name = self.prefix + PING_NAME
            self._client.put_object(Bucket=self.bucket, Key=name, Body=b"")
            self._client.delete_object(Bucket=self.bucket, Key=name)

    def presigned_url(self, key: str, seconds: int) -> str:
        """A GET URL for the object, valid `seconds` (capped at SigV4's 7 days)."""
        seconds = max(1, min(seconds, MAX_PRESIGN_SECONDS))
        return self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self.object_key(key)},
            ExpiresIn=seconds)

    def close(self) -> None:
        """Close the pooled connections."""
        self._client.close()

    def __repr__(self) -> str:
        endpoint = self.options.endpoint_url or "AWS"
        return f"S3Store('s3://{self.bucket}/{self.prefix}', endpoint={endpoint!r})"

    def _forget(self, key: str) -> None:
        """Delete an expired object now; a failure only leaves it to the lifecycle rule."""
        with contextlib.suppress(StorageError):
            self.delete(key)

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn boto3 errors into StorageError naming the problem, never the secret."""
        where = f"Image storage (S3 bucket {self.bucket!r}) could not {action} the bucket"
        try:
            yield
        except StorageError:
            raise
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise StorageError(
                f"{where}: no credentials. Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY."
            ) from exc
        except ConnectionError as exc:  # connect and read timeouts, refused, DNS, TLS
            endpoint = self.options.endpoint_url or "AWS S3"
            raise StorageError(
                f"{where}: the endpoint {endpoint} is unreachable ({type(exc).__name__}). "
                "Check S3_ENDPOINT_URL and the network.") from exc
        except ClientError as exc:
            code = _code(exc)
            if code == "NoSuchBucket":
                raise StorageError(
                    f"{where}: the bucket does not exist. Create it, or fix the bucket name in "
                    "STORAGE_URL.") from exc
            if code in _CREDENTIAL_CODES:
                raise StorageError(
                    f"{where}: the endpoint refused the credentials ({code}). Check "
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.") from exc
            if code in ("AccessDenied", "403", "Forbidden"):
                raise StorageError(
                    f"{where}: access denied. Give the key permission to read, write and "
                    "delete objects in the bucket (R2: an Object Read & Write token).") from exc
            if code in ("PermanentRedirect", "AuthorizationHeaderMalformed", "301"):
                raise StorageError(
                    f"{where}: the bucket is in another region. Set AWS_REGION to its "
                    "region.") from exc
            raise StorageError(f"{where}: {code or 'error'} "
                               f"(HTTP {_status(exc)}).") from exc
        except BotoCoreError as exc:
            raise StorageError(f"{where}: {type(exc).__name__}.") from exc


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _times(meta: dict[str, str]) -> tuple[float, float] | None:
    """(created, expires) from an object's metadata, or None when put() did not write it."""
    try:
        created = float(meta["created"])
        expires = NEVER if meta["expires"] == "never" else float(meta["expires"])
    except (KeyError, ValueError):
        return None  # not written by put(): treat as missing rather than serve garbage
    return created, expires
