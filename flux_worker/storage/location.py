"""Where images and counters live: STORAGE_URL and COUNTERS_URL parsed once into typed values.

The store factory, the rate limiter's counter storage and gunicorn.conf.py all read these values,
never the raw URLs, so they cannot disagree about a scheme's case, `~` or a relative path.

    memory://                     this process only
    disk://data, disk://~/x       a directory: relative paths are resolved against the working
    disk:///var/lib/flux-worker   directory at start, `~` against $HOME; shared by one host
    redis://[:pw@]host:port/db    shared by every host (rediss:// for TLS, unix:///path.sock)
    s3://bucket/optional/prefix   images only: any S3-compatible object store (S3, R2, MinIO)

This module imports nothing beyond the standard library, so gunicorn.conf.py can use it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..redaction import redact as redact_secrets
from ..redaction import url_secrets

MEMORY, DISK, REDIS, S3 = "memory", "disk", "redis", "s3"
REDIS_SCHEMES = ("redis", "rediss", "unix")
# Where counters go when the image storage cannot hold them (S3): relative to the working dir.
DEFAULT_COUNTERS_DIR = os.path.join("data", "counters")
# Counters sit beside the images in a disk store's directory, in a diskcache of their own.
COUNTERS_SUBDIR = "counters"
# S3's bucket naming rules (R2 and MinIO follow them): 3-63 lowercase letters, digits, . and -.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_STORAGE_FORMS = ("memory://, disk://<directory>, redis://host:port/db, rediss://host:port/db, "
                  "unix:///path/to/redis.sock or s3://bucket/optional/prefix")


@dataclass(frozen=True)
class StorageLocation:
    """The parsed STORAGE_URL: a scheme and what that scheme needs."""

    scheme: str        # memory, disk, redis or s3
    path: str = ""     # disk: the absolute directory
    url: str = ""      # redis: the URL as redis-py takes it (lowercase scheme)
    bucket: str = ""   # s3: the bucket
    prefix: str = ""   # s3: prepended to every object key, "" or ending in "/"

    @classmethod
    def parse(cls, raw: str) -> "StorageLocation":
        """Parse a STORAGE_URL.

        :raises ValueError: naming the URL (without its password) and the accepted forms.
        """
        scheme, sep, rest = raw.strip().partition("://")
        scheme = scheme.lower()
        if not sep:
            raise ValueError(f"unknown storage URL {redact(raw, raw)!r}: use {_STORAGE_FORMS}")
        if scheme == MEMORY:
            if rest.strip("/"):
                raise ValueError(f"memory:// takes no path, got {raw!r}")
            return cls(MEMORY)
        if scheme == DISK:
            return cls(DISK, path=_directory(rest, raw))
        if scheme in REDIS_SCHEMES:
            url = f"{scheme}://{rest}"  # redis-py wants a lowercase scheme
            try:
                # A port that is not a number fails here, at start, not on every request.
                _ = urlsplit(url).port
            except ValueError:
                raise ValueError(f"invalid Redis URL {redact(raw, raw)!r}: bad port") from None
            return cls(REDIS, url=url)
        if scheme == S3:
            bucket, _, prefix = rest.partition("/")
            if not _BUCKET.fullmatch(bucket):
                raise ValueError(
                    f"s3:// needs a bucket name (3-63 lowercase letters, digits, '.' or '-'), "
                    f"such as s3://my-images or s3://my-images/flux, got {redact(raw, raw)!r}")
            prefix = prefix.strip("/")
            return cls(S3, bucket=bucket, prefix=prefix + "/" if prefix else "")
        raise ValueError(f"unknown storage URL {redact(raw, raw)!r}: use {_STORAGE_FORMS}")

    @property
    def shared_by(self) -> str:
        """Who sees the same images: "process", "host" or "hosts"."""
        return {MEMORY: "process", DISK: "host"}.get(self.scheme, "hosts")

    def __str__(self) -> str:
        if self.scheme == DISK:
            return f"disk://{self.path}"
        if self.scheme == REDIS:
            return redact(self.url, self.url)
        if self.scheme == S3:
            return f"s3://{self.bucket}/{self.prefix}"
        return "memory://"

    def __repr__(self) -> str:
        return f"StorageLocation({str(self)!r})"  # never the password, even in a Config repr


@dataclass(frozen=True)
class CountersLocation:
    """The parsed COUNTERS_URL (or its default): where rate-limit and budget counters live."""

    scheme: str             # memory, disk or redis
    path: str = ""          # disk: the absolute directory of a diskcache of its own
    url: str = ""           # redis: the URL as redis-py takes it
    defaulted: bool = False  # chosen by default rather than set

    @classmethod
    def parse(cls, raw: str) -> "CountersLocation":
        """Parse a COUNTERS_URL: redis://, rediss://, unix://, memory://, disk://<dir> or a path.

        :raises ValueError: naming the URL (without its password) and the accepted forms.
        """
        text = raw.strip()
        if "://" not in text:
            return cls(DISK, path=_directory(text, raw))
        try:
            storage = StorageLocation.parse(text)
        except ValueError:
            storage = None
        if storage is None or storage.scheme == S3:
            raise ValueError(
                f"unknown counters URL {redact(raw, raw)!r}: use redis://host:port/db, "
                "rediss://host:port/db, unix:///path/to/redis.sock, memory://, disk://<directory> "
                "or a directory (object storage cannot hold counters)")
        return cls(storage.scheme, path=storage.path, url=storage.url)

    @classmethod
    def following(cls, storage: StorageLocation) -> "CountersLocation":
        """The default: beside the images when their store can count, else on local disk.

        Memory images live in one process, so their counters do too; object storage has no
        atomic increment, so S3 images get counters on this host's disk (start-up warns).
        """
        if storage.scheme == REDIS:
            return cls(REDIS, url=storage.url, defaulted=True)
        if storage.scheme == DISK:
            return cls(DISK, path=os.path.join(storage.path, COUNTERS_SUBDIR), defaulted=True)
        if storage.scheme == MEMORY:
            return cls(MEMORY, defaulted=True)
        return cls(DISK, path=os.path.abspath(DEFAULT_COUNTERS_DIR), defaulted=True)

    @property
    def shared_by_hosts(self) -> bool:
        """Whether every host pointing here shares the counts."""
        return self.scheme == REDIS

    def __str__(self) -> str:
        if self.scheme == DISK:
            return f"disk://{self.path}"
        if self.scheme == REDIS:
            return redact(self.url, self.url)
        return "memory://"

    def __repr__(self) -> str:
        return f"CountersLocation({str(self)!r}, defaulted={self.defaulted})"


@dataclass(frozen=True)
class S3Options:
    """How to reach an S3-compatible store (boto3's usual variables); empty: boto3's default."""

    region: str = ""
    endpoint_url: str = ""
    access_key_id: str = ""
    # The secret never reaches a log line, even through a repr of the configuration.
    secret_access_key: str = field(default="", repr=False)


def _directory(text: str, raw: str) -> str:
    """An absolute directory from a disk:// path: `~` expanded, relative to the working dir."""
    if not text.strip():
        raise ValueError(
            f"disk:// needs a directory, such as disk://data or disk:///var/lib/flux-worker, "
            f"got {raw!r}")
    # Resolved now, once, so a later chdir cannot move the store and every consumer agrees.
    return os.path.abspath(os.path.expanduser(text))


def redact(text: str, url: str) -> str:
    """Return `text` with the password of `url` (as written and percent-decoded) replaced."""
    return redact_secrets(text, url_secrets(url))
