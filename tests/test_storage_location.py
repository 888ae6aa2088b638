"""STORAGE_URL and COUNTERS_URL parsed once: every form, and the store and the limiter agreeing.

Each STORAGE_URL form is built into the real service parts (`build_services`) and the test
checks where the images and the rate-limit counts actually land, not just the parsed value.
"""

from __future__ import annotations

import os
import runpy
import signal
import threading

import pytest
import redis as redis_py

from flux_worker.config import Config, ConfigError
from flux_worker.cost.throttle import DiskcacheStorage, RateLimiter
from flux_worker.errors import RateLimited, StorageError
from flux_worker.services import build_services
from flux_worker.serving.startup import advice, startup_problems
from flux_worker.storage import CountersLocation, StorageLocation, new_key
from flux_worker.storage.counters import REDIS_TIMEOUT, directory, redis_client
from flux_worker.storage.disk import DiskStore
from flux_worker.storage.memory import MemoryStore
from flux_worker.storage.redis import RedisStore
from tests.support import RedisServer, free_port

JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256))


@pytest.fixture
def place(tmp_path, monkeypatch):
    """A working directory and a $HOME of the test's own."""
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(home))
    return work, home


DISK_FORMS = [
    ("disk://data", "work/data"),
    ("DISK://data", "work/data"),
    ("Disk://./data/../images", "work/images"),
    ("disk://~/x", "home/x"),
    ("DISK://~/x", "home/x"),
    ("disk://{tmp}/abs", "abs"),
    ("DISK://{tmp}/abs", "abs"),
]


@pytest.mark.parametrize("url, where", DISK_FORMS)
def test_disk_forms_put_images_and_counts_in_the_same_directory(url, where, place, tmp_path):
    url = url.format(tmp=tmp_path)
    expected = str(tmp_path / where)
    config = Config.from_env({"STORAGE_URL": url, "RATE_LIMIT": "2/minute"})
    assert config.storage == StorageLocation("disk", path=expected)
    services = build_services(config)
    try:
        assert isinstance(services.store, DiskStore) and services.store.directory == expected
        storage = services.admission.limiter.storage
        assert isinstance(storage, DiskcacheStorage)
        assert storage.shared.cache.directory == os.path.join(expected, "counters")
        # Counts are really shared with a second instance built from the same URL: what a
        # second gunicorn worker process does.
        other = RateLimiter("2/minute", Config.from_env({"STORAGE_URL": url}).counters)
        services.admission.limiter.hit("client")
        other.hit("client")
        with pytest.raises(RateLimited):
            services.admission.limiter.hit("client")
        key = new_key()
        services.store.put(key, JPEG, "image/jpeg", 60)
        assert DiskStore(expected, max_bytes=1 << 20).get(key).data == JPEG
    finally:
        services.close()


@pytest.mark.parametrize("scheme", ["redis", "REDIS", "Redis"])
def test_redis_forms_put_images_and_counts_in_the_same_database(scheme, redis_url):
    url = redis_url.replace("redis://", f"{scheme}://").replace("/0", "/3")
    config = Config.from_env({"STORAGE_URL": url, "RATE_LIMIT": "5/minute"})
    assert config.storage.url == redis_url.replace("/0", "/3")
    assert config.counters == CountersLocation("redis", url=config.storage.url, defaulted=True)
    services = build_services(config)
    admin = redis_py.Redis.from_url(config.storage.url)
    try:
        admin.flushdb()
        assert isinstance(services.store, RedisStore)
        services.store.put(new_key(), JPEG, "image/jpeg", 60)
        services.admission.limiter.hit("client")
        names = [name.decode() for name in admin.keys("*")]
        assert any(n.startswith("flux-worker:image:") for n in names)
        assert any(n.startswith("LIMITS") for n in names), names
    finally:
        admin.flushdb()
        admin.close()
        services.close()


def test_memory_storage_counts_in_the_process(apps, place):
    config = Config.from_env({"STORAGE_URL": "MEMORY://", "RATE_LIMIT": "1/minute"})
    services = apps.services(config)
    assert isinstance(services.store, MemoryStore)
    assert config.counters.scheme == "memory"
    services.admission.limiter.hit("client")
    with pytest.raises(RateLimited):
        services.admission.limiter.hit("client")
    assert not os.listdir(place[0])  # nothing written to disk


def test_s3_storage_counts_on_local_disk_by_default_and_warns(place):
    config = Config.from_env({"STORAGE_URL": "s3://images"})
    assert config.storage == StorageLocation("s3", bucket="images")
    assert config.counters == CountersLocation(
        "disk", path=str(place[0] / "data" / "counters"), defaulted=True)
    assert any("hosts will not share counts" in m for m in advice(config))
    shared = Config.from_env({"STORAGE_URL": "s3://images", "COUNTERS_URL": "redis://h:6379/2"})
    assert not any("share counts" in m for m in advice(shared))


@pytest.mark.parametrize("url, expected", [
    ("s3://my-bucket", StorageLocation("s3", bucket="my-bucket")),
    ("S3://my-bucket/", StorageLocation("s3", bucket="my-bucket")),
    ("s3://my.bucket/a/b/", StorageLocation("s3", bucket="my.bucket", prefix="a/b/")),
    ("memory://", StorageLocation("memory")),
    ("unix:///run/redis.sock?db=2", StorageLocation("redis", url="unix:///run/redis.sock?db=2")),
    ("REDISS://:pw@h:6380/1", StorageLocation("redis", url="rediss://:pw@h:6380/1")),
])
def test_storage_location_forms(url, expected):
    assert StorageLocation.parse(url) == expected


@pytest.mark.parametrize("url", [
    "s3://", "s3://Upper-Case", "s3://ab", "s3://key:secret@bucket", "ftp://x", "data",
    "disk://", "memory://x",
])
def test_bad_storage_urls_stop_the_start_naming_the_variable(url):
    with pytest.raises(ConfigError, match="STORAGE_URL") as caught:
        Config.from_env({"STORAGE_URL": url})
    assert "secret" not in str(caught.value)


@pytest.mark.parametrize("url, expected", [
    ("redis://h:6379/1", CountersLocation("redis", url="redis://h:6379/1")),
    ("REDISS://h:6380/0", CountersLocation("redis", url="rediss://h:6380/0")),
    ("memory://", CountersLocation("memory")),
    ("disk://~/c", CountersLocation("disk", path="{home}/c")),
    ("~/c", CountersLocation("disk", path="{home}/c")),
    ("counters", CountersLocation("disk", path="{work}/counters")),
    ("/var/tmp/c", CountersLocation("disk", path="/var/tmp/c")),
])
def test_counters_url_forms(url, expected, place):
    work, home = place
    path = expected.path.format(home=home, work=work)
    assert CountersLocation.parse(url) == CountersLocation(expected.scheme, path=path,
                                                           url=expected.url)


@pytest.mark.parametrize("url", ["s3://bucket", "ftp://x", "redis://:hunter2@h:bad/0x"])
def test_bad_counters_urls_stop_the_start(url):
    with pytest.raises(ConfigError, match="COUNTERS_URL") as caught:
        Config.from_env({"COUNTERS_URL": url})
    assert "hunter2" not in str(caught.value)


def test_counters_url_apart_from_the_images(tmp_path, redis_url):
    config = Config.from_env({"STORAGE_URL": f"disk://{tmp_path}/images",
                              "COUNTERS_URL": redis_url, "RATE_LIMIT": "1/minute"})
    assert config.counters == CountersLocation("redis", url=redis_url)
    first, second = RateLimiter("1/minute", config.counters), \
        RateLimiter("1/minute", config.counters)
    first.hit("apart")
    with pytest.raises(RateLimited):
        second.hit("apart")
    first.storage.reset()
    assert not (tmp_path / "images" / "counters").exists()


def test_counter_clients_for_a_ledger(tmp_path, redis_url):
    client = redis_client(CountersLocation.parse(redis_url))
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == REDIS_TIMEOUT == 0.5
    assert kwargs["socket_connect_timeout"] == REDIS_TIMEOUT
    assert client.incr("flux-worker:test-counter") >= 1
    client.close()
    assert directory(CountersLocation.parse(str(tmp_path / "c"))) == str(tmp_path / "c")
    assert (tmp_path / "c").is_dir()
    with pytest.raises(ValueError):
        redis_client(CountersLocation.parse("memory://"))


def test_a_hung_redis_does_not_hold_a_request():
    # SIGSTOP: the kernel still accepts connections, but nothing ever answers.
    with RedisServer() as server:
        limiter = RateLimiter("5/minute", CountersLocation.parse(server.url))
        limiter.hit("warm")  # a pooled connection exists before the hang
        os.kill(server._process.pid, signal.SIGSTOP)
        try:
            outcome: list[BaseException] = []

            def count() -> None:
                try:
                    limiter.hit("hung")
                except BaseException as exc:  # noqa: BLE001 - inspected by the test
                    outcome.append(exc)

            worker = threading.Thread(target=count)
            worker.start()
            # Two-second command timeouts, no retry of a timeout: a few seconds at most. The
            # bound is generous for a shared machine; without timeouts this would hang forever.
            worker.join(20)
            assert not worker.is_alive(), "rate limiting waited on a hung Redis"
            assert isinstance(outcome[0], StorageError)  # fails closed: 503, not a hang
        finally:
            os.kill(server._process.pid, signal.SIGCONT)


def test_the_start_up_check_names_unreachable_counters(tmp_path):
    config = Config.from_env({"STORAGE_URL": f"disk://{tmp_path}",
                              "COUNTERS_URL": f"redis://:pw-secret@127.0.0.1:{free_port()}/0"})
    problems = startup_problems(config)
    assert [level for level, _ in problems] == ["error"]
    assert "COUNTERS_URL" in problems[0][1] and "unreachable" in problems[0][1]
    assert "pw-secret" not in problems[0][1]


def test_passwords_never_show_in_a_repr_of_the_configuration():
    config = Config.from_env({"STORAGE_URL": "redis://:pw-secret@h:6379/0",
                              "COUNTERS_URL": "rediss://:pw-other@h:6380/0",
                              "AWS_SECRET_ACCESS_KEY": "aws-secret-value"})
    text = repr(config)
    assert "pw-secret" not in text and "pw-other" not in text and "aws-secret" not in text
    assert {"pw-secret", "pw-other", "aws-secret-value"} <= set(config.secrets())


@pytest.mark.parametrize("url, workers", [
    ("memory://", 1), ("MEMORY://", 1), ("Memory://", 1), ("disk://data", 2), ("DISK://data", 2),
    ("s3://images", 2),
])
def test_gunicorn_reads_the_same_parse_for_its_worker_count(url, workers, tmp_path, monkeypatch):
    monkeypatch.setenv("STORAGE_URL", url)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # not a folder of its own
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    # Run afresh (gunicorn.conf.py imports the module once per process, as gunicorn needs).
    settings = runpy.run_module("flux_worker.serving.gunicorn_settings")
    assert settings["workers"] == workers


def test_redis_images_kept_for_ever_warn_about_memory():
    config = Config.from_env({"STORAGE_URL": "redis://h:6379/0", "IMAGE_EXPIRATION": "0"})
    assert any("maxmemory" in m for m in advice(config))
    assert not advice(Config.from_env({"STORAGE_URL": "redis://h:6379/0"}))
