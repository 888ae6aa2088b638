"""Shared fixtures: an app on the demo backend with in-memory storage, and its client."""

from __future__ import annotations

import pytest

from tests.helpers import AUTH, app_with
from tests.redis_server import redis_server, redis_url  # noqa: F401  (fixtures for all tests)
from tests.s3_server import s3_location, s3_server  # noqa: F401  (fixtures for all tests)


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
