"""Helpers the tests share: a test configuration, an app that cleans up after itself, free ports."""

from __future__ import annotations

import contextlib
import socket
from typing import Iterator

from flask import Flask

from flux_worker import create_app
from flux_worker.config import Config
from flux_worker.services import Services, build_services

TEST_KEY = "sk-test-key-123456"
AUTH = {"Authorization": f"Bearer {TEST_KEY}"}


def make_config(**overrides: object) -> Config:
    """A configuration for tests: demo backend, memory storage, one API key."""
    env = {"API_KEY": TEST_KEY, "STORAGE_URL": "memory://", "IMAGE_EXPIRATION": "600"}
    env.update({k: str(v) for k, v in overrides.items()})
    return Config.from_env(env)


@contextlib.contextmanager
def app_with(**overrides: object) -> Iterator[tuple[Flask, Services]]:
    """An app built from `make_config(**overrides)` and its services, closed afterwards."""
    services = build_services(make_config(**overrides))
    app = create_app(services=services)
    app.config["TESTING"] = True
    try:
        yield app, services
    finally:
        services.close()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
