"""
The core benchmark's cases, built once and shared by the wall-clock and the instruction-count
modes.

Each case is a *builder*: a function that sets the case up (loggers, handlers, an open request
scope) and returns the zero-argument call to measure.  Every builder configures its own loggers
under ``bench.<name>`` writing to a null stream, so a case measures the same work whichever process
or mode runs it.  :data:`LINE_CASES` are measured against the plain stdlib line,
:data:`TIMER_CASES` against a bare ``perf_counter`` pair.
"""

from __future__ import annotations

import atexit
import logging

from collections.abc import Callable
from time import perf_counter

import orjson
import structlog

from pythonjsonlogger.json import JsonFormatter as PjlJsonFormatter
from pythonjsonlogger.orjson import OrjsonFormatter as PjlOrjsonFormatter

import obslog

from ._util import NullStream


__all__ = ["CASES", "LINE_CASES", "TIMER_CASES", "Builder"]

Builder = Callable[[], Callable[[], object]]

EXTRA = {"order_id": 42, "customer": "c-981", "items": 3}
TRACEPARENT = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
TIMERS = ("db_query", "cache_get", "remote_call")


class _NullBytes:
    """structlog's ``BytesLogger`` target: a binary file that drops everything."""

    def write(self, _data: bytes) -> int:
        return 0

    def flush(self) -> None:
        pass


def _configure() -> None:
    obslog.configure(service="shop", env="bench", version="1.0", stream=NullStream())
    logging.getLogger().handlers.clear()  # only the per-case handlers write


def _logger(name: str, formatter: logging.Formatter | None = None) -> logging.Logger:
    handler = logging.StreamHandler(NullStream())
    if formatter is not None:
        handler.setFormatter(formatter)
    logger = logging.getLogger(f"bench.{name}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def _open_scope() -> obslog.Scope:
    """An entered request scope with ids and three timers, as in a request's handler."""
    s = obslog.request_scope(
        method="GET", route="/orders/{id}", trace_id=TRACEPARENT[0], span_id=TRACEPARENT[1]
    )
    s.__enter__()
    for name in TIMERS:
        with obslog.timed(name):
            pass
    return s


def _obslog_stdlib() -> logging.Logger:
    _configure()
    _open_scope()
    return _logger("obslog", obslog.JsonFormatter())


def _obslog_structlog() -> structlog.typing.FilteringBoundLogger:
    """What users get: ``obslog.configure()``, then ``structlog.get_logger(name)``, cached."""
    _obslog_stdlib()  # configures obslog (and structlog) and gives bench.obslog its handler
    log = structlog.get_logger("bench.obslog")
    log.info("warm")  # cached now: a later structlog.configure() does not change this logger
    return log  # type: ignore[no-any-return]


def _structlog_alone() -> structlog.typing.FilteringBoundLogger:
    """structlog's own fast path: filtering bound logger, orjson renderer, bytes out, no stdlib."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.BytesLoggerFactory(_NullBytes()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    log = structlog.get_logger()
    log.info("warm")  # cached now: a later structlog.configure() does not change this logger
    return log  # type: ignore[no-any-return]


def plain() -> Callable[[], object]:
    """The unit: a plain ``logger.info`` through ``logging.Formatter``."""
    log = _logger("plain", logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    return lambda: log.info("order listed")


def pjl() -> Callable[[], object]:
    """python-json-logger's ``JsonFormatter`` with 3 extras."""
    log = _logger("pjl", PjlJsonFormatter())
    return lambda: log.info("order listed", extra=EXTRA)


def pjl_orjson() -> Callable[[], object]:
    """python-json-logger's ``OrjsonFormatter`` with 3 extras."""
    log = _logger("pjl_orjson", PjlOrjsonFormatter())
    return lambda: log.info("order listed", extra=EXTRA)


def obslog_stdlib() -> Callable[[], object]:
    """stdlib + obslog: ids, 3 timers, 3 extras on the line."""
    log = _obslog_stdlib()
    return lambda: log.info("order listed", extra=EXTRA)


def structlog_recipe() -> Callable[[], object]:
    """structlog's documented stdlib recipe: ``ProcessorFormatter`` + ``JSONRenderer(orjson)``."""
    formatter = structlog.stdlib.ProcessorFormatter(
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.JSONRenderer(serializer=lambda o, **kw: orjson.dumps(o).decode()),
        ],
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
        ],
    )
    log = structlog.wrap_logger(
        _logger("structlog_recipe", formatter),
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
    ).bind()
    return lambda: log.info("order listed", **EXTRA)


def structlog_alone() -> Callable[[], object]:
    """structlog on its own (no stdlib, no obslog), 3 keywords."""
    log = _structlog_alone()
    return lambda: log.info("order listed", **EXTRA)


def obslog_structlog() -> Callable[[], object]:
    """structlog + obslog routed to stdlib: ids, 3 timers, 3 keywords on the line."""
    log = _obslog_structlog()
    return lambda: log.info("order listed", **EXTRA)


def disabled_stdlib() -> Callable[[], object]:
    """A filtered-out ``logger.debug`` with obslog configured."""
    log = _obslog_stdlib()
    return lambda: log.debug("order listed", extra=EXTRA)


def disabled_obslog_structlog() -> Callable[[], object]:
    """A filtered-out ``log.debug`` through obslog's structlog logger."""
    log = _obslog_structlog()
    return lambda: log.debug("order listed", **EXTRA)


def disabled_structlog() -> Callable[[], object]:
    """structlog's own filtered-out ``log.debug`` through ``structlog.get_logger()``."""
    log = _structlog_alone()
    return lambda: log.debug("order listed", **EXTRA)


def request_scope() -> Callable[[], object]:
    """A whole request: scope entered, 3 timers, exited with its canonical line."""
    _configure()
    canonical = logging.getLogger(obslog.get_config()["canonical_logger"])
    canonical.handlers[:] = _logger("canonical", obslog.JsonFormatter()).handlers
    canonical.propagate = False

    def request() -> None:
        with obslog.request_scope(
            method="GET", route="/orders/{id}", trace_id=TRACEPARENT[0], span_id=TRACEPARENT[1]
        ) as req:
            for name in TIMERS:
                with obslog.timed(name):
                    pass
            req.status = 200

    return request


def stream_emit() -> Callable[[], object]:
    """``StreamHandler.emit`` of a prepared record through obslog's formatter."""
    _configure()
    _open_scope()
    handler = logging.StreamHandler(NullStream())
    handler.setFormatter(obslog.JsonFormatter())
    record = logging.getLogger("bench.emit").makeRecord(
        "bench.emit", logging.INFO, __file__, 1, "order listed", (), None, extra=EXTRA
    )
    return lambda: handler.emit(record)


def loki_emit() -> Callable[[], object]:
    """``LokiHandler.emit`` of the same record: format and append to the batch, no I/O."""
    from obslog.loki import LokiHandler

    _configure()
    _open_scope()
    # Nothing listens on port 9 of loopback; the batch never fills nor times out within a run.
    handler = LokiHandler(
        "http://127.0.0.1:9/loki/api/v1/push",
        batch_size=1 << 40,
        batch_wait=3600.0,
        queue_size=10_000_000,
        flush_timeout=0.1,
    )
    # Only emit() is measured: the lines it buffered are dropped before the exit-time flush
    # (registered later, so run first), which would otherwise encode and gzip them all.
    atexit.register(handler._buf.clear)
    record = logging.getLogger("bench.emit").makeRecord(
        "bench.emit", logging.INFO, __file__, 1, "order listed", (), None, extra=EXTRA
    )
    return lambda: handler.emit(record)


def bare_timer() -> Callable[[], object]:
    """The timer unit: a bare ``perf_counter`` pair and a dict update."""
    timings: dict[str, float] = {}

    def bare() -> None:
        t0 = perf_counter()
        timings["db_query"] = timings.get("db_query", 0.0) + perf_counter() - t0

    return bare


def timed() -> Callable[[], object]:
    """``with obslog.timed("db_query")`` inside an open scope."""
    _configure()
    _open_scope()

    def block() -> None:
        with obslog.timed("db_query"):
            pass

    return block


LINE_CASES: dict[str, tuple[str, Builder]] = {
    "plain": ("stdlib logging.Formatter (unit)", plain),
    "pjl": ("python-json-logger JsonFormatter, 3 extras", pjl),
    "pjl_orjson": ("python-json-logger OrjsonFormatter, 3 extras", pjl_orjson),
    "obslog_stdlib": ("stdlib + obslog, enriched (ids, 3 timers, 3 extras)", obslog_stdlib),
    "structlog_alone": ("structlog alone: filtering logger + orjson, bytes, 3 kw", structlog_alone),
    "structlog_recipe": ("structlog recipe: ProcessorFormatter + orjson, 3 kw", structlog_recipe),
    "obslog_structlog": ("structlog + obslog -> stdlib, enriched, 3 kw", obslog_structlog),
    "disabled_stdlib": ("disabled call: stdlib + obslog logger.debug", disabled_stdlib),
    "disabled_structlog": ("disabled call: structlog's own log.debug", disabled_structlog),
    "disabled_obslog_structlog": (
        "disabled call: structlog + obslog log.debug",
        disabled_obslog_structlog,
    ),
    "request_scope": ("request scope + 3 timers + canonical line", request_scope),
    "stream_emit": ("StreamHandler.emit, obslog formatter", stream_emit),
    "loki_emit": ("LokiHandler.emit, obslog formatter", loki_emit),
}
TIMER_CASES: dict[str, tuple[str, Builder]] = {
    "bare_timer": ("bare perf_counter pair + dict update (unit)", bare_timer),
    "timed": ("with obslog.timed(...) in a scope", timed),
}
CASES = {**LINE_CASES, **TIMER_CASES}
