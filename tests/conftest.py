"""Shared fixtures: an app on the demo backend with in-memory storage and its client, apps that
close themselves, Redis and S3 servers, and a check that no test leaves services open."""

from __future__ import annotations

import pytest

from flux_worker.storage import StorageLocation
from harness.s3_server import MotoServer
from tests.support import AUTH, Apps, RedisServer, app_with, open_services, track_services

track_services()


@pytest.fixture(autouse=True)
def _services_are_closed():
    """Fail a test that builds services (connections, files, threads) and never closes them.

    Autouse fixtures are set up first, so this check runs after every other fixture of the test
    has closed what it made.
    """
    open_services.clear()
    yield
    leaked = list(open_services.values())
    open_services.clear()
    for services in leaked:
        services.close()
    if leaked:
        pytest.fail(f"{len(leaked)} Services built by this test were never closed: build them "
                    "with the `apps` fixture or tests.support.app_with", pytrace=False)


@pytest.fixture
def app():
    """The app on the demo backend with memory storage."""
    with app_with() as (application, _services):
        yield application


@pytest.fixture
def client(app):
    """A test client for `app`."""
    return app.test_client()


@pytest.fixture
def auth():
    """Headers that pass authentication."""
    return dict(AUTH)


@pytest.fixture
def apps():
    """Builds apps, services and clients for the test (`apps.client(RATE_LIMIT="2/minute")`)
    and closes all of them after it."""
    made = Apps()
    yield made
    made.close()


@pytest.fixture(scope="session")
def redis_url():
    """The URL of a redis-server shared by the whole test session."""
    with RedisServer() as server:
        yield server.url


@pytest.fixture
def redis_server():
    """A redis-server of the test's own, which it may stop and restart."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server shared by the test session."""
    with MotoServer() as server:
        yield server


@pytest.fixture
def s3_location(s3_server) -> StorageLocation:
    """A fresh bucket on the session's server, with a key prefix."""
    return StorageLocation.parse(f"s3://{s3_server.create_bucket()}/images")
