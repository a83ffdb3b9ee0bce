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
import threading
import time

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import structlog

from structlog.contextvars import merge_contextvars
from structlog.typing import EventDict

from . import _stats
from ._config import CONFIG
from ._context import capture
from ._records import make_record_maker
from ._render import build, degraded, find_callsite, redact, render_console, to_json
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
    return _render(
        getattr(logger, "name", None) or "root", method_name, event_dict, time.time(), os.getpid()
    )


def _render(
    logger_name: str, method_name: str, event_dict: EventDict, created: float, pid: int
) -> RenderedLine:
    """Render *event_dict* (its ``event``, ``exc_info`` and ``stack_info`` taken out) as a line."""
    event = event_dict.pop("event", "")
    exc_info = event_dict.pop("exc_info", None)
    stack_info = event_dict.pop("stack_info", None)
    if exc_info is True:
        exc_info = sys.exc_info()
    ctx, timings = capture()
    line = build(
        created,
        _METHOD_LEVEL.get(method_name, method_name),
        logger_name,
        event,
        pid,
        ctx,
        timings,
        event_dict,
        exc_info,
        stack_info if isinstance(stack_info, str) else None,
        find_callsite() if CONFIG.callsite else None,
    )
    # render(line, CONFIG.fmt), inlined: one call fewer per line.
    if CONFIG.fmt == "console":
        return RenderedLine(render_console(line, CONFIG.colors))
    return RenderedLine(to_json(line))


# -- the record of a rendered line -------------------------------------------------------------

# Where a structlog line's record says it comes from (its caller is on the line, when asked for).
_SOURCE = "(structlog)"
# A new LogRecord for a line, as logging.LogRecord makes it (or the record factory, where one is
# set): the caller sets msg to the line, which takes the record's time and pid.
_record = make_record_maker(_SOURCE, None, from_factory=True)


# -- the bound logger: level methods from a table, _nop below the stdlib logger's level -----------

# structlog's level methods and the stdlib level number each one logs at (_METHOD_LEVEL: its name).
_METHOD_LEVELNO = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "msg": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}
# The chain obslog.configure() installs; a logger with it renders without running the chain.
_OBSLOG_CHAIN = [merge_contextvars, render_to_stdlib]
# structlog's own context variables by prefixed name, as bind_contextvars() registers them
# (None: this structlog keeps them elsewhere, and merge_contextvars runs on every line).
_STRUCTLOG_VARS: dict[str, ContextVar[Any]] | None = getattr(
    structlog.contextvars, "_CONTEXT_VARS", None
)
_PREFIX_LEN = len(structlog.contextvars.STRUCTLOG_KEY_PREFIX)
# logging's lock: the stdlib fills and clears its loggers' level caches while holding it.
_LOGGING_LOCK = getattr(logging, "_lock", None) or threading.RLock()


def _merge_contextvars(logger: Any, method: str, event_dict: EventDict) -> None:
    """
    Add what ``bind_contextvars()`` bound in this context, as ``merge_contextvars`` does.

    structlog's processor copies the whole context and scans every variable in it; here only
    structlog's own variables are read, and none when nothing was ever bound.
    """
    if _STRUCTLOG_VARS is None:
        merge_contextvars(logger, method, event_dict)
        return
    for name, var in _STRUCTLOG_VARS.items():
        value = var.get()
        if value is not Ellipsis:  # unbound, or cleared
            event_dict.setdefault(name[_PREFIX_LEN:], value)


def _nop(*args: Any, **kw: Any) -> None:
    """Stand in for a level method below the stdlib logger's level: return at once."""


def _level_method(name: str) -> Callable[..., None]:
    """Return the level method *name* of :data:`_METHOD_LEVELNO`."""
    level = _METHOD_LEVELNO[name]
    exception = name == "exception"

    def method(self: BoundLogger, event: Any = None, *args: Any, **kw: Any) -> None:
        if not self._logger.isEnabledFor(level):
            self._nop_below_level()
            return
        if exception:
            kw.setdefault("exc_info", True)
        self._log(name, level, event, args, kw)

    method.__name__ = method.__qualname__ = name
    doing = " with the exception being handled" if exception else ""
    method.__doc__ = f"Log *event* at {logging.getLevelName(level)}{doing}."
    return method


def _method_of(level: int) -> str:
    """Return the level method that logs at the numeric *level* (``info`` for a custom level)."""
    name = logging.getLevelName(level)
    method = name.lower() if isinstance(name, str) else "info"
    return method if method in _METHOD_LEVEL else "info"


class BoundLogger(structlog.BoundLoggerBase):
    """
    A structlog bound logger over a stdlib ``logging.Logger`` that never raises into the caller.

    Levels are the stdlib logger's (one place to set them).  A level method below it is
    ``_nop``, as in structlog's filtering loggers: the first call finds the level off and puts
    ``_nop`` in place of every method below the level, in the stdlib logger's own level cache
    (``Logger._cache``, this logger's attribute dict), which logging empties whenever a level
    changes (``setLevel()`` on any logger, ``logging.disable()``).  So a filtered-out call costs
    one call, and a level set at runtime takes effect at once, for cached loggers too.

    With the chain :func:`obslog.configure` installs (``merge_contextvars``, then
    :func:`render_to_stdlib`), the line is rendered without running the chain, to the same
    result; any other chain runs as structlog runs it.  A processor that raises is counted in
    ``obslog.stats()["render_errors"]`` and the event is still written, in degraded form.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       Level methods below the level are ``_nop``.
    """

    # Kept out of the attribute dict, which is the stdlib logger's level cache.
    __slots__ = ("_context", "_logger", "_processors")

    def __init__(self, logger: Any, processors: Any, context: Any) -> None:
        super().__init__(logger, processors, context)
        cache = getattr(logger, "_cache", None)
        if cache.__class__ is dict and self.__class__ is BoundLogger:
            # A subclass may keep attributes of its own: it decides its levels on every call.
            self.__dict__ = cache

    def __reduce__(self) -> tuple[Any, ...]:
        """Copy and pickle the logger, not the level cache it shares."""
        return (self.__class__, (self._logger, self._processors, self._context))

    def __dir__(self) -> list[str]:
        """Return the attribute names (the attribute dict also holds the cache's level numbers)."""
        return [name for name in object.__dir__(self) if name.__class__ is str]

    def _nop_below_level(self) -> None:
        """Put ``_nop`` in place of every level method below the stdlib logger's level."""
        logger = self._logger
        methods = self.__dict__
        if methods is not getattr(logger, "_cache", None):
            return
        with _LOGGING_LOCK:  # a level changed meanwhile is cleared after this
            if logger.disabled:  # not a level, and not cached by logging either
                return
            for name, level in _METHOD_LEVELNO.items():
                if not logger.isEnabledFor(level):
                    methods[name] = _nop

    def _log(
        self, method: str, level: int, event: Any, args: tuple[Any, ...], kw: dict[str, Any]
    ) -> None:
        """Render the event and hand its record to the stdlib logger (the level is enabled)."""
        logger = self._logger
        try:
            if args:
                event = event % args
            if self._processors == _OBSLOG_CHAIN:
                # What structlog's _process_event does with this chain, without running it.
                context = self._context
                event_dict = {**context, **kw} if context else kw
                if event is not None:
                    event_dict["event"] = event
                if _STRUCTLOG_VARS is None or _STRUCTLOG_VARS:  # something was ever bound
                    _merge_contextvars(logger, method, event_dict)
                name = logger.name
                record = _record(name, level)
                record.msg = _render(
                    name, method, event_dict, record.created, record.process or os.getpid()
                )
            else:
                line_args, line_kw = self._process_event(method, event, kw)
                if line_kw or len(line_args) != 1:  # a custom last processor: stdlib formats
                    logger.log(level, *line_args, **line_kw)
                    return
                record = _record(logger.name, level)
                record.msg = line_args[0]
        except structlog.DropEvent:
            return
        except Exception as exc:  # logging must not raise into the application
            _stats.incr("render_errors")
            try:
                extras: dict[str, Any] | None = {**self._context, **kw}
            except Exception:
                extras = None
            line = RenderedLine(
                degraded(_METHOD_LEVEL[method], logger.name, event, exc, extras=extras)
            )
            try:
                record = _record(logger.name, level)
            except Exception:  # a record factory that raises
                _stats.incr("dropped")
                return
            record.msg = line
        try:
            # The line is complete: Logger._log's findCaller and makeRecord are not needed.
            logger.handle(record)
        except Exception:
            _stats.incr("dropped")

    debug = _level_method("debug")
    info = msg = _level_method("info")
    warning = warn = _level_method("warning")
    error = _level_method("error")
    exception = _level_method("exception")
    critical = fatal = _level_method("critical")

    def log(self, level: int, event: Any = None, *args: Any, **kw: Any) -> None:
        """Log *event* at the numeric *level*."""
        if self._logger.isEnabledFor(level):
            self._log(_method_of(level), level, event, args, kw)

    async def ainfo(self, event: Any = None, *args: Any, **kw: Any) -> None:
        """Log *event* at INFO (async spelling; logging itself does not block on I/O here)."""
        self.info(event, *args, **kw)

    async def awarning(self, event: Any = None, *args: Any, **kw: Any) -> None:
        """Log *event* at WARNING (async spelling)."""
        self.warning(event, *args, **kw)

    async def aerror(self, event: Any = None, *args: Any, **kw: Any) -> None:
        """Log *event* at ERROR (async spelling)."""
        self.error(event, *args, **kw)

    async def adebug(self, event: Any = None, *args: Any, **kw: Any) -> None:
        """Log *event* at DEBUG (async spelling)."""
        self.debug(event, *args, **kw)
