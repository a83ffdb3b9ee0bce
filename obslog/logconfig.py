"""
Logging configs that put the servers' own lines in obslog's JSON schema.

uvicorn and gunicorn configure logging themselves, before your app is imported: their startup,
error and shutdown lines would otherwise be plain text beside obslog's JSON lines.  Hand them one
of these ``logging.config.dictConfig`` dicts::

    uvicorn.run(app, log_config=obslog.logconfig.uvicorn(service="shop"))

    # gunicorn.conf.py
    import obslog.logconfig
    logconfig_dict = obslog.logconfig.gunicorn(service="shop")

or, from the command line::

    python -m obslog.logconfig uvicorn --service shop > log.json
    uvicorn main:application --log-config log.json
    gunicorn -c python:obslog.logconfig main:app

Every server line then goes through one handler on the root logger, with obslog's formatter; the
servers' loggers keep no handler of their own.  That handler is the one :func:`obslog.configure`
replaces, so an app that calls ``obslog.configure()`` on import does not double any line.  The
servers' per-request access lines are muted unless *access_log* is true: obslog's canonical
``request`` line already says it.  For Celery, :func:`obslog.celery.install` does the same
through Celery's ``setup_logging`` signal.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from typing import IO, Any

from obslog._config import parse_level
from obslog._configure import _HANDLER_MARK, _settings
from obslog._stdlib import make_formatter


__all__ = ["formatter", "gunicorn", "handler", "logconfig_dict", "uvicorn"]


def formatter(
    service: str | None = None,
    env: str | None = None,
    version: str | None = None,
    fmt: str | None = None,
) -> logging.Formatter:
    """
    Apply obslog's settings and return its formatter: a ``dictConfig`` factory (``"()"``).

    The settings are those of :func:`obslog.configure` (``None`` leaves one unchanged; the
    ``OBSLOG_*`` environment variables win as usual).

    Returns:
        A :class:`obslog.JsonFormatter` (or :class:`obslog.ConsoleFormatter` for ``"console"``).

    .. versionadded:: 0.2.0
    """
    _settings(service=service, env=env, version=version, fmt=fmt)
    return make_formatter()


def handler(stream: IO[str] | None = None) -> logging.Handler:
    """
    Return a stream handler that :func:`obslog.configure` replaces: a ``dictConfig`` factory.

    Args:
        stream: Where lines go; default ``sys.stdout``.

    Returns:
        A :class:`logging.StreamHandler` marked as obslog's own.

    .. versionadded:: 0.2.0
    """
    created = logging.StreamHandler(stream if stream is not None else sys.stdout)
    setattr(created, _HANDLER_MARK, True)
    return created


class _DropColorMessage(logging.Filter):
    """Drop the ANSI-coloured copy of the message uvicorn puts on some records."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Only uvicorn's own formatter reads it, and this config does not install that formatter.
        record.__dict__.pop("color_message", None)
        return True


def _config(
    loggers: dict[str, Any],
    *,
    service: str | None,
    env: str | None,
    version: str | None,
    level: str,
    fmt: str | None,
    stream: str,
) -> dict[str, Any]:
    settings = {
        name: value
        for name, value in (("service", service), ("env", env), ("version", version), ("fmt", fmt))
        if value is not None
    }
    config: dict[str, Any] = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"obslog": {"()": "obslog.logconfig.formatter", **settings}},
        "handlers": {
            "obslog": {"()": "obslog.logconfig.handler", "formatter": "obslog", "stream": stream}
        },
        "loggers": loggers,
        "root": {"level": level, "handlers": ["obslog"]},
    }
    if any("filters" in logger for logger in loggers.values()):
        config["filters"] = {"no_color_message": {"()": "obslog.logconfig._DropColorMessage"}}
    return config


def _level_name(level: int | str) -> str:
    return logging.getLevelName(parse_level(level))


def uvicorn(
    service: str | None = None,
    env: str | None = None,
    version: str | None = None,
    level: int | str = "INFO",
    fmt: str | None = None,
    stream: str = "ext://sys.stdout",
    *,
    access_log: bool = False,
) -> dict[str, Any]:
    """
    Return a ``dictConfig`` dict for uvicorn: its own lines as obslog lines.

    Pass it as ``uvicorn.run(..., log_config=...)``, or write it to a file for
    ``uvicorn --log-config`` (``python -m obslog.logconfig uvicorn > log.json``).

    Args:
        service: Static ``service`` field (see :func:`obslog.configure`).
        env: Static ``env`` field.
        version: Static ``version`` field.
        level: Level of the root logger and of uvicorn's loggers.
        fmt: ``"json"`` (default) or ``"console"``.
        stream: Where lines go, as ``dictConfig`` names it.
        access_log: Keep uvicorn's per-request access lines (muted by default: obslog's
            canonical line says the same).

    Returns:
        The dict, JSON-serialisable.

    Raises:
        ValueError: *level* is not a level.

    .. versionadded:: 0.2.0
    """
    name = _level_name(level)
    no_color = ["no_color_message"]
    loggers = {
        "uvicorn": {"level": name, "handlers": [], "propagate": True, "filters": no_color},
        "uvicorn.error": {"level": name, "handlers": [], "propagate": True, "filters": no_color},
        "uvicorn.access": {
            "level": name if access_log else "WARNING",
            "handlers": [],
            "propagate": True,
            "filters": no_color,
        },
    }
    return _config(
        loggers, service=service, env=env, version=version, level=name, fmt=fmt, stream=stream
    )


def gunicorn(
    service: str | None = None,
    env: str | None = None,
    version: str | None = None,
    level: int | str = "INFO",
    fmt: str | None = None,
    stream: str = "ext://sys.stdout",
    *,
    access_log: bool = False,
) -> dict[str, Any]:
    """
    Return a ``dictConfig`` dict for gunicorn's ``logconfig_dict`` setting.

    In ``gunicorn.conf.py``: ``logconfig_dict = obslog.logconfig.gunicorn(service="shop")``; or
    ``gunicorn -c python:obslog.logconfig`` for the defaults (:data:`logconfig_dict`).  gunicorn
    replaces its own ``loggers``/``handlers``/``formatters`` with these, so the master's and the
    workers' lines (``Starting gunicorn``, ``Booting worker``, ``Worker exiting``, errors) are
    obslog lines.

    Args:
        service: Static ``service`` field (see :func:`obslog.configure`).
        env: Static ``env`` field.
        version: Static ``version`` field.
        level: Level of the root logger and of ``gunicorn.error``.
        fmt: ``"json"`` (default) or ``"console"``.
        stream: Where lines go, as ``dictConfig`` names it.
        access_log: Keep ``gunicorn.access`` lines (written only with ``--access-logfile``).

    Returns:
        The dict, JSON-serialisable.

    Raises:
        ValueError: *level* is not a level.

    .. versionadded:: 0.2.0
    """
    name = _level_name(level)
    loggers = {
        "gunicorn.error": {"level": name, "handlers": [], "propagate": True},
        "gunicorn.access": {
            "level": "INFO" if access_log else "WARNING",
            "handlers": [],
            "propagate": True,
        },
    }
    return _config(
        loggers, service=service, env=env, version=version, level=name, fmt=fmt, stream=stream
    )


logconfig_dict = gunicorn()
"""The default :func:`gunicorn` dict, read by ``gunicorn -c python:obslog.logconfig``."""


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m obslog.logconfig",
        description="Print a logging dictConfig (JSON) that writes a server's own lines as "
        "obslog lines, e.g. for `uvicorn --log-config log.json`.",
    )
    parser.add_argument("server", choices=["uvicorn", "gunicorn"])
    parser.add_argument("--service")
    parser.add_argument("--env")
    parser.add_argument("--version", dest="release", metavar="VERSION")
    parser.add_argument("--level", default="INFO")
    parser.add_argument("--fmt", choices=["json", "console"])
    parser.add_argument("--access-log", action="store_true", help="keep per-request lines")
    args = parser.parse_args(argv)
    make = uvicorn if args.server == "uvicorn" else gunicorn
    try:
        config = make(
            args.service,
            args.env,
            args.release,
            args.level,
            args.fmt,
            access_log=args.access_log,
        )
    except ValueError as exc:
        parser.error(str(exc))
    print(json.dumps(config, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
