"""Shared fixtures: an app on the demo backend with in-memory storage, and its client."""

from __future__ import annotations

import pytest

from flux_worker import create_app
from flux_worker.config import Config
from tests.redis_server import redis_server, redis_url  # noqa: F401  (fixtures for all tests)
from tests.s3_server import s3_location, s3_server  # noqa: F401  (fixtures for all tests)

TEST_KEY = "sk-test-key-123456"


def make_config(**overrides) -> Config:
    """A configuration for tests: demo backend, memory storage, one API key."""
    env = {"API_KEY": TEST_KEY, "STORAGE_URL": "memory://", "IMAGE_EXPIRATION": "600"}
    env.update({k: str(v) for k, v in overrides.items()})
    return Config.from_env(env)


@pytest.fixture
def app():
    """The app on the demo backend with memory storage."""
    application = create_app(make_config())
    application.config["TESTING"] = True
    yield application
    application.extensions["flux_worker"].close()


@pytest.fixture
def client(app):
    """A test client for `app`."""
    return app.test_client()


@pytest.fixture
def auth():
    """Headers that pass authentication."""
    return {"Authorization": f"Bearer {TEST_KEY}"}
