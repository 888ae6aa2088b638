"""The start-up check of storage and counters: problems named once, in the log, before traffic.

Nothing here stops the start: a bucket or Redis that is down now may be up in a minute, and
/readyz answers 503 meanwhile. Configuration that cannot work is refused earlier, by Config.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from ..config import Config
from ..errors import StorageError
from ..storage import open_store
from ..storage.counters import redis_client
from ..storage.links import MAX_PRESIGN_SECONDS, PRESIGNED
from ..storage.location import MEMORY, REDIS, S3

ERROR, WARNING = "error", "warning"

# What gunicorn's `server.cfg.address` holds: (host, port) for TCP, a path for a Unix socket,
# a number for an inherited file descriptor.
Address = tuple[str, int] | str | int


def startup_problems(config: Config) -> list[tuple[str, str]]:
    """(level, message) for each problem of the storage configuration, checking the store live."""
    problems = [(WARNING, message) for message in advice(config)]
    try:
        store = open_store(config.storage, max_bytes=config.storage_max_bytes, s3=config.s3)
    except (ValueError, StorageError) as exc:
        return problems + [(ERROR, f"STORAGE_URL={config.storage}: {exc}")]
    try:
        store.ping()
    except StorageError as exc:
        problems.append((ERROR, f"STORAGE_URL={config.storage}: {exc.message} Until this is "
                                "fixed, /readyz answers 503 and generations answer 503."))
    finally:
        store.close()
    if config.counters.scheme == REDIS:
        problems += _counters_problems(config)
    return problems


def _counters_problems(config: Config) -> list[tuple[str, str]]:
    """Whether the Redis that holds the counters answers now."""
    import redis

    client = redis_client(config.counters)
    try:
        client.ping()
    except redis.RedisError as exc:
        reason = "refused the credentials" if isinstance(exc, redis.AuthenticationError) \
            else f"is unreachable ({type(exc).__name__})"
        return [(ERROR, f"COUNTERS_URL={config.counters}: Redis {reason}. Until this is fixed, "
                        "rate-limited generations answer 503.")]
    finally:
        client.close()
    return []


def advice(config: Config) -> list[str]:
    """Warnings about settings that work but may not do what the operator expects."""
    found = []
    if config.storage.scheme == S3 and config.counters.defaulted:
        found.append(
            f"Rate-limit counters are kept on this host's disk ({config.counters.path}) because "
            "object storage cannot count: several hosts will not share counts. Set "
            "COUNTERS_URL=redis://... to share them.")
    if config.image_links == PRESIGNED and (
            config.image_expiration == 0 or config.image_expiration > MAX_PRESIGN_SECONDS):
        kept = "for ever" if config.image_expiration == 0 else f"{config.image_expiration} s"
        found.append(
            f"IMAGE_LINKS=presigned: images are kept {kept}, but a presigned link is valid for at "
            "most 7 days (the limit of S3's SigV4 signatures), so links stop working after 7 "
            "days. Use IMAGE_LINKS=direct with S3_PUBLIC_BASE_URL, or IMAGE_LINKS=service, for "
            "links that last as long as the images.")
    if config.image_expiration == 0 and config.storage.scheme == REDIS:
        found.append(
            "IMAGE_EXPIRATION=0 with Redis storage: images never expire and fill Redis's memory. "
            "Set maxmemory with maxmemory-policy allkeys-lru, or use disk:// or s3:// storage.")
    if config.image_expiration == 0 and config.storage.scheme == MEMORY:
        found.append("IMAGE_EXPIRATION=0 with memory:// storage: images are still lost when the "
                     "process restarts.")
    return found


def exposure_warning(addresses: Iterable[Address], config: Config) -> str | None:
    """A warning when the service listens on every interface with no API_KEY (demo mode).

    With a real backend Config already refuses to start without API_KEY; the demo bills nobody,
    so it may run open, but whoever reaches the port can use it and fill its storage.
    """
    if config.auth_required:
        return None
    exposed = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
               for host, port in (a for a in addresses if isinstance(a, tuple))
               if _every_interface(host)]
    if not exposed:
        return None
    return (f"Listening on {', '.join(exposed)} (every network interface) without API_KEY: this "
            "demo is open to anyone who can reach the port, who can use it and fill its storage. "
            "Set API_KEY to require a key, or HOST=127.0.0.1 to listen on this machine only "
            "(behind a reverse proxy; in a container, publish the port on 127.0.0.1).")


def _every_interface(host: str) -> bool:
    """Whether a bind host is the unspecified address (0.0.0.0, ::, or empty: every interface)."""
    if not host:
        return True
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False  # a name such as localhost: bound to what it resolves to
