"""
Set up stdlib logging and structlog in one call: :func:`configure`, or the ``dictConfig`` dict of
:func:`dict_config` (which changes nothing until ``logging.config.dictConfig`` applies it).
"""

from __future__ import annotations

import logging
import os
import sys

from collections.abc import Mapping
from typing import IO, Any

import structlog

from . import _config
from ._logger import install_logger_class
from ._stdlib import JsonFormatter, make_formatter
from .processors import BoundLogger, render_to_stdlib


__all__ = ["configure", "configure_structlog", "dict_config"]

_HANDLER_MARK = "_obslog_handler"


def configure_structlog() -> None:
    """Route structlog through the stdlib loggers, rendering obslog lines (idempotent)."""
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, render_to_stdlib],
        wrapper_class=BoundLogger,
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )


def _settings(**settings: Any) -> None:
    _config.update(**settings)
    configure_structlog()


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except Exception:  # any file-like object will do
        return False


def configure(
    service: str | None = None,
    env: str | None = None,
    version: str | None = None,
    level: int | str | None = None,
    fmt: str | None = None,
    stream: IO[str] | None = None,
    *,
    redact_keys: Any = None,
    redact_text: bool | None = None,
    redact_patterns: Any = None,
    sample_rate: int | None = None,
    slow_ms: float | None = None,
    canonical_logger: str | None = None,
    callsite: bool | None = None,
) -> logging.Handler:
    """
    Configure stdlib logging and structlog to write obslog lines to *stream*, in one call.

    Installs one handler on the root logger (replacing the one a previous call installed, so calling
    twice never duplicates lines; the formatter takes the context in the logging thread, so no
    :class:`~obslog.ContextFilter` is needed on it), sets the root level, makes structlog route
    through stdlib, and makes ``extra`` keys that clash with LogRecord attributes safe.

    Args:
        service: Static ``service`` field (also the Loki stream label).  Env: ``OBSLOG_SERVICE``.
        env: Static ``env`` field (``prod``, ``staging``...).
        version: Static ``version`` field.
        level: Root level, a name or a number; default ``INFO``.  Env: ``OBSLOG_LEVEL``.
        fmt: ``"json"`` (default) or ``"console"``.  Env: ``OBSLOG_FORMAT``.
        stream: Where lines go; default ``sys.stdout``.
        redact_keys: Key names whose values are replaced by ``[REDACTED]`` at any depth.
        redact_text: Scrub credentials out of free text (messages, values, exceptions); default
            ``True``.  See "Redaction and sampling" in the README for what it covers.
        redact_patterns: More regular expressions to scrub from every line: the match (or its
            group named ``secret``) becomes ``[REDACTED]``.
        sample_rate: Keep 1 in *sample_rate* canonical lines that are neither errors nor slow.
        slow_ms: Canonical lines at least this slow are always kept when sampling.
        canonical_logger: Logger name of canonical lines; default ``"obslog"``.
        callsite: Put the caller on every line (``module``, ``func``, ``lineno``), on both
            paths; default ``False``.  Without it, :class:`~obslog.ObslogLogger` skips the
            stdlib's stack walk for a record that no handler, filter or formatter may read the
            caller of (a ``%(lineno)d`` format, an unknown handler class or filter keeps it).

    Returns:
        The installed handler.

    Raises:
        ValueError, TypeError: a setting is invalid; the message says what is valid.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       *callsite*.
    """
    _settings(
        service=service,
        env=env,
        version=version,
        level=level,
        fmt=fmt,
        redact_keys=redact_keys,
        redact_text=redact_text,
        redact_patterns=redact_patterns,
        sample_rate=sample_rate,
        slow_ms=slow_ms,
        canonical_logger=canonical_logger,
        callsite=callsite,
    )
    # After structlog: its LoggerFactory sets a logger class of its own.
    install_logger_class()
    stream = stream if stream is not None else sys.stdout
    _config.update(colors=_config.CONFIG.fmt == "console" and _isatty(stream))
    handler = logging.StreamHandler(stream)
    handler.setFormatter(make_formatter())
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_config.CONFIG.level)
    return handler


def dict_config(
    service: str | None = None,
    env: str | None = None,
    version: str | None = None,
    level: int | str | None = None,
    fmt: str | None = None,
    stream: Any = "ext://sys.stdout",
    *,
    redact_keys: Any = None,
    redact_text: bool | None = None,
    redact_patterns: Any = None,
    sample_rate: int | None = None,
    slow_ms: float | None = None,
    canonical_logger: str | None = None,
    callsite: bool | None = None,
) -> dict[str, Any]:
    """
    Return a ``logging.config.dictConfig`` dict that writes obslog lines; changes nothing itself.

    The arguments are those of :func:`configure`; they are validated now (an invalid one raises
    here) and the environment overrides apply.  The dict is plain data that carries every setting:
    applying it with ``logging.config.dictConfig`` is what configures, exactly as
    :func:`configure` does except that the logger class is left alone (see
    :class:`~obslog.ObslogLogger`): it sets obslog's settings to the dict's (the others to their
    defaults) and routes structlog through stdlib.  Extend the dict with your own loggers and
    handlers before passing it on; it keeps existing loggers enabled.

    >>> import logging.config, obslog
    >>> logging.config.dictConfig(obslog.dict_config(service="shop"))

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       Pure: nothing is configured until the dict is applied.
    """
    settings = _resolve(
        service=service,
        env=env,
        version=version,
        level=level,
        fmt=fmt,
        redact_keys=redact_keys,
        redact_text=redact_text,
        redact_patterns=redact_patterns,
        sample_rate=sample_rate,
        slow_ms=slow_ms,
        canonical_logger=canonical_logger,
        callsite=callsite,
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"obslog": {"()": f"{__name__}.configured_formatter", "settings": settings}},
        "handlers": {
            "obslog": {"class": "logging.StreamHandler", "stream": stream, "formatter": "obslog"}
        },
        "root": {
            "level": logging.getLevelName(settings.get("level", logging.INFO)),
            "handlers": ["obslog"],
        },
    }


def _resolve(**settings: Any) -> dict[str, Any]:
    """
    Return the settings given (or set in the environment), validated, as plain data.

    The same rules as :func:`configure` (the environment wins), without storing anything.
    """
    for name, var in _config._ENV.items():
        env_value = os.environ.get(var)
        if env_value:
            value: Any = env_value.lower() if name == "fmt" else env_value
            try:
                settings[name] = _config._validated(name, value)
            except ValueError as exc:
                msg = f"environment variable {var}={env_value!r}: {exc}"
                raise ValueError(msg) from None
    resolved: dict[str, Any] = {}
    for name, value in settings.items():
        if value is not None:
            valid = _config._validated(name, value)
            if isinstance(valid, (set, frozenset)):
                valid = sorted(valid)
            elif isinstance(valid, tuple):
                valid = list(valid)
            resolved[name] = valid
    return resolved


def configured_formatter(settings: Mapping[str, Any]) -> JsonFormatter:
    """
    Apply *settings* (from :func:`dict_config`) and return the formatter they ask for.

    ``logging.config.dictConfig`` calls this for the dict :func:`dict_config` returns: obslog's
    settings become *settings*, the others their defaults (nothing is left from an earlier call),
    and structlog routes through stdlib.
    """
    _config.reset_defaults()
    _settings(**dict(settings))
    return make_formatter()
