"""
structlog processors and the bound logger that route structlog through the standard library.

:func:`obslog.configure` sets structlog up with these; use them directly to compose your own chain:

.. code-block:: python

    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, obslog.processors.render_to_stdlib],
        wrapper_class=obslog.processors.BoundLogger,
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )

The last processor renders the whole line (the same fields as :class:`obslog.JsonFormatter`) and
hands it to the stdlib logger as a :class:`~obslog.RenderedLine`, which obslog's formatters write
unchanged: one rendering per event, not two.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from typing import Any

import structlog

from structlog.typing import EventDict

from . import _stats
from ._config import CONFIG
from ._context import capture
from ._render import build, degraded, find_callsite, redact, render
from ._stdlib import RenderedLine


__all__ = ["BoundLogger", "add_context", "redact_secrets", "render_to_stdlib"]

_METHOD_LEVEL = {
    "debug": "debug",
    "info": "info",
    "msg": "info",
    "warning": "warning",
    "warn": "warning",
    "error": "error",
    "exception": "error",
    "critical": "critical",
    "fatal": "critical",
}


def add_context(logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
    """
    Add the current scope's ids, bound fields and timings to *event_dict*.

    For chains that render with something other than :func:`render_to_stdlib` (which does this
    itself).  Values already in *event_dict* win, as with ``merge_contextvars``.

    .. versionadded:: 0.1.0
    """
    ctx, timings = capture()
    if ctx:
        for key, value in ctx.items():
            event_dict.setdefault(key, value)
    if timings:
        event_dict.setdefault("timings", timings)
    return event_dict


def redact_secrets(logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
    """Replace the values of secret keys (``password``, ``token``, ...) at any depth.

    Every container is reached (mappings that are not dicts, dataclasses, namedtuples, sets);
    below 32 levels a subtree becomes ``"<too deep>"``.  :func:`render_to_stdlib` does this itself.

    .. versionadded:: 0.1.0
    """
    return redact(event_dict)  # type: ignore[no-any-return]


def render_to_stdlib(logger: Any, method_name: str, event_dict: EventDict) -> RenderedLine:
    """
    Render *event_dict* as an obslog line, to be passed to a stdlib logger.

    Must be the last processor.  Context, timings, redaction, exceptions (``exc_info``) and the
    static fields are all applied here, exactly as the stdlib formatter does.  A keyword named
    like a schema field (``level``, ``timestamp``, ``logger``...) is kept as ``extra_<key>``, as
    ``extra=`` keys are on the stdlib path; obslog sets those fields itself, so structlog's
    ``add_log_level``, ``add_logger_name`` and ``TimeStamper`` are not needed in the chain.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0 ``level``, ``timestamp`` and ``logger`` keywords are kept as
       ``extra_<key>`` instead of being dropped.
    """
    event = event_dict.pop("event", "")
    exc_info = event_dict.pop("exc_info", None)
    stack_info = event_dict.pop("stack_info", None)
    if exc_info is True:
        exc_info = sys.exc_info()
    ctx, timings = capture()
    line = build(
        time.time(),
        _METHOD_LEVEL.get(method_name, method_name),
        getattr(logger, "name", None) or "root",
        event,
        os.getpid(),
        ctx,
        timings,
        event_dict,
        exc_info,
        stack_info if isinstance(stack_info, str) else None,
        find_callsite() if CONFIG.callsite else None,
    )
    return RenderedLine(render(line, CONFIG.fmt))


class BoundLogger(structlog.BoundLoggerBase):
    """
    A structlog bound logger over a stdlib ``logging.Logger`` that never raises into the caller.

    Level filtering is the stdlib logger's (one place to set levels); a filtered-out call returns
    before any processor runs.  A processor that raises is counted in
    ``obslog.stats()["render_errors"]`` and the event is still written, in degraded form.

    .. versionadded:: 0.1.0
    """

    def _emit(
        self, method: str, levelno: int, event: Any, args: tuple[Any, ...], kw: dict[str, Any]
    ) -> Any:
        # Callers have checked isEnabledFor(levelno): a filtered-out call costs one method call.
        stdlib_logger = self._logger
        try:
            if args:
                event = event % args
            line_args, line_kw = self._process_event(method, event, kw)
        except structlog.DropEvent:
            return None
        except Exception as exc:  # logging must not raise into the application
            _stats.incr("render_errors")
            try:
                extras: dict[str, Any] | None = {**self._context, **kw}
            except Exception:
                extras = None
            line_args = (
                RenderedLine(
                    degraded(
                        _METHOD_LEVEL[method], stdlib_logger.name, event, exc, extras=extras
                    )
                ),
            )
            line_kw = {}
        try:
            if line_kw or len(line_args) != 1:  # a custom last processor: let the stdlib format
                return stdlib_logger.log(levelno, *line_args, **line_kw)
            # The line is complete; skip Logger._log's findCaller, whose frame would be ours anyway.
            record = logging.getLogRecordFactory()(
                stdlib_logger.name, levelno, "(structlog)", 0, line_args[0], None, None
            )
            stdlib_logger.handle(record)
        except Exception:
            _stats.incr("dropped")
        return None

    def debug(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        """Log *event* at DEBUG."""
        if not self._logger.isEnabledFor(logging.DEBUG):
            return None
        return self._emit("debug", logging.DEBUG, event, args, kw)

    def info(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        """Log *event* at INFO."""
        if not self._logger.isEnabledFor(logging.INFO):
            return None
        return self._emit("info", logging.INFO, event, args, kw)

    msg = info

    def warning(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        """Log *event* at WARNING."""
        if not self._logger.isEnabledFor(logging.WARNING):
            return None
        return self._emit("warning", logging.WARNING, event, args, kw)

    warn = warning

    def error(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        """Log *event* at ERROR."""
        if not self._logger.isEnabledFor(logging.ERROR):
            return None
        return self._emit("error", logging.ERROR, event, args, kw)

    def exception(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        """Log *event* at ERROR with the exception being handled."""
        if not self._logger.isEnabledFor(logging.ERROR):
            return None
        kw.setdefault("exc_info", True)
        return self._emit("exception", logging.ERROR, event, args, kw)

    def critical(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        """Log *event* at CRITICAL."""
        if not self._logger.isEnabledFor(logging.CRITICAL):
            return None
        return self._emit("critical", logging.CRITICAL, event, args, kw)

    fatal = critical

    def log(self, level: int, event: Any = None, *args: Any, **kw: Any) -> Any:
        """Log *event* at the numeric *level*."""
        if not self._logger.isEnabledFor(level):
            return None
        name = logging.getLevelName(level)
        method = name.lower() if isinstance(name, str) and name.lower() in _METHOD_LEVEL else "info"
        return self._emit(method, level, event, args, kw)

    async def ainfo(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        """Log *event* at INFO (async spelling; logging itself does not block on I/O here)."""
        return self.info(event, *args, **kw)

    async def awarning(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        """Log *event* at WARNING (async spelling)."""
        return self.warning(event, *args, **kw)

    async def aerror(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        """Log *event* at ERROR (async spelling)."""
        return self.error(event, *args, **kw)

    async def adebug(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        """Log *event* at DEBUG (async spelling)."""
        return self.debug(event, *args, **kw)
