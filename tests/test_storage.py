"""One contract suite for every image store (memory, disk, a real Redis, S3 on a moto server),
plus each one's failures.

Expiry is tested with a fake clock, never with sleep; failures the test machine cannot produce
(a full disk, a read-only database while running as root) are injected with mocks.
"""

from __future__ import annotations

import base64
import errno
import multiprocessing
import os
import shutil
import sqlite3
import string
import threading
from collections import namedtuple
from unittest import mock

import diskcache
import pytest
import redis as redis_py
from hypothesis import given
from hypothesis import strategies as st

from flux_worker.errors import StorageError, StorageFull
from flux_worker.storage import (
    KEEP_FOREVER,
    ImageStore,
    StoredImage,
    is_valid_key,
    new_key,
    storage_from_url,
)
from flux_worker.storage.base import FOREVER_TTL
from flux_worker.storage.disk import DiskStore
from flux_worker.storage.memory import MemoryStore
from flux_worker.storage.redis import RedisStore
from flux_worker.storage.s3 import S3Store
from tests.support import FakeClock, RedisServer

MAX_BYTES = 1 << 20
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4


@pytest.fixture
def clock():
    """A fake clock starting at the real time (diskcache and Redis expire by wall clock)."""
    return FakeClock()


def make_store(kind: str, request, clock, tmp_path) -> ImageStore:
    """Build a store of `kind` for a test."""
    if kind == "memory":
        return MemoryStore(max_bytes=MAX_BYTES, clock=clock)
    if kind == "disk":
        return DiskStore(tmp_path / "images", max_bytes=MAX_BYTES, clock=clock)
    if kind == "s3":
        location = request.getfixturevalue("s3_location")
        server = request.getfixturevalue("s3_server")
        return S3Store(location.bucket, location.prefix, server.options, clock=clock)
    return RedisStore(request.getfixturevalue("redis_url"), clock=clock)


@pytest.fixture(params=["memory", "disk", "redis", "s3"])
def store(request, clock, tmp_path):
    """Each backend in turn, with the fake clock."""
    built = make_store(request.param, request, clock, tmp_path)
    yield built
    built.close()


@pytest.fixture(params=["memory", "disk"])
def bounded_store(request, clock, tmp_path):
    """The backends bounded by STORAGE_MAX_BYTES."""
    built = make_store(request.param, request, clock, tmp_path)
    yield built
    built.close()


# The contract, for every backend.

def test_store_satisfies_the_protocol(store):
    assert isinstance(store, ImageStore)
    assert store.kind in ("memory", "disk", "redis", "s3")


@pytest.mark.parametrize("size", [0, 1000, 100_000])
def test_put_then_get_returns_the_same_bytes_and_content_type(store, clock, size):
    key = new_key()
    data = os.urandom(size)
    stored = store.put(key, data, "image/png", 60)
    assert stored == StoredImage(data, "image/png", clock.now, clock.now + 60)
    assert store.get(key) == stored


def test_get_of_a_missing_key_is_none(store):
    assert store.get(new_key()) is None


def test_entry_lives_until_its_ttl_then_is_gone(store, clock):
    key = new_key()
    store.put(key, JPEG, "image/jpeg", 60)
    clock.advance(59.5)
    found = store.get(key)
    assert found is not None and found.data == JPEG
    assert found.ttl(clock()) == 0 and found.ttl(clock() - 10) == 10
    clock.advance(0.5)
    assert store.get(key) is None


def test_stored_image_ttl_counts_whole_seconds_never_negative():
    item = StoredImage(b"x", "image/jpeg", created=100.0, expires=160.5)
    assert item.ttl(100.0) == 60
    assert item.ttl(160.4) == 0
    assert item.ttl(1000.0) == 0


def test_delete_removes_the_entry_and_ignores_missing_keys(store):
    key = new_key()
    store.put(key, JPEG, "image/jpeg", 60)
    store.delete(key)
    assert store.get(key) is None
    store.delete(key)
    store.delete(new_key())


def test_put_overwrites_an_existing_key(store, clock):
    key = new_key()
    store.put(key, b"first", "image/jpeg", 60)
    clock.advance(5)
    second = store.put(key, b"second", "image/webp", 30)
    assert store.get(key) == second
    clock.advance(30)
    assert store.get(key) is None


def test_keys_do_not_collide(store):
    keys = [new_key() for _ in range(20)]
    for i, key in enumerate(keys):
        store.put(key, b"image %d" % i, "image/png", 60)
    assert [store.get(key).data for key in keys] == [b"image %d" % i for i in range(20)]


def test_ping_passes_on_a_working_store(store):
    store.ping()


def test_put_rejects_a_negative_ttl(store):
    with pytest.raises(ValueError):
        store.put(new_key(), JPEG, "image/jpeg", -1)


def test_a_ttl_of_zero_keeps_the_image_for_ever(store, clock):
    key = new_key()
    stored = store.put(key, JPEG, "image/jpeg", KEEP_FOREVER)
    assert stored.forever
    clock.advance(20 * 365 * 86400)
    found = store.get(key)
    assert found == stored and found.forever and found.ttl(clock()) == FOREVER_TTL
    opened = store.open(key)
    with opened.file:
        assert opened.forever and opened.file.read() == JPEG


def test_many_threads_put_and_get_without_mixing_entries(store):
    shared = new_key()
    versions = {bytes([i]) * 40_000 for i in range(8)}  # over 32 KB: diskcache files them
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(15):
                key = new_key()
                data = b"%d-%d-" % (n, i) + JPEG
                store.put(key, data, "image/jpeg", 60)
                assert store.get(key).data == data
                store.put(shared, bytes([n]) * 40_000, f"image/t{n}", 60)
                found = store.get(shared)
                if found is None and store.kind == "disk":
                    # diskcache deletes a replaced value's file at once, so a reader racing
                    # an overwrite can miss it; the service never reuses a key.
                    continue
                # Never a half-written entry: bytes and content type from the same put.
                assert found.data in versions and found.content_type == f"image/t{found.data[0]}"
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]


# The byte bound (memory and disk; Redis is bounded by its own maxmemory).

def test_the_byte_bound_evicts_the_oldest_images(bounded_store):
    size = 64 << 10
    keys = [new_key() for _ in range(48)]  # three times the bound
    for i, key in enumerate(keys):
        bounded_store.put(key, bytes([i]) * size, "image/jpeg", 600)
    kept = [key for key in keys if bounded_store.get(key) is not None]
    assert bounded_store.get(keys[0]) is None
    assert bounded_store.get(keys[-1]).data == bytes([47]) * size
    # disk's bound is soft (it counts the SQLite file and culls after the write).
    assert 0 < len(kept) * size <= MAX_BYTES + size


def test_images_kept_for_ever_are_never_evicted_a_full_store_refuses_new_ones(bounded_store,
                                                                             clock):
    """IMAGE_EXPIRATION=0: one key filling the store must not push out another key's images."""
    size = 64 << 10
    first = new_key()
    bounded_store.put(first, b"\x01" * size, "image/jpeg", KEEP_FOREVER)   # someone else's
    bounded_store.ping()
    stored, refused = 0, 0
    for i in range(48):                                   # three times the bound
        try:
            bounded_store.put(new_key(), bytes([i]) * size, "image/jpeg", KEEP_FOREVER)
            stored += 1
        except StorageFull as exc:
            refused += 1
            assert exc.status == 507 and "IMAGE_EXPIRATION=0" in exc.message
    assert bounded_store.get(first).data == b"\x01" * size
    assert 0 < stored and (stored + 1) * size <= MAX_BYTES and refused == 48 - stored
    # Known to be full before the next generation is bought upstream...
    with pytest.raises(StorageFull):
        bounded_store.ping()
    # ...and usable again once an image is gone.
    bounded_store.delete(first)
    bounded_store.ping()
    bounded_store.put(new_key(), b"\x02" * size, "image/jpeg", KEEP_FOREVER)


def test_expired_images_make_room_for_one_kept_for_ever(bounded_store, clock):
    size = 64 << 10
    for i in range(MAX_BYTES // size):
        bounded_store.put(new_key(), bytes([i]) * size, "image/jpeg", 60)
    clock.advance(61)
    key = new_key()
    bounded_store.put(key, b"\x03" * size, "image/jpeg", KEEP_FOREVER)
    assert bounded_store.get(key).data == b"\x03" * size


def test_an_image_larger_than_the_bound_is_refused_as_full(bounded_store):
    with pytest.raises(StorageFull, match="STORAGE_MAX_BYTES"):
        bounded_store.put(new_key(), b"x" * (MAX_BYTES + 1), "image/jpeg", 60)


# Disk: shared between processes, failures mapped to StorageError / StorageFull.

def test_two_disk_stores_on_one_directory_share_images(tmp_path, clock):
    first = DiskStore(tmp_path, max_bytes=MAX_BYTES, clock=clock)
    second = DiskStore(tmp_path, max_bytes=MAX_BYTES, clock=clock)
    key = new_key()
    first.put(key, JPEG, "image/jpeg", 60)
    assert second.get(key).data == JPEG
    second.delete(key)
    assert first.get(key) is None


def _child_process(directory: str, key: str, child_key: str, results) -> None:
    """Read what the parent stored, and store something for the parent (runs in a new process)."""
    store = DiskStore(directory, max_bytes=MAX_BYTES)
    found = store.get(key)
    store.put(child_key, b"from the child" * 3000, "image/webp", 60)
    store.close()
    results.put(None if found is None else (found.data, found.content_type))


def test_another_process_reads_and_writes_the_same_disk_store(tmp_path):
    store = DiskStore(tmp_path, max_bytes=MAX_BYTES)
    key, child_key = new_key(), new_key()
    big = os.urandom(50_000)
    store.put(key, big, "image/png", 60)
    context = multiprocessing.get_context("spawn")  # a fresh interpreter, like a gunicorn worker
    results = context.Queue()
    child = context.Process(target=_child_process, args=(str(tmp_path), key, child_key, results))
    child.start()
    try:
        assert results.get(timeout=20) == (big, "image/png")
    finally:
        child.join(20)
    assert child.exitcode == 0
    assert store.get(child_key) == StoredImage(b"from the child" * 3000, "image/webp",
                                               *_times(store.get(child_key)))


def _times(item: StoredImage) -> tuple[float, float]:
    return item.created, item.expires


def test_disk_keeps_large_images_as_plain_files(tmp_path, clock):
    # Lets a later change serve big images straight from the file (Cache.get(read=True)).
    store = DiskStore(tmp_path, max_bytes=MAX_BYTES, clock=clock)
    key = new_key()
    data = os.urandom(100_000)
    store.put(key, data, "image/jpeg", 60)
    with diskcache.Cache(str(tmp_path)) as cache:
        handle, tag = cache.get(key, read=True, tag=True)
        with handle:
            assert handle.read() == data
    assert "image/jpeg" in tag


def test_disk_spreads_image_files_over_one_level_of_directories(tmp_path):
    store = DiskStore(tmp_path, max_bytes=MAX_BYTES * 8)
    images = {new_key(): os.urandom(40_000) + b"\n" * 100 for _ in range(20)}
    for key, data in images.items():
        store.put(key, data, "image/png", 60)
    files = [p for p in tmp_path.rglob("*.val")]
    assert len(files) == 20
    assert all(p.parent.parent == tmp_path and len(p.parent.name) == 2 for p in files)
    for key, data in images.items():
        assert store.get(key).data == data


def test_disk_creates_the_directory(tmp_path):
    store = DiskStore(tmp_path / "a" / "b", max_bytes=MAX_BYTES)
    store.ping()
    assert (tmp_path / "a" / "b").is_dir()


def test_disk_that_cannot_create_its_directory_is_a_storage_error(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StorageError, match="could not open"):
        DiskStore(tmp_path / "file" / "images", max_bytes=MAX_BYTES)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only directories anyway")
def test_disk_in_a_read_only_directory_is_a_storage_error(tmp_path):
    store = DiskStore(tmp_path, max_bytes=MAX_BYTES)
    os.chmod(tmp_path / "cache.db", 0o444)
    os.chmod(tmp_path, 0o555)
    try:
        with pytest.raises(StorageError):
            store.put(new_key(), os.urandom(50_000), "image/jpeg", 60)
    finally:
        os.chmod(tmp_path, 0o755)


@pytest.mark.parametrize("error, expected, words", [
    (sqlite3.OperationalError("database or disk is full"), StorageFull, "free disk space"),
    (OSError(errno.ENOSPC, "No space left on device"), StorageFull, "STORAGE_MAX_BYTES"),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), StorageFull, "free disk space"),
    (sqlite3.OperationalError("attempt to write a readonly database"), StorageError, "read-only"),
    (OSError(errno.EROFS, "Read-only file system"), StorageError, "writable"),
    (OSError(errno.EACCES, "Permission denied"), StorageError, "writable"),
    (sqlite3.OperationalError("disk I/O error"), StorageError, "disk I/O error"),
    (sqlite3.DatabaseError("database disk image is malformed"), StorageError, "delete"),
    (diskcache.Timeout(), StorageError, "locked"),
])
def test_disk_write_failures_are_mapped(tmp_path, error, expected, words):
    store = DiskStore(tmp_path, max_bytes=MAX_BYTES)
    with mock.patch.object(diskcache.Cache, "set", side_effect=error):
        with pytest.raises(expected, match=words) as caught:
            store.put(new_key(), JPEG, "image/jpeg", 60)
        with pytest.raises(expected):
            store.ping()
    if expected is StorageError:
        assert not isinstance(caught.value, StorageFull)
    assert caught.value.__cause__ is error


def test_disk_full_while_writing_the_image_file_is_storage_full(tmp_path):
    store = DiskStore(tmp_path, max_bytes=MAX_BYTES)
    no_space = OSError(errno.ENOSPC, "No space left on device")
    with mock.patch("flux_worker.storage.disk.open", create=True, side_effect=no_space):
        with pytest.raises(StorageFull, match="Image storage is full"):
            store.put(new_key(), os.urandom(50_000), "image/jpeg", 60)
    store.put(new_key(), os.urandom(50_000), "image/jpeg", 60)  # works again once space is back


def test_disk_read_failures_are_storage_errors(tmp_path):
    store = DiskStore(tmp_path, max_bytes=MAX_BYTES)
    with mock.patch.object(diskcache.Cache, "get",
                           side_effect=sqlite3.OperationalError("unable to open database file")):
        with pytest.raises(StorageError, match="unable to open database file"):
            store.get(new_key())


FULL_DISK = namedtuple("usage", "total used free")(10 << 30, 10 << 30, 1000)


def test_disk_ping_reports_a_nearly_full_disk(tmp_path):
    store = DiskStore(tmp_path, max_bytes=MAX_BYTES)
    with mock.patch("flux_worker.storage.disk.shutil.disk_usage", return_value=FULL_DISK):
        with pytest.raises(StorageFull, match="free disk space"):
            store.ping()


def test_disk_refusing_to_begin_a_write_on_a_full_disk_is_storage_full(tmp_path):
    # diskcache turns any failure to BEGIN a write into Timeout, dropping SQLite's reason.
    store = DiskStore(tmp_path, max_bytes=MAX_BYTES)
    with mock.patch.object(diskcache.Cache, "set", side_effect=diskcache.Timeout()), \
            mock.patch("flux_worker.storage.disk.shutil.disk_usage", return_value=FULL_DISK):
        with pytest.raises(StorageFull):
            store.put(new_key(), JPEG, "image/jpeg", 60)


def test_disk_ping_reports_a_removed_directory(tmp_path):
    store = DiskStore(tmp_path / "images", max_bytes=MAX_BYTES)
    store.close()
    shutil.rmtree(tmp_path / "images")
    with pytest.raises(StorageError, match="could not check"):
        store.ping()


# Redis: a real server, stopped and restarted; the password never shows.

def test_redis_outage_is_a_storage_error_and_the_same_store_recovers(redis_server):
    store = RedisStore(redis_server.url, connect_timeout=1)
    key = new_key()
    store.put(key, JPEG, "image/jpeg", 60)
    redis_server.stop()
    for call in (lambda: store.put(new_key(), JPEG, "image/jpeg", 60),
                 lambda: store.get(key), store.ping, lambda: store.delete(key)):
        with pytest.raises(StorageError, match=r"Image storage \(Redis\) is unreachable") as caught:
            call()
        assert not isinstance(caught.value, StorageFull)
    redis_server.start()
    store.ping()
    assert store.get(key) is None  # nothing persisted across the restart
    store.put(key, JPEG, "image/jpeg", 60)
    assert store.get(key).data == JPEG
    store.close()


def test_redis_errors_never_show_the_password():
    with RedisServer(password="secretpw") as server:
        store = RedisStore(server.url)
        key = new_key()
        store.put(key, JPEG, "image/jpeg", 60)
        assert store.get(key).data == JPEG
        messages = []
        for url in (server.url.replace("secretpw", "wrongpw"),
                    server.url.replace(":secretpw@", "")):
            with pytest.raises(StorageError, match="credentials|refused|NOAUTH") as caught:
                RedisStore(url).ping()
            messages.append(str(caught.value))
        server.stop()
        with pytest.raises(StorageError, match="unreachable") as caught:
            store.get(key)
        messages += [str(caught.value), repr(caught.value.__cause__), repr(store)]
    for message in messages:
        assert "secretpw" not in message and "wrongpw" not in message


def test_redis_out_of_memory_is_storage_full(redis_server):
    store = RedisStore(redis_server.url)
    admin = redis_py.Redis.from_url(redis_server.url)
    admin.config_set("maxmemory", "1")  # noeviction: every write is refused with OOM
    try:
        with pytest.raises(StorageFull, match="maxmemory"):
            store.put(new_key(), JPEG, "image/jpeg", 60)
        with pytest.raises(StorageFull):
            store.ping()
    finally:
        admin.config_set("maxmemory", "0")
        admin.close()
    store.ping()


def test_redis_entry_kept_for_ever_has_no_ttl(redis_url):
    store = RedisStore(redis_url)
    key = new_key()
    store.put(key, JPEG, "image/jpeg", KEEP_FOREVER)
    admin = redis_py.Redis.from_url(redis_url)
    assert admin.ttl(f"flux-worker:image:{key}") == -1  # exists, no expiry
    admin.close()
    store.close()


def test_redis_entry_has_native_expiry_and_one_hash(redis_url, clock):
    store = RedisStore(redis_url, clock=clock)
    key = new_key()
    store.put(key, JPEG, "image/jpeg", 60)
    admin = redis_py.Redis.from_url(redis_url)
    name = f"flux-worker:image:{key}"
    assert 55 <= admin.ttl(name) <= 60
    assert admin.hget(name, "type") == b"image/jpeg"
    admin.hdel(name, "type")  # an entry missing a field is never served
    assert store.get(key) is None
    admin.close()


# storage_from_url.

def test_storage_from_url_memory(clock):
    built = storage_from_url("memory://", max_bytes=MAX_BYTES, clock=clock)
    assert isinstance(built, MemoryStore) and built.max_bytes == MAX_BYTES


def test_storage_from_url_disk_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    built = storage_from_url("disk://data/images", max_bytes=MAX_BYTES)
    assert isinstance(built, DiskStore)
    assert built.directory == str(tmp_path / "data" / "images")
    assert (tmp_path / "data" / "images").is_dir()


def test_storage_from_url_disk_absolute(tmp_path):
    built = storage_from_url(f"disk://{tmp_path}/abs", max_bytes=MAX_BYTES)
    assert str(tmp_path).startswith("/")
    assert built.directory == str(tmp_path / "abs") and built.kind == "disk"


def test_storage_from_url_redis(redis_url, clock):
    built = storage_from_url(redis_url, max_bytes=MAX_BYTES, clock=clock)
    assert isinstance(built, RedisStore)
    key = new_key()
    built.put(key, JPEG, "image/jpeg", 60)
    assert built.get(key).data == JPEG
    built.close()


@pytest.mark.parametrize("url, connection_class", [
    ("rediss://:pw@cache.example:6380/1", redis_py.SSLConnection),
    ("unix:///run/redis/redis.sock?db=2", redis_py.UnixDomainSocketConnection),
    ("REDIS://cache.example:6379/0", redis_py.Connection),
])
def test_storage_from_url_redis_variants_build_without_connecting(url, connection_class):
    built = storage_from_url(url, max_bytes=MAX_BYTES)
    assert built.kind == "redis"
    assert built._client.connection_pool.connection_class is connection_class
    assert "pw@" not in repr(built)


@pytest.mark.parametrize("url", [
    "ftp://example.com/images", "data", "", "memcached://:hunter2@host:11211",
    "memory://somewhere", "disk://",
])
def test_storage_from_url_rejects_unknown_or_malformed_urls(url):
    with pytest.raises(ValueError) as caught:
        storage_from_url(url, max_bytes=MAX_BYTES)
    message = str(caught.value)
    assert "hunter2" not in message
    if url and "hunter2" not in url:
        assert url in message


# Keys.

def test_new_key_has_128_random_bits_and_is_valid():
    keys = {new_key() for _ in range(1000)}
    assert len(keys) == 1000
    for key in keys:
        assert is_valid_key(key)
        assert len(base64.urlsafe_b64decode(key + "==")) >= 16


@pytest.mark.parametrize("key", [
    "", "../etc/passwd", "abc", "a" * 21, "a" * 65, "a" * 21 + "/", "a" * 21 + ".",
    "a" * 10 + "/" + "a" * 11, "a" * 21 + "é", None,
    "a" * 22 + "\n",
])
def test_is_valid_key_rejects_malformed_keys(key):
    assert not is_valid_key(key)


KEY_ALPHABET = string.ascii_letters + string.digits + "-_"


@given(st.text(min_size=22, max_size=64).filter(lambda s: any(c not in KEY_ALPHABET for c in s)))
def test_is_valid_key_rejects_any_foreign_character(key):
    assert not is_valid_key(key)


@pytest.mark.parametrize("size", [10, 200_000])
def test_open_hands_out_the_bytes_as_a_file(store, clock, size):
    data = os.urandom(size)
    store.put("k" * 22, data, "image/png", ttl=60)
    opened = store.open("k" * 22)
    try:
        assert opened.file.read() == data and opened.size == size
        assert opened.content_type == "image/png" and opened.ttl(clock()) == 60
    finally:
        opened.file.close()
    assert store.open("m" * 22) is None
    clock.advance(61)
    assert store.open("k" * 22) is None


def test_disk_writers_open_no_sqlite_connection_of_their_own(tmp_path):
    # diskcache keeps a connection per thread that touches it (~0.3-0.4 MiB each); writes run
    # on the store's own thread, so request threads that only store images open none.
    store = DiskStore(tmp_path / "images", max_bytes=1 << 24)
    opened: list[bool] = []

    def put(i: int) -> None:
        store.put(new_key(), b"x" * 40_000, "image/jpeg", 60)
        opened.append(getattr(store._shared.cache._local, "con", None) is not None)

    try:
        threads = [threading.Thread(target=put, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert opened == [False] * 8
    finally:
        store.close()
