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
    extra: dict[str, Any] = {}
    if s._status is not None:
        extra["status"] = s._status
    extra["duration_ms"] = round(duration, 3)
    extra["outcome"] = s.outcome
    extra["sample_rate"] = sample_rate
    level = s._level
    if level is None:
        level = _LEVEL_OF_OUTCOME.get(s.outcome or "ok", logging.INFO)
    exc_info = (exc_type, exc, tb) if exc is not None and exc_type is not None else None
    try:
        logging.getLogger(CONFIG.canonical_logger).log(
            level, s.kind, exc_info=exc_info, extra=extra
        )
    except Exception:  # a raising filter or handler must not break the request
        _stats.incr("canonical_errors")
        return
    _stats.incr("canonical_lines")
