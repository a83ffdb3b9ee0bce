"""
Shared fixtures.

Every test runs inside :func:`_isolate`, which puts back what obslog, structlog and the root logger
looked like before it.  Tests that need a local service (Redis, PostgreSQL, RabbitMQ) or a tool
(promtool, node) use :func:`_require.require_port` / :func:`_require.require_binary`.
"""

from __future__ import annotations

import io
import logging
import socket
import threading

from collections.abc import Iterator

import pytest
import structlog

from _require import require_port

import obslog

from obslog import _json
from obslog._http import ACCESS_LOGGERS, FILTERED_ACCESS_LOGGERS
from obslog.testing import CapturedLines, capture_lines


@pytest.fixture(autouse=True)
def _isolate(monkeypatch):
    """Reset obslog, structlog, the JSON encoder and the root logger after each test.

    The test starts without OBSLOG_* settings in the environment; afterwards the root logger gets
    its handlers and level back.
    """
    for var in ("OBSLOG_LEVEL", "OBSLOG_FORMAT", "OBSLOG_SERVICE"):
        monkeypatch.delenv(var, raising=False)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    obslog.reset_defaults()
    _json.use_orjson(_json.orjson is not None)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(name="sio")
def _sio() -> io.StringIO:
    """obslog configured for service "shop", writing into this buffer.

    For tests about the bytes a stream receives (the encoders, the console format, handlers); tests
    about the lines obslog writes use ``captured`` (:mod:`obslog.testing`).
    """
    stream = io.StringIO()
    obslog.configure(stream=stream, service="shop")
    return stream


@pytest.fixture(name="captured")
def _captured() -> Iterator[CapturedLines]:
    """obslog configured for service "shop"; lines captured by :func:`obslog.testing.capture_lines`.

    :func:`obslog.configure` runs for its settings, logger class and structlog routing; the stdout
    handler it installs is taken off again, so the captured lines are the only output.  The level
    is configure's default, INFO.
    """
    logging.getLogger().removeHandler(obslog.configure(service="shop"))
    with capture_lines(level="INFO") as captured:
        yield captured


@pytest.fixture(name="lines")
def _lines() -> Iterator[CapturedLines]:
    """obslog configured at INFO, its lines captured by :func:`obslog.testing.capture_lines`.

    Yields the live :class:`~obslog.testing.CapturedLines` (``snapshot()``, ``wait_for()`` for
    servers that write from their own threads).  The servers' access loggers get their level,
    propagation and handlers back afterwards.
    """
    # configure() for its settings, logger class and structlog routing; its stdout handler goes.
    logging.getLogger().removeHandler(obslog.configure(level="INFO"))
    saved = {}
    for name in (*ACCESS_LOGGERS, *FILTERED_ACCESS_LOGGERS):
        logger = logging.getLogger(name)
        saved[name] = (logger.level, logger.propagate, logger.handlers[:], logger.filters[:])
    # uvicorn's access_log=False stops propagation for the whole process; start each test clean.
    logging.getLogger("uvicorn.access").propagate = True
    with capture_lines(level="INFO") as captured:
        yield captured
    obslog.reset_defaults()
    for name, (level, propagate, handlers, filters) in saved.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.propagate = propagate
        logger.handlers[:] = handlers
        logger.filters[:] = filters


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


@pytest.fixture(name="hanging_port")
def _hanging_port() -> Iterator[int]:
    """A TCP server on loopback that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.1)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    listener.close()
