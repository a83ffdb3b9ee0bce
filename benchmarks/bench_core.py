"""
Core benchmark: obslog side by side with the plain stdlib, python-json-logger and structlog.

All cases run in one process, one after the other, writing to a null stream through a
``logging.StreamHandler``; the unit (1.00x) is a plain ``logger.info`` through ``logging.Formatter``.

    python -m benchmarks.bench_core
"""

from __future__ import annotations

import logging
import platform
import sys

from time import perf_counter

import structlog

from pythonjsonlogger.json import JsonFormatter as PjlJsonFormatter
from pythonjsonlogger.orjson import OrjsonFormatter as PjlOrjsonFormatter

import obslog

from obslog._config import reset_defaults

from ._util import NullStream, measure, table


EXTRA = {"order_id": 42, "customer": "c-981", "items": 3}
TRACEPARENT = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")


def _logger(name: str, formatter: logging.Formatter, *filters: logging.Filter) -> logging.Logger:
    handler = logging.StreamHandler(NullStream())
    handler.setFormatter(formatter)
    for f in filters:
        handler.addFilter(f)
    logger = logging.getLogger(f"bench.{name}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def _scope() -> obslog.Scope:
    s = obslog.request_scope(
        method="GET", route="/orders/{id}", trace_id=TRACEPARENT[0], span_id=TRACEPARENT[1]
    )
    s.__enter__()
    for name in ("db_query", "cache_get", "remote_call"):
        with obslog.timed(name):
            pass
    return s


def bench_timer() -> list[tuple[str, float]]:
    """(a) a timed() block vs a bare perf_counter pair plus a dict update."""
    s = _scope()
    timings: dict[str, float] = {}

    def bare() -> None:
        t0 = perf_counter()
        timings["db_query"] = timings.get("db_query", 0.0) + perf_counter() - t0

    def with_timed() -> None:
        with obslog.timed("db_query"):
            pass

    rows = measure(
        [
            ("bare perf_counter pair + dict update", bare),
            ("with obslog.timed(...) in a scope", with_timed),
        ],
        number=100_000,
    )
    s.__exit__(None, None, None)
    return rows


def bench_lines() -> tuple[float, list[tuple[str, float]]]:
    """(b), (c), (d): one line through each stack."""
    obslog.configure(service="shop", env="bench", version="1.0", stream=NullStream())
    logging.getLogger().handlers.clear()  # only the per-case handlers below write

    plain = _logger("plain", logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    pjl = _logger("pjl", PjlJsonFormatter())
    pjl_orjson = _logger("pjl_orjson", PjlOrjsonFormatter())
    ours = _logger("obslog", obslog.JsonFormatter())

    # structlog's documented stdlib recipe: ProcessorFormatter + JSONRenderer(orjson).
    import orjson

    recipe_handler = logging.StreamHandler(NullStream())
    recipe_handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(serializer=lambda o, **kw: orjson.dumps(o).decode()),
            ],
            foreign_pre_chain=[structlog.stdlib.add_log_level, structlog.processors.TimeStamper(fmt="iso")],
        )
    )
    recipe_stdlib = logging.getLogger("bench.structlog_recipe")
    recipe_stdlib.handlers[:] = [recipe_handler]
    recipe_stdlib.propagate = False
    recipe_stdlib.setLevel(logging.INFO)
    recipe = structlog.wrap_logger(
        recipe_stdlib,
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
    ).bind()  # what cache_logger_on_first_use gives after the first call

    ours_struct_stdlib = logging.getLogger("bench.structlog_obslog")
    ours_struct_stdlib.handlers[:] = ours.handlers
    ours_struct_stdlib.propagate = False
    ours_struct_stdlib.setLevel(logging.INFO)
    ours_struct = structlog.wrap_logger(
        ours_struct_stdlib,
        processors=[structlog.contextvars.merge_contextvars, obslog.processors.render_to_stdlib],
        wrapper_class=obslog.processors.BoundLogger,
    ).bind()

    s = _scope()
    rows = measure(
        [
            ("stdlib logging.Formatter (unit)", lambda: plain.info("order listed")),
            ("python-json-logger JsonFormatter, 3 extras", lambda: pjl.info("order listed", extra=EXTRA)),
            ("python-json-logger OrjsonFormatter, 3 extras", lambda: pjl_orjson.info("order listed", extra=EXTRA)),
            ("stdlib + obslog, enriched (ids, 3 timers, 3 extras)", lambda: ours.info("order listed", extra=EXTRA)),
            ("structlog recipe: ProcessorFormatter + orjson, 3 kw", lambda: recipe.info("order listed", **EXTRA)),
            ("structlog + obslog -> stdlib, enriched, 3 kw", lambda: ours_struct.info("order listed", **EXTRA)),
            ("disabled call: stdlib + obslog logger.debug", lambda: ours.debug("order listed", extra=EXTRA)),
            ("disabled call: structlog + obslog log.debug", lambda: ours_struct.debug("order listed", **EXTRA)),
        ],
        number=10_000,
    )
    unit = rows[0][1]
    s.__exit__(None, None, None)
    reset_defaults()
    return unit, rows


def main() -> int:
    """Run every core case and print the tables."""
    print(f"obslog core benchmark — CPython {platform.python_version()} on {platform.machine()}")
    timer_rows = bench_timer()
    print(table("(a) timers, unit = bare perf_counter pair", timer_rows, timer_rows[0][1]))
    unit, rows = bench_lines()
    print(table("(b)(c)(d) one line, unit = plain stdlib logger.info", rows, unit))
    recipe = dict(rows)["structlog recipe: ProcessorFormatter + orjson, 3 kw"]
    ours = dict(rows)["structlog + obslog -> stdlib, enriched, 3 kw"]
    print(f"  structlog + obslog vs structlog's recipe: {ours / recipe:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
