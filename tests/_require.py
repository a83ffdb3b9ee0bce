"""
Services and tools a test needs.

Tests that need a local service (Redis, PostgreSQL, RabbitMQ) or a tool (promtool, node) use
:func:`require_port` / :func:`require_binary`.  On a developer machine a missing service skips the
test with the reason; under CI (``CI=true``) it fails instead, so a green CI never hides a skip.
"""

from __future__ import annotations

import os
import shutil
import socket

import pytest


IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing(reason: str) -> None:
    """Skip the test with *reason*, or fail it under CI."""
    if IN_CI:
        pytest.fail(f"required in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def require_port(host: str, port: int, what: str) -> None:
    """Skip (or fail under CI) unless something listens on *host*:*port*."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return
    except OSError:
        missing(f"{what} is not listening on {host}:{port}")


def require_binary(name: str) -> str:
    """Return the path of *name* on PATH; skip (or fail under CI) when absent."""
    path = shutil.which(name)
    if path is None:
        missing(f"{name} is not installed")
    return path  # type: ignore[return-value]


def require_free_port(port: int, why: str) -> None:
    """Skip (or fail under CI) when something holds loopback *port*, which an example binds."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            missing(f"port {port} is in use; {why}")
