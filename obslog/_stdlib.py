"""
The standard-library side: a filter that captures context, formatters that render the schema.

.. code-block:: python

    "filters": {"obslog": {"()": "obslog.ContextFilter"}},
    "formatters": {"json": {"()": "obslog.JsonFormatter"}},
"""

from __future__ import annotations

import logging

from collections.abc import Mapping
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS, BaseJsonFormatter

from . import _json, _stats
from ._config import CONFIG
from ._context import capture
from ._render import _LEVELS, build, degraded, level_name, render


__all__ = ["ConsoleFormatter", "ContextFilter", "JsonFormatter", "ObslogLogger", "RenderedLine"]

_CAPTURED = "_obslog"
_NO_EXTRAS: Mapping[str, Any] = {}
_EXTRA = "_obslog_extra"
# Every attribute a bare LogRecord has, on this Python version.
_BARE_RECORD_KEYS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__)
_BARE_LEN = len(_BARE_RECORD_KEYS)
_LOG_RECORD_KEYS = _BARE_RECORD_KEYS | {"message", "asctime"}


class RenderedLine(str):
    """A line already rendered by obslog's structlog renderer; formatters pass it through."""

    __slots__ = ()


class ContextFilter(logging.Filter):
    """
    Capture the current scope's context and timings onto each record; never drops a record.

    Attach it to a handler (or logger) so that the context is taken in the thread that logs, even
    when the record is formatted later elsewhere (``QueueHandler``).  Without it, obslog's
    formatters capture the context at format time, which is the same for synchronous handlers.

    .. versionadded:: 0.1.0
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Attach the captured context to *record* and keep it."""
        try:
            if _CAPTURED not in record.__dict__ and type(record.msg) is not RenderedLine:
                record._obslog = capture()
        except Exception:  # logging must not raise into the application
            _stats.incr("render_errors")
        return True


class JsonFormatter(BaseJsonFormatter):
    """
    Render records as obslog JSON lines (the schema in the README), one per record.

    A python-json-logger formatter: *fmt* names extra record attributes to include, and
    ``rename_fields``, ``static_fields``, ``defaults``, ``prefix`` and ``reserved_attrs`` work as
    there.  Creating one installs :class:`ObslogLogger` as the logger class.  Rendering never
    raises: a record that cannot be rendered is written as a degraded line with an
    ``obslog_error`` field and counted in ``obslog.stats()["render_errors"]``.

    .. versionadded:: 0.1.0
    """

    fmt_name = "json"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A hand-written dictConfig never calls obslog.configure(); make ``extra`` keys that clash
        # with LogRecord attributes safe here too (the stdlib would raise KeyError into the app).
        install_logger_class()
        self._skip = frozenset(self.reserved_attrs) | _LOG_RECORD_KEYS | frozenset(RESERVED_ATTRS)
        # Names the user asked python-json-logger to leave out beyond the LogRecord attributes.
        self._custom_skip = self._skip - _LOG_RECORD_KEYS - frozenset(RESERVED_ATTRS)
        self._wanted = [f for f in self._required_fields if f not in ("message", "asctime")]
        self._asctime = "asctime" in self._required_fields
        # Decide once whether python-json-logger's options need the slower general path.
        self._options = bool(
            self._wanted
            or self._asctime
            or self.rename_fields
            or self.static_fields
            or self.defaults
            or self.timestamp
            or self.rename_fields_keep_missing
        )

    def format(self, record: logging.LogRecord) -> str:
        """Return *record* as one line."""
        try:
            msg = record.msg
            if type(msg) is RenderedLine:
                return self.prefix + msg if self.prefix else msg
            if self.fmt_name == "json":
                return self.prefix + _json.dumps(self.line(record))
            return self.prefix + render(self.line(record), self.fmt_name)
        except Exception as exc:  # logging must not raise into the application
            _stats.incr("render_errors")
            try:
                message: Any = record.msg
                if record.args:
                    message = f"{record.msg!r} % {record.args!r}"
            except Exception:
                message = "<unprintable message>"
            return degraded(level_name(record.levelno), str(record.name), message, exc)

    def line(self, record: logging.LogRecord) -> dict[str, Any]:
        """Return the schema fields of *record*."""
        d = record.__dict__
        captured = d.get(_CAPTURED)
        ctx, timings = capture() if captured is None else captured
        msg = record.msg
        extras: Mapping[str, Any]
        if msg.__class__ is str and not record.args:
            event: Any = msg
            extras = _NO_EXTRAS
        elif isinstance(msg, dict):
            extras = {k: v for k, v in msg.items() if k not in ("event", "message")}
            event = msg.get("event", msg.get("message", ""))
        else:
            event = record.getMessage()
            extras = _NO_EXTRAS
        stash = d.get(_EXTRA)
        if (
            stash is not None
            and not self._custom_skip
            and len(d) == stash[1] + (_CAPTURED in d) + ("message" in d) + ("asctime" in d)
        ):
            # Fast path: ObslogLogger kept the public ``extra`` keys and nothing was added since.
            extras = {**extras, **stash[0]} if extras else stash[0]
        else:
            skip = self._skip
            found = {k: v for k, v in d.items() if k not in skip and k[:1] != "_"}
            if found:
                extras = {**extras, **found}
        if self._options:
            extras = self._apply_options(record, extras)
        return build(
            record.created,
            _LEVELS.get(record.levelno) or level_name(record.levelno),
            record.name,
            event,
            record.process,
            ctx,
            timings,
            extras,
            record.exc_info or record.exc_text,
            record.stack_info,
        )

    def _apply_options(
        self, record: logging.LogRecord, extras: Mapping[str, Any]
    ) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.defaults)
        d = record.__dict__
        for field in self._wanted:
            out[field] = d.get(field)
        if self._asctime:
            out["asctime"] = self.formatTime(record, self.datefmt)
        out.update(self.static_fields)
        out.update(extras)
        if self.timestamp:
            key = self.timestamp if isinstance(self.timestamp, str) else "timestamp"
            if key != "timestamp":
                out[key] = record.created
        if self.rename_fields:
            out = {self.rename_fields.get(k, k): v for k, v in out.items()}
            if self.rename_fields_keep_missing:
                for field in self.rename_fields.values():
                    out.setdefault(field, None)
        return out


class ConsoleFormatter(JsonFormatter):
    """Render records for a person, with structlog's ConsoleRenderer: the same fields as the JSON.

    .. versionadded:: 0.1.0
    """

    fmt_name = "console"


class ObslogLogger(logging.Logger):
    """
    A ``logging.Logger`` whose ``extra`` may use any key.

    The standard ``Logger.makeRecord`` raises ``KeyError`` into the application when an ``extra``
    key is a LogRecord attribute (``name``, ``msg``, ``message``, ...).  Here such a key is kept as
    ``extra_<key>`` instead.  :func:`obslog.configure` installs this class.

    .. versionadded:: 0.1.0
    """

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
        record = logging.getLogRecordFactory()(
            name, level, fn, lno, msg, args, exc_info, func, sinfo
        )
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
            # The extra keys, and how many attributes the record has now (this one included).
            d[_EXTRA] = (clean, len(d) + 1)
        return record


class _ObslogRootLogger(ObslogLogger, logging.RootLogger):
    """The root logger with :class:`ObslogLogger`'s ``makeRecord``."""


def install_logger_class() -> None:
    """Make :class:`ObslogLogger` the class of new and of existing plain loggers, root included."""
    logging.setLoggerClass(ObslogLogger)
    manager = logging.Logger.manager
    if manager.loggerClass not in (None, ObslogLogger):
        manager.setLoggerClass(ObslogLogger)
    root = logging.getLogger()
    if type(root) is logging.RootLogger:
        root.__class__ = _ObslogRootLogger
    for existing in list(manager.loggerDict.values()):
        # Only plain loggers: a library's own Logger subclass keeps its class.
        if type(existing) is logging.Logger:
            existing.__class__ = ObslogLogger


def make_formatter(fmt: str | None = None) -> JsonFormatter:
    """Return the formatter for *fmt* (default: the configured format)."""
    return ConsoleFormatter() if (fmt or CONFIG.fmt) == "console" else JsonFormatter()
