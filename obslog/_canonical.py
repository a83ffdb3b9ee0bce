"""
The canonical line: one wide line per ended scope, with its duration, status and outcome.
"""

from __future__ import annotations

import logging
import random

from types import TracebackType
from typing import TYPE_CHECKING, Any

from . import _stats
from ._config import CONFIG


if TYPE_CHECKING:
    from ._context import Scope


__all__ = ["emit", "outcome"]


def outcome(exc: BaseException | None, status: int | None) -> str:
    """Return ``"error"``, ``"cancelled"`` or ``"ok"`` for a scope ended by *exc* with *status*."""
    if exc is not None:
        return "error" if isinstance(exc, Exception) else "cancelled"
    if status is not None and status >= 500:
        return "error"
    return "ok"


_LEVEL_OF_OUTCOME = {"ok": logging.INFO, "cancelled": logging.WARNING, "error": logging.ERROR}
# The canonical logger of the last name asked for: logging.getLogger takes logging's lock.
_logger_of_name: dict[str, logging.Logger] = {}


def _canonical_logger(name: str) -> logging.Logger:
    logger = _logger_of_name.get(name)
    # The logger logging holds for *name* now (a test may have cleared logging's registry).
    if logger is None or logging.Logger.manager.loggerDict.get(name) is not logger:
        logger = logging.getLogger(name)
        _logger_of_name.clear()
        _logger_of_name[name] = logger
    return logger


def emit(
    s: Scope,
    exc_type: type[BaseException] | None,
    exc: BaseException | None,
    tb: TracebackType | None,
) -> None:
    """Write the canonical line of the ended scope *s* (unless sampled out); never raises."""
    duration = s.duration_ms or 0.0
    sample_rate = CONFIG.sample_rate
    if sample_rate > 1:
        slow = CONFIG.slow_ms
        if s.outcome != "ok" or (slow is not None and duration >= slow):
            sample_rate = 1
        elif random.random() * sample_rate >= 1.0:  # sampling, not security
            _stats.incr("sampled_out")
            return
    status = s._status
    extra: dict[str, Any]
    if status is None:
        extra = {
            "duration_ms": round(duration, 3),
            "outcome": s.outcome,
            "sample_rate": sample_rate,
        }
    else:
        extra = {
            "status": status,
            "duration_ms": round(duration, 3),
            "outcome": s.outcome,
            "sample_rate": sample_rate,
        }
    level = s._level
    if level is None:
        level = _LEVEL_OF_OUTCOME.get(s.outcome or "ok", logging.INFO)
    exc_info = (exc_type, exc, tb) if exc is not None and exc_type is not None else None
    try:
        _canonical_logger(CONFIG.canonical_logger).log(
            level, s.kind, exc_info=exc_info, extra=extra
        )
    except Exception:  # a raising filter or handler must not break the request
        _stats.incr("canonical_errors")
        return
    _stats.incr("canonical_lines")
