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

from . import _json
from ._config import CONFIG, REDACTED, _secret_cache, is_secret
from ._schema import PROTECTED


__all__ = ["build", "exc_fields", "format_timestamp", "level_name", "redact", "render"]

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]

_CONTAINERS = (dict, list, tuple)
_EMPTY: dict[str, Any] = {}
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
    return {
        "exc_type": qualname if module == "builtins" else f"{module}.{qualname}",
        "exc_message": _safe_str(exc),
        "stack": stack,
    }


def redact(value: Any, _depth: int = 0) -> Any:
    """
    Return *value* with every secret key at any depth replaced by ``[REDACTED]`` (copies on change).
    """
    if _depth > 32:
        return value
    if isinstance(value, dict):
        out = None
        for key, item in value.items():
            new = REDACTED if is_secret(key) else redact(item, _depth + 1)
            if new is not item and out is None:
                out = dict(value)
            if out is not None:
                out[key] = new
        return value if out is None else out
    if isinstance(value, (list, tuple)):
        items = [redact(item, _depth + 1) for item in value]
        if all(a is b for a, b in zip(items, value, strict=False)):
            return value
        return items
    return value


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
) -> dict[str, Any]:
    """
    Return the fields of one line in schema order.

    *extras* (``extra=`` or structlog keywords) are redacted; one that clashes with a schema field
    or a bound field is kept as ``extra_<key>`` instead of overwriting it.
    """
    line: dict[str, Any] = {
        "timestamp": format_timestamp(created),
        "level": level,
        "logger": logger,
        "event": event if event.__class__ is str else _safe_str(event),
        **CONFIG.static,
        "pid": pid if pid is not None else os.getpid(),
        **(ctx or _EMPTY),
    }
    if extras:
        secrets = _secret_cache
        for key, value in extras.items():
            if key.__class__ is not str:
                key = str(key)
            if key in line or key in PROTECTED:
                key = f"extra_{key}"
            elif key[:1] == "_":  # private by convention (python-json-logger, structlog)
                continue
            secret = secrets.get(key)
            if secret is None:
                secret = is_secret(key)
            if secret:
                value = REDACTED
            elif value.__class__ in _CONTAINERS:
                value = redact(value)
            line[key] = value
    if timings:
        line["timings"] = timings
    if exc_info:
        line.update(exc_fields(exc_info))
    if stack_info:
        line["stack_info"] = stack_info
    return line


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
    return str(_console_renderer(colors)(None, str(line.get("level", "info")), line))


def render(line: dict[str, Any], fmt: str = "json") -> str:
    """Render *line* as one compact JSON line, or for the console when *fmt* is ``"console"``."""
    if fmt == "console":
        return render_console(line, CONFIG.colors)
    return _json.dumps(line)


def degraded(level: str, logger: str, message: Any, error: BaseException) -> str:
    """Render the line written when a record could not be rendered normally."""
    return _json.dumps(
        _json.sanitize(
            {
                "timestamp": format_timestamp(time.time()),
                "level": level,
                "logger": logger,
                "event": _safe_str(message),
                **CONFIG.static,
                "pid": os.getpid(),
                "obslog_error": f"{type(error).__name__}: {_safe_str(error)}",
            }
        )
    )
