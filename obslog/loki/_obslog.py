"""
What LokiHandler takes from obslog: its formatter and filter, the configured labels, the
record's trace id, and the ``loki_dropped`` counter of :func:`obslog.stats`.

Each is imported on use, so the handler also works on its own (a plain formatter, no filter).
"""

from __future__ import annotations

import contextlib
import logging

from typing import Any

from .._schema import TRACE_ID


__all__ = [
    "context_filter",
    "count_in_obslog_stats",
    "default_formatter",
    "default_labels",
    "trace_id_of",
]


def trace_id_of(record: logging.LogRecord) -> str | None:
    """Return the trace id obslog's ``ContextFilter`` captured, else a ``trace_id`` attribute."""
    captured = record.__dict__.get("_obslog")
    if captured:
        try:
            trace_id = captured[0].get(TRACE_ID) if captured[0] else None
        except (TypeError, AttributeError, IndexError):
            trace_id = None
        if trace_id:
            return str(trace_id)
    trace_id = getattr(record, TRACE_ID, None)
    return str(trace_id) if trace_id else None


def default_formatter() -> logging.Formatter:
    try:
        from obslog import JsonFormatter
    except ImportError:
        return logging.Formatter()
    formatter: logging.Formatter = JsonFormatter()
    return formatter


def context_filter() -> logging.Filter | None:
    """Return obslog's ``ContextFilter``: it puts the scope (and its trace_id) on each record."""
    try:
        from obslog import ContextFilter
    except ImportError:
        return None
    return ContextFilter()


def default_labels() -> dict[str, str]:
    try:
        from obslog._config import CONFIG
    except ImportError:
        service = env = None
    else:
        service, env = CONFIG.service, CONFIG.env
    labels = {"service": service or "unknown_service"}
    if env:
        labels["env"] = env
    return labels


_stats_incr: Any = None


def count_in_obslog_stats(n: int) -> None:
    global _stats_incr
    if _stats_incr is None:
        try:
            from obslog._stats import incr as found
        except ImportError:
            found = False  # type: ignore[assignment]
        _stats_incr = found
    if _stats_incr:
        with contextlib.suppress(Exception):  # counting must never break logging
            _stats_incr("loki_dropped", n)
