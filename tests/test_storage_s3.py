"""S3 storage against a real S3 protocol server (moto in server mode): what the contract suite
in test_storage.py does not cover: metadata, lazy deletion, streaming, failures named, links.
"""

from __future__ import annotations

import io

import pytest
import requests

from flux_worker.config import Config, ConfigError
from flux_worker.errors import StorageError
from flux_worker.serving.startup import advice, startup_problems
from flux_worker.storage import KEEP_FOREVER, S3Options, StorageLocation, new_key, open_store
from flux_worker.storage.links import MAX_PRESIGN_SECONDS, ImageLinks
from flux_worker.storage.s3 import S3Store
from harness.s3_server import KEY_ID, SECRET, MotoServer
from tests.support import AUTH, FakeClock, app_with, free_port

JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40


@pytest.fixture
def clock():
    return FakeClock(1_800_000_000.0)


@pytest.fixture
def store(s3_server, s3_location, clock):
    built = S3Store(s3_location.bucket, s3_location.prefix, s3_server.options, clock=clock)
    yield built
    built.close()


def test_content_type_expiry_and_size_travel_as_object_metadata(store, s3_server, clock):
    key = new_key()
    store.put(key, JPEG, "image/jpeg", 600)
    head = s3_server.client().head_object(Bucket=store.bucket, Key="images/" + key)
    assert head["ContentType"] == "image/jpeg" and head["ContentLength"] == len(JPEG)
    assert head["Metadata"] == {"created": repr(clock.now), "expires": repr(clock.now + 600),
                                "size": str(len(JPEG))}
    assert head["CacheControl"] == "public, max-age=600, immutable"
    store.put(key, JPEG, "image/jpeg", KEEP_FOREVER)
    head = s3_server.client().head_object(Bucket=store.bucket, Key="images/" + key)
    assert head["Metadata"]["expires"] == "never" and "Expires" not in head


def test_an_expired_object_is_refused_at_once_and_deleted(store, s3_server, clock):
    key = new_key()
    store.put(key, JPEG, "image/jpeg", 60)
    clock.now += 60
    assert store.open(key) is None
    objects = s3_server.client().list_objects_v2(Bucket=store.bucket).get("Contents", [])
    assert [o["Key"] for o in objects] == []


def test_an_object_not_written_by_the_service_is_not_served(store, s3_server):
    key = new_key()
    s3_server.client().put_object(Bucket=store.bucket, Key="images/" + key, Body=b"stray")
    assert store.get(key) is None


def test_open_streams_the_object_in_chunks_without_a_file_descriptor(store):
    key = new_key()
    data = bytes(range(256)) * 2000
    store.put(key, data, "image/png", 60)
    opened = store.open(key)
    with opened.file:
        # No fileno(): a server must read it, not sendfile() the socket underneath.
        with pytest.raises((io.UnsupportedOperation, OSError)):
            opened.file.fileno()
        first = opened.file.read(1000)
        assert first == data[:1000] and opened.size == len(data)
        assert first + opened.file.read() == data


def test_ping_writes_and_removes_a_probe(store, s3_server):
    store.ping()
    assert s3_server.client().list_objects_v2(Bucket=store.bucket).get("KeyCount") == 0


def test_a_missing_bucket_is_a_storage_error_naming_it(s3_server):
    store = S3Store("no-such-bucket", "", s3_server.options)
    for call in (store.ping, lambda: store.put(new_key(), JPEG, "image/jpeg", 60),
                 lambda: store.get(new_key())):
        with pytest.raises(StorageError, match="'no-such-bucket'.*does not exist"):
            call()


def test_an_unreachable_endpoint_is_a_storage_error_naming_it():
    endpoint = f"http://127.0.0.1:{free_port()}"
    store = S3Store("images", "", S3Options(endpoint_url=endpoint, region="us-east-1",
                                            access_key_id=KEY_ID, secret_access_key=SECRET),
                    connect_timeout=1)
    with pytest.raises(StorageError, match=f"{endpoint} is unreachable") as caught:
        store.ping()
    assert caught.value.status == 503 and caught.value.code == "storage_error"


def test_a_wrong_key_is_a_storage_error_that_never_shows_the_secret():
    with MotoServer(enforce_auth=True) as server:
        store = S3Store("images", "", S3Options(endpoint_url=server.endpoint, region="us-east-1",
                                                access_key_id="AKIAWRONG0000000",
                                                secret_access_key="wrong-secret-value"))
        for call in (store.ping, lambda: store.get(new_key())):
            with pytest.raises(StorageError, match="refused the credentials") as caught:
                call()
            assert "wrong-secret-value" not in str(caught.value)
            assert "wrong-secret-value" not in repr(caught.value.__cause__)
        assert "wrong-secret-value" not in repr(store) + repr(store.options)


def test_the_start_up_check_names_the_problem(s3_server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {"STORAGE_URL": "s3://absent-bucket/x", **s3_server.env()}
    problems = startup_problems(Config.from_env(env))
    errors = [message for level, message in problems if level == "error"]
    assert len(errors) == 1 and "absent-bucket" in errors[0] and "does not exist" in errors[0]
    s3_server.create_bucket("present-bucket")
    env["STORAGE_URL"] = "s3://present-bucket/x"
    assert [lvl for lvl, _ in startup_problems(Config.from_env(env))] == ["warning"]  # counters


def test_storage_url_builds_an_s3_store(s3_server, s3_location):
    built = open_store(s3_location, max_bytes=1 << 20, s3=s3_server.options)
    assert isinstance(built, S3Store) and built.kind == "s3"
    key = new_key()
    built.put(key, JPEG, "image/jpeg", 60)
    assert built.get(key).data == JPEG
    assert s3_location == StorageLocation("s3", bucket=s3_location.bucket, prefix="images/")


# Links.

def test_service_links_go_through_the_service():
    assert ImageLinks()("https://svc.example", "k" * 22) == "https://svc.example/image/" + "k" * 22
    assert ImageLinks().foreign_origin() is None


def test_direct_links_point_at_the_public_bucket_and_are_fetched(store, s3_server):
    key = new_key()
    store.put(key, JPEG, "image/jpeg", 60)
    anonymous = requests.get(f"{s3_server.endpoint}/{store.bucket}/images/{key}", timeout=10)
    assert anonymous.status_code == 403  # private until made public, like a real bucket
    s3_server.make_public(store.bucket)
    # moto serves path-style: the bucket's public base is <endpoint>/<bucket>.
    links = ImageLinks("direct", store, public_base=f"{s3_server.endpoint}/{store.bucket}/")
    link = links("https://svc.example", key)
    assert link == f"{s3_server.endpoint}/{store.bucket}/images/{key}"
    answer = requests.get(link, timeout=10)
    assert answer.status_code == 200 and answer.content == JPEG
    assert answer.headers["Content-Type"] == "image/jpeg"
    assert links.foreign_origin() == s3_server.endpoint


@pytest.mark.parametrize("lifetime, seconds", [(600, 600), (0, MAX_PRESIGN_SECONDS),
                                               (30 * 86400, MAX_PRESIGN_SECONDS)])
def test_presigned_links_last_the_lifetime_capped_at_seven_days(store, lifetime, seconds):
    key = new_key()
    store.put(key, JPEG, "image/jpeg", lifetime)
    link = ImageLinks("presigned", store, lifetime=lifetime)("https://svc.example", key)
    assert f"X-Amz-Expires={seconds}&" in link or link.endswith(f"X-Amz-Expires={seconds}")
    answer = requests.get(link, timeout=10)
    assert answer.status_code == 200 and answer.content == JPEG


def test_link_modes_other_than_service_need_s3(s3_server):
    with pytest.raises(ConfigError, match="IMAGE_LINKS=presigned needs object storage"):
        Config.from_env({"STORAGE_URL": "memory://", "IMAGE_LINKS": "presigned"})
    with pytest.raises(ConfigError, match="S3_PUBLIC_BASE_URL is required"):
        Config.from_env({"STORAGE_URL": "s3://images", "IMAGE_LINKS": "direct"})
    with pytest.raises(ConfigError, match="IMAGE_LINKS"):
        Config.from_env({"IMAGE_LINKS": "cdn"})


def test_presigned_links_for_long_lived_images_warn_at_start():
    config = Config.from_env({"STORAGE_URL": "s3://images", "IMAGE_LINKS": "presigned",
                              "IMAGE_EXPIRATION": "0", "COUNTERS_URL": "memory://"})
    assert any("7 days" in m and "SigV4" in m for m in advice(config))
    short = Config.from_env({"STORAGE_URL": "s3://images", "IMAGE_LINKS": "presigned",
                             "IMAGE_EXPIRATION": "3600", "COUNTERS_URL": "memory://"})
    assert advice(short) == []


def test_image_links_follow_the_configuration(apps, s3_server, s3_location):
    config = Config.from_env({"STORAGE_URL": f"s3://{s3_location.bucket}/images",
                              "IMAGE_LINKS": "direct",
                              "S3_PUBLIC_BASE_URL": "https://img.example.com/",
                              **s3_server.env()})
    services = apps.services(config)
    links = services.links
    assert links("https://svc", "k" * 22) == "https://img.example.com/images/" + "k" * 22
    assert links.foreign_origin() == "https://img.example.com"


# Through the app (demo backend): what a client sees when the bucket fails.

def test_a_write_that_fails_after_generation_says_so(s3_server):
    bucket = s3_server.create_bucket()
    with app_with(STORAGE_URL=f"s3://{bucket}/img", COUNTERS_URL="memory://",
                  **s3_server.env()) as (app, _services):
        client = app.test_client()
        ask = {"messages": [{"role": "user", "content": "a cat"}]}
        assert client.post("/v1/chat/completions", headers=AUTH, json=ask).status_code == 200
        # The bucket goes away behind the service's back, while its last check is still fresh.
        admin = s3_server.client()
        for item in admin.list_objects_v2(Bucket=bucket).get("Contents", []):
            admin.delete_object(Bucket=bucket, Key=item["Key"])
        admin.delete_bucket(Bucket=bucket)
        failed = client.post("/v1/chat/completions", headers=AUTH, json=ask)
        assert failed.status_code == 503
        error = failed.get_json()["error"]
        assert error["code"] == "storage_error" and "does not exist" in error["message"]
        # /readyz names the bucket to a configured key only; anyone else gets general words.
        ready = client.get("/readyz", headers=AUTH)
        assert ready.status_code == 503 and bucket in ready.get_json()["error"]["message"]
        anonymous = client.get("/readyz")
        assert anonymous.status_code == 503 and bucket not in anonymous.get_data(as_text=True)
