"""
Shared fixtures.

Tests that need a local service (Redis, PostgreSQL, RabbitMQ) or a tool (promtool, node) use
:func:`require_port` / :func:`require_binary`.  On a developer machine a missing service skips the
test with the reason; under CI (``CI=true``) it fails instead, so a green CI never hides a skip.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket

import pytest


IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"required in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def require_port(host: str, port: int, what: str) -> None:
    """Skip (or fail under CI) unless something listens on *host*:*port*."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return
    except OSError:
        _missing(f"{what} is not listening on {host}:{port}")


def require_binary(name: str) -> str:
    """Return the path of *name* on PATH; skip (or fail under CI) when absent."""
    path = shutil.which(name)
    if path is None:
        _missing(f"{name} is not installed")
    return path  # type: ignore[return-value]


@pytest.fixture(name="redis_url")
def _redis_url() -> str:
    require_port("127.0.0.1", 6379, "Redis")
    return "redis://127.0.0.1:6379/0"


@pytest.fixture(name="postgres_dsn")
def _postgres_dsn() -> str:
    require_port("127.0.0.1", 5432, "PostgreSQL")
    return "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(name="amqp_url")
def _amqp_url() -> str:
    require_port("127.0.0.1", 5672, "RabbitMQ")
    return "amqp://guest:guest@127.0.0.1:5672//"


@pytest.fixture(autouse=True)
def _ensure_logging_framework_not_altered():
    """Restore the root logger's handlers and level after each test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
