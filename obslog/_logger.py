"""
obslog's logger class: ``extra`` with any key, the caller looked for only when something reads it,
and filtered-out level methods that return at once.

:func:`install_logger_class` is called by :func:`obslog.configure` alone.
"""

from __future__ import annotations

import logging
import sys

from collections.abc import Mapping
from typing import Any

from . import _records
from ._config import CONFIG
from ._records import UNKNOWN_FILE
from ._stdlib import (
    _EXTRA,
    _LOG_RECORD_KEYS,
    CALLER_ATTRS,
    ConsoleFormatter,
    ContextFilter,
    JsonFormatter,
    _Extra,
    _new,
)


__all__ = ["ObslogLogger", "install_logger_class"]

# What the stdlib records when it does not look for the caller (``logging._srcfile = None``).
_NO_CALLER = (UNKNOWN_FILE, 0, "(unknown function)", None)
# A handler's remembered answer: (formatter, filters, may read the caller).
_ROUTE_MEMO = "_obslog_reads_caller"


def _known_filter(obj: object) -> bool:
    """Return whether *obj* is a filter known not to read a record's caller."""
    cls = obj.__class__
    return cls is ContextFilter or cls is logging.Filter  # logging.Filter reads the name only


def _text_handler(cls: type) -> bool:
    """Return whether handlers of class *cls* read nothing of a record but its formatted text."""
    if cls in (logging.StreamHandler, logging.FileHandler, logging.NullHandler):
        return True
    if cls is logging.lastResort.__class__:  # logging's _StderrHandler
        return True
    # Only when loaded: a handler of theirs is an instance of a loaded class.
    handlers = sys.modules.get("logging.handlers")
    if handlers is not None and cls in (
        handlers.RotatingFileHandler,
        handlers.TimedRotatingFileHandler,
        handlers.WatchedFileHandler,
    ):
        return True
    loki = sys.modules.get("obslog.loki.handler")
    # LokiHandler reads the time, level, message, trace id and context: never the caller.
    return loki is not None and cls is loki.LokiHandler


def _formatter_reads_caller(formatter: logging.Formatter | None) -> bool:
    """Return whether *formatter* may write a record's caller; ``True`` for any unknown one."""
    if formatter is None:
        return False  # logging's default formatter: "%(message)s"
    cls = formatter.__class__
    if cls is JsonFormatter or cls is ConsoleFormatter:
        return formatter._reads_caller  # type: ignore[attr-defined,no-any-return]
    if cls is logging.Formatter:
        # Any style: "%(lineno)d", "{lineno}" and "$lineno" all name the attribute.
        text = str(getattr(formatter._style, "_fmt", None) or "")
        return any(name in text for name in CALLER_ATTRS)
    return True


def _remember(handler: logging.Handler) -> tuple[Any, list[Any], bool]:
    """Decide whether *handler* may read a record's caller, and remember it on the handler."""
    formatter, filters = handler.formatter, list(handler.filters)
    reads = (
        not _text_handler(handler.__class__)
        or not all(_known_filter(f) for f in filters)
        or _formatter_reads_caller(formatter)
    )
    memo = (formatter, filters, reads)
    setattr(handler, _ROUTE_MEMO, memo)
    return memo


# The level methods that do nothing but call _log at their level (warn also warns; fatal varies).
_LEVEL_METHODS: dict[int, tuple[str, ...]] = {
    logging.DEBUG: ("debug",),
    logging.INFO: ("info",),
    logging.WARNING: ("warning",),
    logging.ERROR: ("error", "exception"),
    logging.CRITICAL: ("critical",),
}


def _nop(*args: Any, **kwargs: Any) -> None:
    """Stand in for a level method below the logger's level."""


def _drop_nops(logger: object) -> None:
    """Give *logger* its class's level methods back (a no-op when it has none of obslog's)."""
    if isinstance(logger, logging.Logger):
        for names in _LEVEL_METHODS.values():
            for name in names:
                if getattr(logger, name) is _nop:
                    delattr(logger, name)


def _hook_cache_clear(manager: logging.Manager) -> None:
    """
    Make logging's level-cache reset also drop the loggers' :func:`_nop` level methods.

    ``Manager._clear_cache`` is what ``setLevel`` on any logger and ``logging.disable`` call,
    under logging's lock; afterwards every level is decided again by ``isEnabledFor``.
    """
    clear = manager._clear_cache  # type: ignore[attr-defined]
    if getattr(clear, "obslog_drops_nops", False):
        return

    def clear_cache() -> None:
        clear()
        with logging._lock:  # type: ignore[attr-defined]
            _drop_nops(manager.root)
            for logger in list(manager.loggerDict.values()):
                _drop_nops(logger)

    clear_cache.obslog_drops_nops = True  # type: ignore[attr-defined]
    manager._clear_cache = clear_cache  # type: ignore[attr-defined]


class ObslogLogger(logging.Logger):
    """
    A ``logging.Logger`` whose ``extra`` may use any key, and that looks for the caller only when
    something reads it.

    The standard ``Logger.makeRecord`` raises ``KeyError`` into the application when an ``extra``
    key is a LogRecord attribute (``name``, ``msg``, ``message``, ...).  Here such a key is kept as
    ``extra_<key>`` instead.  :func:`obslog.configure` installs this class (an opt-in: obslog's
    formatters render every record without it); elsewhere call
    ``logging.setLoggerClass(obslog.ObslogLogger)`` before creating your loggers.

    The stdlib walks the stack on every call to record the caller (``lineno``, ``funcName``,
    ``module``...), about a fifth of a plain line.  obslog's lines do not show it unless
    ``configure(callsite=True)``, so ``findCaller`` skips the walk when no handler the record
    reaches may read it; the record then carries the stdlib's own "unknown" values, as when
    ``logging._srcfile`` is ``None``.  A handler, filter or formatter obslog does not know counts
    as reading it (``QueueHandler``, ``MemoryHandler``, ``SocketHandler``, pytest's ``caplog``, a
    ``logging.Formatter`` whose format names a caller attribute, any subclass).

    Once :func:`obslog.configure` has hooked logging's level-cache reset, a level method below the
    logger's level is replaced on the instance by one that returns at once (as structlog's
    filtering loggers do), until the next ``setLevel`` or ``logging.disable`` anywhere.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       ``findCaller`` skips the stack walk when nothing reads the caller; a filtered-out call
       costs one call.
    """

    def isEnabledFor(self, level: int) -> bool:
        """Return whether a record at *level* would be processed, as ``logging.Logger`` does."""
        try:
            enabled: bool = self._cache[level]  # type: ignore[attr-defined]
        except KeyError:
            enabled = logging.Logger.isEnabledFor(self, level)
        else:
            return enabled and not self.disabled
        if not enabled:
            cls = self.__class__
            names = [
                name
                for name in _LEVEL_METHODS.get(level, ())
                # Never in place of a subclass's own method.
                if getattr(cls, name) is getattr(logging.Logger, name)
            ]
            with logging._lock:  # type: ignore[attr-defined]
                # Still decided (not cleared meanwhile) and cleared only under this lock.
                if (
                    names
                    and self._cache.get(level) is False  # type: ignore[attr-defined]
                    and getattr(self.manager._clear_cache, "obslog_drops_nops", False)  # type: ignore[attr-defined]
                ):
                    for name in names:
                        setattr(self, name, _nop)
        return enabled

    def findCaller(  # stdlib signature
        self, stack_info: bool = False, stacklevel: int = 1
    ) -> tuple[str, int, str, str | None]:
        """
        Return the caller's file, line, function and stack; "unknown" when nothing reads them.

        Conservative: any filter, handler class or formatter obslog does not know may read the
        caller, and so does ``logging.lastResort`` (no handler found).  Each handler's answer is
        remembered on it with its formatter and filters, and decided again when either changes.
        """
        reads = stack_info or CONFIG.callsite
        if not reads and self.filters:
            reads = not all(_known_filter(f) for f in self.filters)
        reached = False
        logger: logging.Logger | None = self
        while logger and not reads:  # the handlers a record reaches, as callHandlers walks them
            for handler in logger.handlers:
                # getattr, not __dict__: reading an instance's __dict__ slows its attributes.
                memo = getattr(handler, _ROUTE_MEMO, None)
                if memo is None or memo[0] is not handler.formatter or memo[1] != handler.filters:
                    memo = _remember(handler)
                reached = True
                if memo[2]:
                    reads = True
                    break
            logger = logger.parent if logger.propagate else None
        if reached and not reads:
            return _NO_CALLER
        # One level more: this frame is not one of those logging skips as its own.
        return super().findCaller(stack_info, stacklevel + 1)

    def makeRecord(  # stdlib signature
        self,
        name: str,
        level: int,
        fn: str,
        lno: int,
        msg: object,
        args: Any,
        exc_info: Any,
        func: str | None = None,
        extra: Any = None,
        sinfo: str | None = None,
    ) -> logging.LogRecord:
        """Make the record, renaming ``extra`` keys that would clash with record attributes."""
        factory = logging.getLogRecordFactory()
        if fn is UNKNOWN_FILE and factory is logging.LogRecord and _records.FAST:
            # No caller was looked for (findCaller above): no path to split per record.
            record = _records.unknown_caller_record(name, level)
            d = record.__dict__
            d["msg"] = msg
            # As LogRecord: logger.info("%(a)s", {"a": 1}) formats with the mapping itself.
            if args and len(args) == 1 and isinstance(args[0], Mapping) and args[0]:
                args = args[0]
            d["args"] = args
            d["exc_info"] = exc_info
        else:
            record = factory(name, level, fn, lno, msg, args, exc_info, func, sinfo)
        if extra is not None:
            d = record.__dict__
            if extra.__class__ is dict and _LOG_RECORD_KEYS.isdisjoint(extra):
                clean = dict(extra)  # a copy: the caller may change its dict after the call
            else:
                try:
                    items = extra.items()
                except AttributeError:  # not a mapping: keep it visible rather than raise
                    d["extra_value"] = extra
                    return record
                clean = {}
                for key, value in items:
                    if key.__class__ is not str:
                        key = str(key)
                    clean[f"extra_{key}" if key in _LOG_RECORD_KEYS else key] = value
            d.update(clean)
            # Set field by field: an __init__ frame would cost more than the rest of this branch.
            extra = d[_EXTRA] = _new(_Extra)
            extra.fields = clean
            extra.size = len(d)
        return record


class _ObslogRootLogger(ObslogLogger, logging.RootLogger):
    """The root logger with :class:`ObslogLogger`'s ``makeRecord``."""


def install_logger_class() -> None:
    """
    Make :class:`ObslogLogger` the class of new and of existing plain loggers, root included.

    Process-wide: only :func:`obslog.configure` calls it.
    """
    logging.setLoggerClass(ObslogLogger)
    manager = logging.Logger.manager
    if manager.loggerClass not in (None, ObslogLogger):
        manager.setLoggerClass(ObslogLogger)
    _hook_cache_clear(manager)
    root = logging.getLogger()
    if type(root) is logging.RootLogger:
        root.__class__ = _ObslogRootLogger
    for existing in list(manager.loggerDict.values()):
        # Only plain loggers: a library's own Logger subclass keeps its class.
        if type(existing) is logging.Logger:
            existing.__class__ = ObslogLogger
