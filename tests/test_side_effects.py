"""
No surprises in the host process: importing obslog and creating its public classes changes none of
the logger class, any existing logger's class, the signal handlers, ``gc.callbacks`` or structlog's
configuration.  The documented exceptions (README, "What obslog changes in your process") are
tested as such: they change only what they say, and closing puts it back.
"""

from __future__ import annotations

import gc
import json
import logging
import logging.config
import signal
import subprocess
import sys

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import structlog

import obslog


def _signal_handlers() -> dict[str, Any]:
    handlers = {}
    for sig in signal.valid_signals():
        try:
            handlers[signal.Signals(sig).name] = signal.getsignal(sig)
        except (ValueError, OSError):  # not a catchable signal here
            continue
    return handlers


@dataclass(frozen=True)
class ProcessState:
    """What a library must not change behind the application's back."""

    logger_class: Any
    logger_classes: dict[str, Any]
    signal_handlers: dict[str, Any]
    gc_callbacks: list[Any]
    record_factory: Any
    structlog_configured: bool

    @classmethod
    def now(cls) -> ProcessState:
        """Take the state of this process."""
        loggers = {
            name: type(logger)
            for name, logger in list(logging.Logger.manager.loggerDict.items())
            if isinstance(logger, logging.Logger)
        }
        loggers["<root>"] = type(logging.getLogger())
        return cls(
            logger_class=logging.getLoggerClass(),
            logger_classes=loggers,
            signal_handlers=_signal_handlers(),
            gc_callbacks=list(gc.callbacks),
            record_factory=logging.getLogRecordFactory(),
            structlog_configured=structlog.is_configured(),
        )

    def changes(self, other: ProcessState) -> dict[str, Any]:
        """Return what differs in *other*: loggers created meanwhile are not changes."""
        out: dict[str, Any] = {}
        for field in ("logger_class", "gc_callbacks", "record_factory", "structlog_configured"):
            if getattr(self, field) != getattr(other, field):
                out[field] = (getattr(self, field), getattr(other, field))
        for name, cls in self.logger_classes.items():
            if other.logger_classes.get(name, cls) is not cls:
                out[f"logger {name}"] = (cls, other.logger_classes[name])
        for name, handler in self.signal_handlers.items():
            if other.signal_handlers.get(name) != handler:
                out[f"signal {name}"] = (handler, other.signal_handlers.get(name))
        return out


IMPORT_CHECK = """
import gc, json, logging, signal
early = logging.getLogger("app.early")
def state():
    handlers = {}
    for sig in signal.valid_signals():
        try:
            handlers[signal.Signals(sig).name] = repr(signal.getsignal(sig))
        except (ValueError, OSError):
            pass
    return {
        "logger_class": logging.getLoggerClass().__name__,
        "early": type(early).__name__,
        "root": type(logging.getLogger()).__name__,
        "signals": handlers,
        "gc": [repr(c) for c in gc.callbacks],
        "record_factory": repr(logging.getLogRecordFactory()),
    }
before = state()
import structlog
import obslog, obslog.processors, obslog.health, obslog.checks, obslog.metrics, obslog.runtime
import obslog.loki, obslog.asgi, obslog.wsgi, obslog.flask, obslog.django, obslog.aiohttp
import obslog.celery
print(json.dumps([before, state(), structlog.is_configured()]))
"""


def test_import_changes_nothing():
    """Importing obslog and every public module changes no logger class, signal handler or gc callback."""
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_CHECK], capture_output=True, text=True, check=False
    )
    assert "" == result.stderr
    before, after, structlog_configured = json.loads(result.stdout)
    assert before == after
    assert False is structlog_configured


def _asgi_app(scope: Any, receive: Any, send: Any) -> None:
    """An ASGI app that is never called."""


def _wsgi_app(environ: Any, start_response: Any) -> list[bytes]:
    """A WSGI app that is never called."""
    return []


def _from_dict_config() -> Callable[[], None]:
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"ctx": {"()": "obslog.ContextFilter"}},
        "formatters": {"json": {"()": "obslog.JsonFormatter", "json_indent": 2}},
        "handlers": {
            "out": {"class": "logging.NullHandler", "formatter": "json", "filters": ["ctx"]}
        },
        "loggers": {"t.side.dict": {"handlers": ["out"], "propagate": False}},
    }
    logging.config.dictConfig(config)
    return lambda: logging.getLogger("t.side.dict").handlers.clear()


def _health_server() -> Callable[[], None]:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from obslog.health import HealthEndpoints, HealthServer

    server = HealthServer(
        ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler), HealthEndpoints()
    )
    return server.close


def _closing(make: Callable[[], Any], close: str = "close") -> Callable[[], Callable[[], None]]:
    def create() -> Callable[[], None]:
        obj = make()
        return getattr(obj, close) if close else (lambda: None)

    return create


def _nothing(make: Callable[[], Any]) -> Callable[[], Callable[[], None]]:
    return _closing(make, close="")


def _loki_handler() -> Any:
    from obslog.loki import LokiHandler

    return LokiHandler("http://127.0.0.1:9")


def _metrics() -> Any:
    from prometheus_client import CollectorRegistry

    from obslog.metrics import MetricsInstallation

    return MetricsInstallation(CollectorRegistry())


def _readiness() -> Any:
    from obslog.health import Readiness

    return Readiness()


def _django_middleware() -> Any:
    from django.conf import settings

    from obslog.django import ObslogMiddleware

    if not settings.configured:
        settings.configure()

    return ObslogMiddleware(lambda request: None)


CASES = [
    pytest.param(_nothing(obslog.JsonFormatter), id="JsonFormatter"),
    pytest.param(
        _nothing(lambda: obslog.JsonFormatter(rename_fields={"event": "message"})),
        id="JsonFormatter-options",
    ),
    pytest.param(_nothing(obslog.ConsoleFormatter), id="ConsoleFormatter"),
    pytest.param(_from_dict_config, id="JsonFormatter-dictConfig"),
    pytest.param(_nothing(obslog.ContextFilter), id="ContextFilter"),
    pytest.param(_nothing(lambda: obslog.ObslogLogger("t.side.obslog")), id="ObslogLogger"),
    pytest.param(_nothing(lambda: obslog.RenderedLine("{}")), id="RenderedLine"),
    pytest.param(_nothing(lambda: obslog.Scope("job")), id="Scope"),
    pytest.param(_nothing(lambda: obslog.timed("db_query")), id="timed"),
    pytest.param(_nothing(lambda: obslog.dict_config(service="side")), id="dict_config"),
    pytest.param(
        _nothing(lambda: obslog.processors.BoundLogger(logging.getLogger("t.side.sl"), [], {})),
        id="processors.BoundLogger",
    ),
    pytest.param(_closing(_loki_handler), id="loki.LokiHandler"),
    pytest.param(_closing(_readiness, close=""), id="health.Readiness"),
    pytest.param(
        _nothing(lambda: __import__("obslog.health").health.HealthEndpoints()),
        id="health.HealthEndpoints",
    ),
    pytest.param(_health_server, id="health.HealthServer"),
    pytest.param(
        _closing(lambda: __import__("obslog.checks").checks.ShutdownCheck(install=False)),
        id="checks.ShutdownCheck-install=False",
    ),
    pytest.param(
        _nothing(lambda: __import__("obslog.asgi").asgi.ObslogMiddleware(_asgi_app)),
        id="asgi.ObslogMiddleware",
    ),
    pytest.param(
        _nothing(lambda: __import__("obslog.wsgi").wsgi.ObslogMiddleware(_wsgi_app)),
        id="wsgi.ObslogMiddleware",
    ),
    pytest.param(
        _nothing(lambda: __import__("obslog.aiohttp").aiohttp.ActiveRequests(0, 0.0)),
        id="aiohttp.ActiveRequests",
    ),
]


def run_case(create: Callable[[], Callable[[], None]]) -> dict[str, str]:
    """Create, then close, an object with *create*; return what changed in the process (repr)."""
    logging.getLogger("t.side.existing")  # a library's logger, made before
    before = ProcessState.now()
    close = create()
    created = ProcessState.now()
    close()
    gc.collect()
    changes = {**before.changes(created), **before.changes(ProcessState.now())}
    return {key: repr(value) for key, value in changes.items()}


FRESH = """
import json, sys
sys.path.insert(0, sys.argv[1])
import test_side_effects as t
print(json.dumps(t.run_case(t.FRESH_CASES[sys.argv[2]])))
"""
# Cases whose state is shared by every instance (obslog's one gc callback), or that need process-wide
# set-up of their own (Django's settings): a fresh process each.
FRESH_CASES: dict[str, Callable[[], Callable[[], None]]] = {
    "django.ObslogMiddleware": _nothing(_django_middleware),
    "metrics.MetricsInstallation": _closing(_metrics),
    "runtime.RuntimeLogger": _closing(lambda: __import__("obslog.runtime").runtime.RuntimeLogger()),
    "runtime.Sampler": _nothing(lambda: __import__("obslog.runtime").runtime.Sampler()),
}


@pytest.mark.parametrize("create", CASES)
def test_creating_changes_nothing(create):
    """Creating (and closing) a public class leaves the process state exactly as it was."""
    assert {} == run_case(create)


@pytest.mark.parametrize("name", list(FRESH_CASES))
def test_creating_changes_nothing_in_a_fresh_process(name):
    """Creating (and closing) a class that uses the runtime sampler leaves a fresh process as it was."""
    tests_dir = str(__import__("pathlib").Path(__file__).parent)
    result = subprocess.run(
        [sys.executable, "-c", FRESH, tests_dir, name], capture_output=True, text=True, check=False
    )
    assert (0, {}) == (result.returncode, json.loads(result.stdout or "null"))


def test_shutdown_check_changes_only_its_signals_until_closed():
    """ShutdownCheck (documented) replaces only its signals' handlers; close() puts them back."""
    from obslog.checks import ShutdownCheck

    before = ProcessState.now()
    check = ShutdownCheck(signals=(signal.SIGTERM,))
    try:
        assert {"signal SIGTERM"} == set(before.changes(ProcessState.now()))
    finally:
        check.close()
    assert {} == before.changes(ProcessState.now())


def test_loki_sigterm_flush_is_opt_in_and_restored():
    """LokiHandler(flush_on_sigterm=True) (documented) replaces only SIGTERM; close() puts it back."""
    from obslog.loki import LokiHandler

    before = ProcessState.now()
    handler = LokiHandler("http://127.0.0.1:9", flush_on_sigterm=True)
    try:
        assert {"signal SIGTERM"} == set(before.changes(ProcessState.now()))
    finally:
        handler.close()
    assert {} == before.changes(ProcessState.now())


CONFIGURE = """
import io, json, logging, sys
sys.path.insert(0, sys.argv[1])
import test_side_effects as t
logging.getLogger("app.early")
before = t.ProcessState.now()
t.obslog.configure(stream=io.StringIO())
print(json.dumps(sorted(before.changes(t.ProcessState.now()))))
"""


def test_configure_changes_only_what_it_documents():
    """configure() (documented) sets the logger class of new and plain loggers and structlog's configuration."""
    tests_dir = str(__import__("pathlib").Path(__file__).parent)
    result = subprocess.run(
        [sys.executable, "-c", CONFIGURE, tests_dir], capture_output=True, text=True, check=False
    )
    changes = set(json.loads(result.stdout))
    assert {"logger_class", "structlog_configured"} == {
        k for k in changes if not k.startswith("logger ")
    }
    assert {"logger <root>", "logger app.early"} <= changes
