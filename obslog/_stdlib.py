"""
The standard-library side: a filter that captures context, formatters that render the schema.

.. code-block:: python

    "filters": {"obslog": {"()": "obslog.ContextFilter"}},
    "formatters": {"json": {"()": "obslog.JsonFormatter"}},

Nothing here changes process-wide state: creating a formatter configures that formatter only.
obslog's logger class is in :mod:`obslog._logger`.
"""

from __future__ import annotations

import datetime
import json
import logging
import re

from collections.abc import Callable, Mapping
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS, BaseJsonFormatter

from . import _json, _redact, _stats
from ._config import CONFIG
from ._context import capture
from ._render import _LEVELS, build, degraded_record, level_name, render_console, to_json
from ._schema import LOG_RECORD_KEYS


__all__ = ["ConsoleFormatter", "ContextFilter", "JsonFormatter", "RenderedLine"]

_CAPTURED = "_obslog"
_NO_EXTRAS: Mapping[str, Any] = {}
# Set by ObslogLogger: an _Extra.
_EXTRA = "_obslog_extra"
# Attributes a record may get after makeRecord that never go on a line: obslog's captured context,
# and what logging.Formatter.format adds.
_LATE_ATTRS = frozenset({_CAPTURED, "message", "asctime"})
# Every attribute a bare LogRecord has, on this Python version.
_BARE_RECORD_KEYS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__)
# LogRecord.__init__ sets them first, in a fixed order; this one last.
_BARE_LEN = len(_BARE_RECORD_KEYS)
_LAST_BARE_KEY = list(logging.LogRecord("", 0, "", 0, "", (), None).__dict__)[-1]
_LOG_RECORD_KEYS = LOG_RECORD_KEYS
# What a formatter leaves out of a line unless ``reserved_attrs`` says otherwise.
_DEFAULT_SKIP = _LOG_RECORD_KEYS | frozenset(RESERVED_ATTRS)
# python-json-logger's methods a subclass may override; each one overridden is called.
_HOOKS = ("add_fields", "process_log_record", "jsonify_log_record", "serialize_log_record")
# The record attributes Logger.findCaller fills in (the stack walk a record may skip).
CALLER_ATTRS = frozenset({"pathname", "filename", "module", "lineno", "funcName"})
# The exception line at the end of a formatted traceback: ``module.Type: message`` or ``Type``.
_EXC_LINE = re.compile(r"([A-Za-z_][\w.]*)(?:: (.*))?")
# Where logging.Formatter appends a traceback to the message text.
_TRACEBACK_START = re.compile(
    r"\n(?=Traceback \(most recent call last\):\n|  \+ Exception Group Traceback \(most recent)"
)


_new = object.__new__


class _Extra:
    """The ``extra`` fields ObslogLogger put on a record, and how many attributes it had then."""

    __slots__ = ("fields", "size")

    fields: dict[str, Any]
    size: int


def _only_late_attrs(d: dict[str, Any], size: int) -> bool:
    """Return whether the attributes of *d* after the first *size* are all in _LATE_ATTRS."""
    late = len(d) - size
    # A dict keeps insertion order: the attributes set since are its last *late* keys.
    return 0 < late <= len(_LATE_ATTRS) and _LATE_ATTRS.issuperset(list(d)[-late:])


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


def _exc_text_fields(text: str) -> dict[str, Any]:
    """Return the exception fields of a record that carries only its formatted traceback."""
    fields: dict[str, Any] = {}
    for line in reversed(text.rstrip("\n").splitlines()):
        match = _EXC_LINE.fullmatch(line)
        if match is not None:
            fields["exc_type"] = match[1]
            fields["exc_message"] = match[2] or ""
            break
    fields["stack"] = text.rstrip("\n")
    return fields


def _split_traceback(text: str) -> tuple[str, str | None]:
    """Return the message and the traceback that ``QueueHandler.prepare`` appended to it."""
    match = _TRACEBACK_START.search(text)
    if match is None:
        return text, None
    return text[: match.start()], text[match.end() :]


def _chain_default(user: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Return a ``default`` that asks *user* first, then obslog's encoder (never raises)."""

    def default(obj: Any) -> Any:
        try:
            return user(obj)
        except Exception:  # the user's default does not know this type: obslog's fallback
            return _json._default(obj)

    return default


class JsonFormatter(BaseJsonFormatter):
    """
    Render records as obslog JSON lines (the schema in the README), one per record.

    A drop-in for python-json-logger's ``pythonjsonlogger.json.JsonFormatter``: every option of it
    works (*fmt* in any style or as a list of names, ``datefmt``, ``prefix``, ``rename_fields``,
    ``rename_fields_keep_missing``, ``static_fields``, ``defaults``, ``reserved_attrs``,
    ``timestamp``, ``exc_info_as_array``, ``stack_info_as_array``, ``json_default``,
    ``json_encoder``, ``json_serializer``, ``json_indent``, ``json_ensure_ascii``), and a subclass's
    ``add_fields``, ``process_log_record``, ``jsonify_log_record`` or ``serialize_log_record`` is
    called.  The schema is the difference: ``event`` instead of ``message`` (``rename_fields``
    accepts either name), ``exc_type``/``exc_message``/``stack`` instead of ``exc_info`` (unless
    *fmt* names ``exc_info``), an RFC 3339 ``timestamp`` with ``Z`` always, non-ASCII written as
    is unless ``json_ensure_ascii=True``, and the ``repr`` of values JSON cannot encode.

    Rendering never raises: a record that cannot be rendered is written as a degraded line with an
    ``obslog_error`` field and counted in ``obslog.stats()["render_errors"]``.  Creating one
    changes nothing outside it: no logger class is installed (see :class:`ObslogLogger`).

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       Every python-json-logger option and subclass hook works; no logger class is installed.
    """

    fmt_name = "json"

    def __init__(
        self,
        *args: Any,
        json_default: Callable[[Any], Any] | None = None,
        json_encoder: type[json.JSONEncoder] | None = None,
        json_serializer: Callable[..., str] = json.dumps,
        json_indent: int | str | None = None,
        json_ensure_ascii: bool = False,
        **kwargs: Any,
    ) -> None:
        reserved = kwargs.get("reserved_attrs")
        super().__init__(*args, **kwargs)
        self.json_default = json_default
        self.json_encoder = json_encoder
        self.json_serializer = json_serializer
        self.json_indent = json_indent
        self.json_ensure_ascii = json_ensure_ascii
        required = list(self._required_fields)
        # "message" is the event; "asctime" is formatted; the rest are read from the record.
        self._fields = tuple(f for f in required if f not in ("message", "asctime"))
        self._asctime = "asctime" in required
        # The default leaves out every LogRecord attribute; an explicit list is used as given.
        self._default_skip = reserved is None
        self._skip = (
            _DEFAULT_SKIP | frozenset(required)
            if reserved is None
            else frozenset(self.reserved_attrs) | frozenset(required)
        )
        self._renames = dict(self.rename_fields)
        if "message" in self._renames and "event" not in self._renames:
            self._renames["event"] = self._renames.pop("message")
        self._ts_key = (
            None
            if not self.timestamp or self.timestamp is True or self.timestamp == "timestamp"
            else str(self.timestamp)
        )
        self._encode = self._make_encoder()
        # Whether a line of this formatter may show a record's caller (see ObslogLogger).
        self._reads_caller = bool(CALLER_ATTRS & set(required)) or (
            not self._default_skip and not CALLER_ATTRS <= self._skip
        )
        options = bool(
            self._fields
            or self._asctime
            or not self._default_skip
            or self.rename_fields
            or self.rename_fields_keep_missing
            or self.static_fields
            or self.defaults
            or self._ts_key
            or self.exc_info_as_array
            or self.stack_info_as_array
            or self.prefix
            or self._encode is not None
        )
        cls = type(self)
        hooks = any(getattr(cls, name) is not getattr(JsonFormatter, name) for name in _HOOKS)
        # Decided once: the schema straight to JSON, or python-json-logger's pipeline of hooks.
        self._fast = not (options or hooks)

    def _make_encoder(self) -> Callable[[Any], str] | None:
        """Return the encoder the ``json_*`` options ask for; ``None`` for obslog's own."""
        serializer, cls = self.json_serializer, self.json_encoder
        indent, ensure_ascii = self.json_indent, bool(self.json_ensure_ascii)
        plain = self.json_default is None and cls is None and serializer is json.dumps
        if plain and indent is None and not ensure_ascii:
            return None
        default: Callable[[Any], Any] | None
        if self.json_default is not None:
            default = _chain_default(self.json_default)
        else:
            # An encoder class keeps its own ``default``; json.dumps would shadow it.
            default = _json._default if cls is None else None
        if serializer is not json.dumps:

            def encode_custom(data: Any) -> str:
                try:
                    return str(
                        serializer(
                            data, default=default, cls=cls, indent=indent, ensure_ascii=ensure_ascii
                        )
                    )
                except Exception:  # the user's serializer failed: obslog's encoder, counted
                    _stats.incr("render_errors")
                    return _json.dumps(data)

            return encode_custom
        separators = (",", ":") if indent is None else (",", ": ")

        def encode(data: Any) -> str:
            try:
                text = json.dumps(
                    data,
                    default=default,
                    cls=cls,
                    indent=indent,
                    ensure_ascii=ensure_ascii,
                    allow_nan=False,
                    separators=separators,
                )
                if not ensure_ascii:
                    text.encode("utf-8")  # lone surrogates pass json.dumps but cannot be written
                return text
            except (ValueError, TypeError, RecursionError):
                clean = _json.sanitize(data)
                return json.dumps(
                    clean, indent=indent, ensure_ascii=ensure_ascii, separators=separators
                )

        return encode

    def format(self, record: logging.LogRecord) -> str:
        """Return *record* as one line."""
        try:
            msg = record.msg
            if self._fast:
                if msg.__class__ is RenderedLine:
                    return msg
                return to_json(self._schema_line(record))
            # python-json-logger's pipeline, so that a subclass's hooks are called.
            message_dict: dict[str, Any] = msg.copy() if isinstance(msg, dict) else {}
            log_data: dict[str, Any] = {}
            self.add_fields(log_data, record, message_dict)
            log_data = self.process_log_record(log_data)
            return _redact.finish_json(self.serialize_log_record(log_data))
        except Exception as exc:  # logging must not raise into the application
            _stats.incr("render_errors")
            try:
                message: Any = record.msg
                if record.args:
                    message = f"{record.msg!r} % {record.args!r}"
            except Exception:
                message = "<unprintable message>"
            return degraded_record(record, message, exc)

    def line(self, record: logging.LogRecord) -> dict[str, Any]:
        """Return the fields of *record* as this formatter writes them (its options applied)."""
        if self._fast:
            return self._schema_line(record)
        log_data: dict[str, Any] = {}
        msg = record.msg
        message_dict = msg.copy() if isinstance(msg, dict) else {}
        JsonFormatter.add_fields(self, log_data, record, message_dict)
        return log_data

    def add_fields(
        self,
        log_data: dict[str, Any],
        record: logging.LogRecord,
        message_dict: dict[str, Any],
    ) -> None:
        """
        Put the line's fields into *log_data*, with this formatter's options applied.

        *message_dict* is the logged ``dict`` (when the message was one): its ``event`` (or
        ``message``) is the event, its other keys are fields.
        """
        msg = record.msg
        if msg.__class__ is RenderedLine:
            line = self._rendered_line(msg)
        else:
            line = self._option_line(record, message_dict)
        renames = self._renames
        if renames:
            line = {renames.get(key, key): value for key, value in line.items()}
            if self.rename_fields_keep_missing:
                for name in renames.values():
                    line.setdefault(name, None)
        log_data.update(line)

    def jsonify_log_record(self, log_data: dict[str, Any]) -> str:
        """Return *log_data* as JSON, encoded as the ``json_*`` options ask."""
        encode = self._encode
        return _json.dumps(log_data) if encode is None else encode(log_data)

    def _schema_line(self, record: logging.LogRecord) -> dict[str, Any]:
        """Return the schema fields of *record* (no python-json-logger options)."""
        d = record.__dict__
        captured = d.get(_CAPTURED)
        ctx, timings = capture() if captured is None else captured
        msg = record.msg
        args = record.args
        extras: Mapping[str, Any]
        exc_text = None
        if msg.__class__ is str and not args:
            event: Any = msg
            extras = _NO_EXTRAS
            if args is None:  # prepared by a QueueHandler: the traceback is in the message
                event, exc_text = _split_traceback(msg)
        elif isinstance(msg, dict):
            extras = {k: v for k, v in msg.items() if k not in ("event", "message")}
            event = msg.get("event", msg.get("message", ""))
        else:
            event = record.getMessage()
            extras = _NO_EXTRAS
        found: Mapping[str, Any]
        extra = d.get(_EXTRA)
        if (
            extra is not None
            and self._default_skip
            # Nothing set since makeRecord, or only what never goes on a line.
            and (len(d) == extra.size or _only_late_attrs(d, extra.size))
        ):
            found = extra.fields  # ObslogLogger's extra fields, as they are
        else:
            found = self._scan(d)
        if found:
            extras = {**extras, **found} if extras else found
        exc_info = record.exc_info
        # Positional: in the hot path a keyword call costs a few hundred instructions more.
        line = build(
            record.created,
            _LEVELS.get(record.levelno) or level_name(record.levelno),
            record.name,
            event,
            record.process,
            ctx,
            timings,
            extras,
            exc_info,
            record.stack_info,
            (record.module, record.funcName, record.lineno) if CONFIG.callsite else None,
        )
        if not exc_info:
            # Formatted elsewhere (SocketHandler, QueueHandler): only the text travelled.
            exc_text = record.exc_text or exc_text
            if exc_text:
                line.update(_exc_text_fields(exc_text))
        return line

    def _record_extras(self, d: dict[str, Any]) -> Mapping[str, Any]:
        """Return the attributes of a record's ``__dict__`` *d* that go on the line."""
        extra = d.get(_EXTRA)
        if (
            extra is not None
            and self._default_skip
            and (len(d) == extra.size or _only_late_attrs(d, extra.size))
        ):
            fields: Mapping[str, Any] = extra.fields
            return fields
        return self._scan(d)

    def _scan(self, d: dict[str, Any]) -> dict[str, Any]:
        """Return the attributes of *d* that are neither skipped nor private."""
        skip = self._skip
        keys = list(d)
        if (
            self._default_skip
            and len(keys) >= _BARE_LEN
            and keys[_BARE_LEN - 1] == _LAST_BARE_KEY
        ):
            # LogRecord.__init__ set its attributes first, in this order, and every one of them
            # is skipped: only the later ones (``extra``, a filter's) need looking at.
            keys = keys[_BARE_LEN:]
        try:
            return {k: d[k] for k in keys if k not in skip and k[:1] != "_"}
        except TypeError:  # a key that is not a string (``extra={5: ...}``)
            return {
                k: d[k] for k in keys if k not in skip and (k.__class__ is not str or k[:1] != "_")
            }

    def _option_line(
        self, record: logging.LogRecord, message_dict: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Return the schema fields of *record* with python-json-logger's options applied."""
        d = record.__dict__
        captured = d.get(_CAPTURED)
        ctx, timings = capture() if captured is None else captured
        fields: dict[str, Any] = dict(self.defaults)
        for name in self._fields:
            fields[name] = self._record_value(record, name)
        if self._asctime:
            fields["asctime"] = self.formatTime(record, self.datefmt)
        fields.update(self.static_fields)
        if isinstance(record.msg, dict):
            event: Any = message_dict.get("event", message_dict.get("message", ""))
            fields.update((k, v) for k, v in message_dict.items() if k not in ("event", "message"))
        else:
            event = record.getMessage()
        exc_text = None
        if record.args is None and event.__class__ is str:
            event, exc_text = _split_traceback(event)
        found = self._record_extras(d)
        if found:
            fields.update(found)
            if not self._default_skip and found.get("exc_info"):
                fields["exc_info"] = self._record_value(record, "exc_info")
        if self._ts_key is not None:
            fields[self._ts_key] = datetime.datetime.fromtimestamp(
                record.created, tz=datetime.timezone.utc
            ).isoformat()
        exc_info = record.exc_info
        line = build(
            created=record.created,
            level=_LEVELS.get(record.levelno) or level_name(record.levelno),
            logger=record.name,
            event=event,
            pid=record.process,
            ctx=ctx,
            timings=timings,
            extras=fields,
            exc_info=exc_info,
            stack_info=record.stack_info,
            callsite=(record.module, record.funcName, record.lineno) if CONFIG.callsite else None,
        )
        if not exc_info:
            exc_text = record.exc_text or exc_text
            if exc_text:
                line.update(_exc_text_fields(exc_text))
        if self.exc_info_as_array and isinstance(line.get("stack"), str):
            line["stack"] = line["stack"].splitlines()
        if self.stack_info_as_array and isinstance(line.get("stack_info"), str):
            line["stack_info"] = line["stack_info"].splitlines()
        return line

    def _record_value(self, record: logging.LogRecord, name: str) -> Any:
        """Return attribute *name* of *record* as python-json-logger writes it for *fmt*."""
        if name == "exc_info":
            if record.exc_info:
                return self.formatException(record.exc_info)
            if record.exc_text:
                text = record.exc_text
                return text.splitlines() if self.exc_info_as_array else text
        elif name == "stack_info" and record.stack_info:
            return self.formatStack(record.stack_info)
        return record.__dict__.get(name)

    def _rendered_line(self, msg: str) -> dict[str, Any]:
        """Return the fields of a line structlog rendered, with ``defaults``/``static_fields``."""
        try:
            line = json.loads(msg)
        except ValueError:
            line = None
        if not isinstance(line, dict):  # the console rendering: keep it as the event
            line = {"event": str(msg)}
        for key, value in {**self.defaults, **self.static_fields}.items():
            line.setdefault(key, value)
        return line


class ConsoleFormatter(JsonFormatter):
    """Render records for a person, with structlog's ConsoleRenderer: the same fields as the JSON.

    .. versionadded:: 0.1.0
    """

    fmt_name = "console"

    def format(self, record: logging.LogRecord) -> str:
        """Return *record* rendered for a person."""
        if record.msg.__class__ is RenderedLine and not self.prefix:
            return str(record.msg)  # already rendered in the configured format
        return super().format(record)

    def jsonify_log_record(self, log_data: dict[str, Any]) -> str:
        """Return *log_data* rendered by structlog's ConsoleRenderer."""
        return render_console(log_data, CONFIG.colors)


def make_formatter(fmt: str | None = None) -> JsonFormatter:
    """Return the formatter for *fmt* (default: the configured format)."""
    return ConsoleFormatter() if (fmt or CONFIG.fmt) == "console" else JsonFormatter()
