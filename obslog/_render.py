"""
The log schema in one place: build a line's fields, then render them as JSON or for a console.

Both logging paths call :func:`build`: the stdlib formatter with a ``LogRecord``'s parts, the
structlog renderer with an event dict's.  That is why a stdlib line and a structlog line have the
same fields.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback

from collections.abc import Mapping
from types import TracebackType
from typing import Any

from . import _json, _redact
from ._config import CONFIG, REDACTED, _secret_cache, is_secret
from ._redact import LEAF_TYPES, redact
from ._schema import ERROR, EXTRA_PREFIX, LOG_RECORD_KEYS, PROTECTED


__all__ = [
    "build",
    "degraded",
    "degraded_record",
    "exc_fields",
    "find_callsite",
    "format_timestamp",
    "level_name",
    "redact",
    "render",
    "to_json",
]

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]

_EMPTY: dict[str, Any] = {}
# The caller's fields (``configure(callsite=True)``), after the scope's and before the extras.
MODULE = "module"
FUNC = "func"
LINENO = "lineno"
# Frames of these packages are never a line's caller.
_NOT_CALLERS = ("obslog", "structlog", "logging")
_LEVELS = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "critical",
}


def level_name(levelno: int) -> str:
    """Return the lower-case level name of *levelno* (custom levels included)."""
    name = _LEVELS.get(levelno)
    if name is None:
        name = str(logging.getLevelName(levelno)).lower()
    return name


_ts_second = -1
_ts_prefix = ""


def format_timestamp(created: float) -> str:
    """
    Return *created* (epoch seconds) as RFC 3339 UTC with microseconds: ``...T15:20:01.123456Z``.
    """
    global _ts_second, _ts_prefix
    second = int(created)
    if second != _ts_second:
        # Threads may race here; each computes the same prefix for the same second.
        _ts_prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _ts_second = second
    # Round to the microsecond (float seconds lose the last digit), never up into the next second.
    micros = (created - second) * 1e6 + 0.5
    return "%s.%06dZ" % (_ts_prefix, micros if micros < 999999.0 else 999999)  # noqa: UP031 - hot path: %-formatting is fastest


def epoch_micros(created: float) -> int:
    """
    Return *created* (epoch seconds) in whole microseconds, rounded as :func:`format_timestamp`.
    """
    second = int(created)
    micros = (created - second) * 1e6 + 0.5
    return second * 1_000_000 + int(micros if micros < 999999.0 else 999999)


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:  # a broken __str__ must not lose the line
        try:
            return repr(value)
        except Exception:
            return f"<unprintable {type(value).__qualname__}>"


def _normalize_exc_info(exc_info: Any) -> ExcInfo | None:
    if exc_info is None or exc_info is False:
        return None
    if isinstance(exc_info, BaseException):
        return type(exc_info), exc_info, exc_info.__traceback__
    if isinstance(exc_info, tuple) and len(exc_info) == 3 and exc_info[1] is not None:
        return exc_info
    if exc_info is True:
        current = sys.exc_info()
        return current if current[1] is not None else None
    return None


def exc_fields(exc_info: Any) -> dict[str, str]:
    """
    Return ``exc_type``, ``exc_message`` and ``stack`` for *exc_info* (an exception or a triple).
    """
    info = _normalize_exc_info(exc_info)
    if info is None:
        return {}
    etype, exc, tb = info
    module = getattr(etype, "__module__", "builtins")
    qualname = getattr(etype, "__qualname__", _safe_str(etype))
    try:
        stack = "".join(traceback.format_exception(etype, exc, tb)).rstrip("\n")
    except Exception:
        stack = "<traceback unavailable>"
    scrub = _redact.scrub_text
    return {
        "exc_type": qualname if module == "builtins" else f"{module}.{qualname}",
        "exc_message": scrub(_safe_str(exc)),
        "stack": scrub(stack),
    }


def build(
    created: float,
    level: str,
    logger: str,
    event: Any,
    pid: int | None,
    ctx: dict[str, Any] | None,
    timings: dict[str, Any] | None,
    extras: Mapping[str, Any] | None,
    exc_info: Any = None,
    stack_info: str | None = None,
    callsite: tuple[str, str, int] | None = None,
) -> dict[str, Any]:
    """
    Return the fields of one line in schema order.

    *extras* (``extra=`` or structlog keywords) are redacted; one that clashes with a schema field,
    a bound field or another key is kept as ``extra_<key>`` (``extra_extra_<key>``...) instead of
    overwriting it.  *callsite* (``configure(callsite=True)``) is the caller's module, function and
    line number.
    """
    if event.__class__ is not str:
        event = _safe_str(event)
    if "earer " in event or "asic " in event:  # has_scheme, inlined: every line pays it
        event = _redact.scrub_text(event)
    if pid is None:
        pid = os.getpid()
    head = _head
    if head.ctx is not ctx or head.pid != pid or head.static is not CONFIG.static:
        head = _head_seen_twice(pid, ctx)
    if head.fields is None:  # first sight, or the context sets a field of the line's start
        line: dict[str, Any] = {
            "timestamp": format_timestamp(created),
            "level": level,
            "logger": logger,
            "event": event,
            **CONFIG.static,
            "pid": pid,
            **(ctx or _EMPTY),
        }
    else:
        # A copy of a dict with the same keys is a memcpy, sized for the rest of the line.
        line = head.fields.copy()
        line["timestamp"] = format_timestamp(created)
        line["level"] = level
        line["logger"] = logger
        line["event"] = event
    if callsite is not None:
        line[MODULE], line[FUNC], line[LINENO] = callsite
    if extras:
        secrets = _secret_cache
        plain = _plain.keys if _plain.redact_keys is CONFIG.redact_keys else _forget_keys()
        for key, value in extras.items():
            if key.__class__ is str and key in plain and key not in line:
                # A key seen before, neither secret, private nor a schema field: its value only.
                if value.__class__ is str:
                    if "earer " in value or "asic " in value:
                        value = _redact.scrub_text(value)
                elif value.__class__ not in LEAF_TYPES:
                    value = redact(value)
                line[key] = value
                continue
            if key.__class__ is not str:
                key = _safe_str(key)
            if key in line or key in PROTECTED:
                key = _free_name(key, line, extras)
            elif key and key[0] == "_":  # private by convention (python-json-logger, structlog)
                continue
            elif len(plain) < 4096 and not is_secret(key):
                plain.add(key)  # the next line takes the path above
            secret = secrets.get(key)
            if secret is None:
                secret = is_secret(key)
            if secret:
                value = REDACTED
            elif value.__class__ is str:
                if "earer " in value or "asic " in value:
                    value = _redact.scrub_text(value)
            elif value.__class__ not in LEAF_TYPES:
                value = redact(value)
            line[key] = value
    if timings:
        line["timings"] = timings
    if exc_info:
        line.update(exc_fields(exc_info))
    if stack_info:
        line["stack_info"] = _redact.scrub_text(_safe_str(stack_info))
    return line


class _Head:
    """
    The start of a line for one static config, pid and context snapshot (contexts are replaced,
    never mutated), built once: each line copies it and sets its own four first fields.
    """

    __slots__ = ("ctx", "fields", "pid", "static")

    def __init__(
        self,
        static: dict[str, str] | None,
        pid: int | None,
        ctx: dict[str, Any] | None,
        fields: dict[str, Any] | None,
    ) -> None:
        self.static = static
        self.pid = pid
        self.ctx = ctx
        self.fields = fields


_OWN_FIELDS = ("timestamp", "level", "logger", "event")
_head = _Head(None, None, None, None)


_NO_HEAD = _Head(None, None, None, None)
# The (context, pid, static) of the last line that missed the head: a head is built on the second
# line with the same start, so a scope that writes one line (its canonical line) builds none.
_seen: tuple[Any, ...] = (None, None, None)


def _head_seen_twice(pid: int, ctx: dict[str, Any] | None) -> _Head:
    global _seen
    static = CONFIG.static
    seen = _seen
    if seen[0] is ctx and seen[1] == pid and seen[2] is static:
        return _new_head(pid, ctx)
    _seen = (ctx, pid, static)  # one assignment: a reading thread sees the old tuple or this one
    return _NO_HEAD


def _new_head(pid: int, ctx: dict[str, Any] | None) -> _Head:
    global _head
    static = CONFIG.static
    fields: dict[str, Any] | None = None
    if not ctx or not any(name in ctx for name in _OWN_FIELDS):
        fields = dict.fromkeys(_OWN_FIELDS)
        fields.update(static)
        fields["pid"] = pid
        fields.update(ctx or _EMPTY)
    # One assignment: a thread reading _head sees the old head or the new one, never a mix.
    _head = head = _Head(static, pid, ctx, fields)
    return head


class _PlainKeys:
    """The extras' keys that need no decision but a clash test, for one set of secret names."""

    __slots__ = ("keys", "redact_keys")

    def __init__(self, redact_keys: frozenset[str] | None) -> None:
        self.redact_keys = redact_keys
        self.keys: set[str] = set()


_plain = _PlainKeys(None)


def _forget_keys() -> set[str]:
    global _plain
    _plain = plain = _PlainKeys(CONFIG.redact_keys)
    return plain.keys


def find_callsite() -> tuple[str, str, int]:
    """
    Return the module (file name without extension, as ``LogRecord.module``), function and line of
    the first frame outside obslog, structlog and logging: the application's call.
    """
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_globals.get("__name__")
        if name.__class__ is not str or name.partition(".")[0] not in _NOT_CALLERS:
            code = frame.f_code
            module = os.path.splitext(os.path.basename(code.co_filename))[0]
            return module, code.co_name, frame.f_lineno
        frame = frame.f_back  # type: ignore[assignment]
    return "(unknown file)", "(unknown function)", 0


def _free_name(key: str, line: dict[str, Any], extras: Mapping[str, Any]) -> str:
    # Never overwrite a field, nor a key the caller gave: extra_request_id stays the caller's own.
    key = EXTRA_PREFIX + key
    while key in line or key in extras:
        key = EXTRA_PREFIX + key
    return key


_consoles: dict[bool, Any] = {}


def _console_renderer(colors: bool) -> Any:
    renderer = _consoles.get(colors)
    if renderer is None:
        import structlog

        renderer = _consoles[colors] = structlog.dev.ConsoleRenderer(colors=colors, sort_keys=False)
    return renderer


def timings_text(timings: dict[str, Any]) -> str:
    """Return timings as ``db_query=12.3ms×2(max 8.0) cache_get=0.4ms`` for people to read."""  # noqa: RUF002 - the multiplication sign is meant
    parts = []
    for name, t in timings.items():
        if not isinstance(t, dict):
            parts.append(f"{name}={t}")
            continue
        text = f"{name}={t.get('ms')}ms"
        if t.get("count", 1) != 1:
            text += f"×{t.get('count')}(max {t.get('max_ms')}ms)"  # noqa: RUF001 - the multiplication sign is meant
        parts.append(text)
    return " ".join(parts)


def render_console(line: dict[str, Any], colors: bool = False) -> str:
    """Render *line* with structlog's ConsoleRenderer: the same fields, for a person."""
    line = dict(line)
    timings = line.get("timings")
    if isinstance(timings, dict):
        line["timings"] = timings_text(timings)
    if "stack" in line:
        line["exception"] = line.pop("stack")  # printed as a block after the line
    return _redact.scrub_text(
        str(_console_renderer(colors)(None, str(line.get("level", "info")), line))
    )


def to_json(line: dict[str, Any]) -> str:
    """
    Render *line* as one compact JSON line: credentials in its text scrubbed, separators escaped.
    """
    text = _json.dumps(line)
    # finish_json's own tests, inlined: the common line skips the call.
    if (
        text.isascii()
        and "@" not in text
        and "=" not in text
        and "'" not in text
        and _redact.no_user_patterns
    ):
        return text
    return _redact.finish_json(text)


def render(line: dict[str, Any], fmt: str = "json") -> str:
    """Render *line* as one compact JSON line, or for the console when *fmt* is ``"console"``."""
    if fmt == "console":
        return render_console(line, CONFIG.colors)
    return to_json(line)


def degraded(
    level: str,
    logger: str,
    message: Any,
    error: BaseException,
    *,
    created: float | None = None,
    pid: int | None = None,
    captured: tuple[dict[str, Any] | None, dict[str, Any] | None] | None = None,
    extras: Mapping[str, Any] | None = None,
) -> str:
    """
    Render the line written when a record could not be rendered normally.

    It keeps what it can: the timestamp, level, logger, static fields, pid, the scope's ids and
    bound fields (*captured*, else the current scope's) and timings, and the *extras* if they
    still render; *message* replaces the event and ``obslog_error`` says what failed.
    """
    if created is None:
        created = time.time()
    if not (
        captured.__class__ is tuple
        and len(captured) == 2
        and all(part is None or part.__class__ is dict for part in captured)
    ):
        # Not captured, or a caller's ``extra`` replaced the captured context: take it now.
        try:
            from ._context import capture  # here: _context imports this module

            captured = capture()
        except Exception:
            captured = (None, None)
    ctx, timings = captured
    event = _safe_str(message)
    reason = f"{type(error).__name__}: {_safe_str(error)}"
    for fields in (extras, None):
        try:
            line = build(
                created, level, logger, event, pid, ctx, timings, fields
            )
        except Exception:
            continue
        line[ERROR] = reason
        return render(line, "json")
    return render(
        _json.sanitize(
            {
                "timestamp": format_timestamp(created),
                "level": level,
                "logger": logger,
                "event": event,
                **CONFIG.static,
                "pid": os.getpid(),
                ERROR: reason,
            }
        ),
        "json",
    )


def degraded_record(record: logging.LogRecord, message: Any, error: BaseException) -> str:
    """
    Render the degraded line of a stdlib *record* (see :func:`degraded`) with its scope and extras.
    """
    d = record.__dict__
    try:
        extras: dict[str, Any] | None = {
            k: v for k, v in d.items() if k not in LOG_RECORD_KEYS and k[:1] != "_"
        }
    except Exception:
        extras = None
    return degraded(
        level_name(record.levelno) if isinstance(record.levelno, int) else "error",
        _safe_str(record.name),
        message,
        error,
        created=record.created if isinstance(record.created, (int, float)) else None,
        pid=record.process if isinstance(record.process, int) else None,
        captured=d.get("_obslog"),
        extras=extras,
    )
