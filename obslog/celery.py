"""
Celery integration: request ids across the broker, one canonical ``task`` line per task run.

The publishing side copies the ids of the current obslog scope into the task message headers
(``before_task_publish``).  The worker side opens a ``task`` scope when a task starts
(``task_prerun``) and closes it when the task ends (``task_postrun``), so every line the task
writes carries its own ``task_id`` / ``task_name`` and the ``request_id`` of the request that queued
it, and each run ends with exactly one canonical ``task`` line::

    {"event": "task", "task_name": "shop.charge", "task_id": "…", "state": "SUCCESS",
     "retries": 0, "duration_ms": 12.8, "outcome": "ok", "request_id": "…", "timings": {…}}

Setup is one call per Celery app::

    import obslog, obslog.celery

    obslog.configure(service="shop-worker")
    obslog.celery.install(app)          # signals + keeps Celery off the root logger
    obslog.celery.enable_events(app)    # optional: task events for ``obslog celery-events``

Celery signals are process-wide, so :func:`install` affects every app in the process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading

from types import TracebackType
from typing import Any

import obslog

from obslog import _stats, _stdlib
from obslog._ids import parse_traceparent, valid_request_id


try:
    from celery import signals as _signals
except ImportError:  # pragma: no cover - exercised only without the extra
    _signals = None


__all__ = [
    "HEADER_REQUEST_ID",
    "HEADER_SPAN_ID",
    "HEADER_TRACE_ID",
    "active_tasks",
    "enable_events",
    "install",
    "uninstall",
]

HEADER_REQUEST_ID = "obslog_request_id"
HEADER_TRACE_ID = "obslog_trace_id"
HEADER_SPAN_ID = "obslog_span_id"

#: Outcome of the canonical line per final Celery state; other states follow the exception.
_OUTCOMES = {
    "SUCCESS": "ok",
    "IGNORED": "ok",
    "FAILURE": "error",
    "REJECTED": "error",
    "RETRY": "retry",
}
_ERROR_COUNTER = "celery_errors"
_UID = "obslog.celery"

_log = logging.getLogger("obslog.celery")
_install_lock = threading.Lock()
_installed = False


class _InFlight:
    """What a running task needs between ``task_prerun`` and ``task_postrun``."""

    __slots__ = ("exc", "scope")

    def __init__(self, scope: Any) -> None:
        self.scope = scope
        self.exc: BaseException | None = None


# task_id -> state of the run in progress; every entry is removed in task_postrun.
_inflight: dict[str, _InFlight] = {}


def _require_celery() -> None:
    if _signals is None:
        msg = "obslog.celery needs Celery: pip install 'obslog[celery]'"
        raise ImportError(msg) from None


def _hex_id(value: Any, length: int) -> str | None:
    if not isinstance(value, str) or len(value) != length:
        return None
    try:
        int(value, 16)
    except ValueError:
        return None
    return value.lower() if value != "0" * length else None


def _swallow(where: str) -> None:
    """Count a failure of one of our receivers; logging never raises into the task."""
    _stats.incr(_ERROR_COUNTER)
    with contextlib.suppress(Exception):  # a broken logging filter must not break the worker
        _log.debug("obslog celery receiver %s failed", where, exc_info=True)


# --------------------------------------------------------------------------- publishing side


def _on_before_task_publish(
    sender: Any = None, headers: dict[str, Any] | None = None, **_: Any
) -> None:
    """Copy the current scope's ids into the message headers (explicit headers win)."""
    try:
        if headers is None:
            return
        scope = obslog.current_scope()
        if scope is None:
            return
        headers.setdefault(HEADER_REQUEST_ID, scope.request_id)
        if scope.trace_id:
            headers.setdefault(HEADER_TRACE_ID, scope.trace_id)
        if scope.span_id:
            headers.setdefault(HEADER_SPAN_ID, scope.span_id)
    except Exception:
        _swallow("before_task_publish")


# --------------------------------------------------------------------------- worker side


def _incoming_ids(request: Any) -> tuple[str | None, str | None, str | None]:
    """Return ``(request_id, trace_id, span_id)`` from a task request, validated."""
    get = getattr(request, "get", None)
    if get is None:
        return None, None, None
    request_id = valid_request_id(get(HEADER_REQUEST_ID))
    trace_id = _hex_id(get(HEADER_TRACE_ID), 32)
    span_id = _hex_id(get(HEADER_SPAN_ID), 16)
    if trace_id is None:
        # A producer instrumented by OpenTelemetry puts a W3C traceparent in the headers.
        parsed = parse_traceparent(get("traceparent"))
        if parsed is not None:
            trace_id, span_id = parsed
    return request_id, trace_id, span_id if trace_id else None


def _on_task_prerun(
    sender: Any = None, task_id: str | None = None, task: Any = None, **_: Any
) -> None:
    """Open the task scope and make it current for the task's own lines."""
    try:
        task = task if task is not None else sender
        if task_id is None or task is None:
            return
        request = getattr(task, "request", None)
        request_id, trace_id, span_id = _incoming_ids(request)
        scope = obslog.scope(
            "task",
            request_id=request_id,
            trace_id=trace_id,
            span_id=span_id,
            task_name=getattr(task, "name", None),
            task_id=task_id,
            retries=getattr(request, "retries", 0) or 0,
        )
        entered = scope.__enter__()
        _inflight[task_id] = _InFlight(entered if entered is not None else scope)
    except Exception:
        _swallow("task_prerun")


def _on_task_failure(
    sender: Any = None,
    task_id: str | None = None,
    exception: BaseException | None = None,
    **_: Any,
) -> None:
    """Remember why the task failed, for the canonical line written at postrun."""
    try:
        run = _inflight.get(task_id) if task_id is not None else None
        if run is not None and exception is not None:
            run.exc = exception
    except Exception:
        _swallow("task_failure")


def _on_task_retry(sender: Any = None, request: Any = None, reason: Any = None, **_: Any) -> None:
    """Remember the exception that caused the retry (not Celery's ``Retry`` wrapper)."""
    try:
        task_id = getattr(request, "id", None)
        run = _inflight.get(task_id) if task_id is not None else None
        if run is None:
            return
        cause = getattr(reason, "exc", None)
        if isinstance(cause, BaseException):
            run.exc = cause
        elif isinstance(reason, BaseException):
            run.exc = reason
    except Exception:
        _swallow("task_retry")


def _exc_info(
    exc: BaseException | None,
) -> tuple[type[BaseException] | None, BaseException | None, TracebackType | None]:
    if exc is None:
        return None, None, None
    return type(exc), exc, exc.__traceback__


def _on_task_postrun(
    sender: Any = None,
    task_id: str | None = None,
    task: Any = None,
    state: str | None = None,
    **_: Any,
) -> None:
    """Close the task scope: exactly one canonical ``task`` line, and the entry is gone."""
    run = _inflight.pop(task_id, None) if task_id is not None else None
    if run is None:
        return
    scope = run.scope
    try:
        exc = run.exc
        if state is None:
            # A BaseException (SystemExit, KeyboardInterrupt, …) is unwinding through the tracer.
            exc = sys.exc_info()[1] or exc
            state = "FAILURE" if isinstance(exc, Exception) else "CANCELLED"
        scope.bind(state=state)
        request = getattr(task if task is not None else sender, "request", None)
        retries = getattr(request, "retries", None)
        if isinstance(retries, int):
            scope.bind(retries=retries)
        outcome = _OUTCOMES.get(state)
        if outcome is not None:
            scope.outcome = outcome
        if outcome == "retry":
            scope.level = logging.WARNING
    except Exception:
        _swallow("task_postrun")
        exc = None
    try:
        scope.__exit__(*_exc_info(exc))
    except Exception:
        _swallow("task_postrun")


def _on_setup_logging(loglevel: Any = None, **_: Any) -> None:
    """Keep the logging set up with :func:`obslog.configure`; configure obslog if nothing was."""
    # Any receiver on setup_logging tells Celery not to replace the root logger's handlers
    # (worker_hijack_root_logger) and not to redirect stdout into a logger.
    if not logging.getLogger().handlers:
        obslog.configure(level=loglevel or None)


def _on_celeryd_init(**_: Any) -> None:
    """Route Python warnings (Celery's SecurityWarning, deprecations) into logging."""
    # Sent just before Celery checks privileges and warns; Celery's own logging setup would
    # capture warnings only after that.
    logging.captureWarnings(True)


def _on_celeryd_after_setup(sender: Any = None, instance: Any = None, **_: Any) -> None:
    """Replace the worker's ASCII banner with one obslog line."""
    try:
        if instance is not None and not getattr(instance, "quiet", True):
            instance.quiet = True
            pool = getattr(instance, "pool_cls", None)
            _log.info(
                "celery worker starting",
                extra={
                    "worker": str(sender),
                    "concurrency": getattr(instance, "concurrency", None),
                    "pool": getattr(pool, "__module__", str(pool)).rsplit(".", 1)[-1],
                },
            )
    except Exception:
        _swallow("celeryd_after_setup")


_WORKER_SAY_LOGGER = "celery.apps.worker"
_original_safe_say: Any = None


def _say(msg: str, f: Any = None) -> None:
    """Write one of the worker's direct messages ("worker: Warm shutdown") as an obslog line.

    Celery writes these from signal handlers with a raw ``os.write``, bypassing logging and its
    locks (a handler lock held by the interrupted code would deadlock).  This keeps that: the line
    is formatted here and written with ``os.write`` to obslog's stream.
    """
    try:
        line = _format_direct(str(msg).strip())
        fd = _direct_fd(f)
        if fd is not None:
            os.write(fd, line.encode("utf-8", "backslashreplace"))
    except Exception:
        _swallow("safe_say")


def _format_direct(message: str) -> str:
    record = logging.LogRecord(_WORKER_SAY_LOGGER, logging.INFO, __file__, 0, message, None, None)
    formatter = None
    for handler in logging.getLogger().handlers:
        if getattr(handler, "_obslog_handler", False) and handler.formatter is not None:
            formatter = handler.formatter
            break
    if formatter is None:
        formatter = _stdlib.make_formatter()
    return formatter.format(record) + "\n"


def _direct_fd(f: Any) -> int | None:
    for handler in logging.getLogger().handlers:
        stream = getattr(handler, "stream", None)
        if getattr(handler, "_obslog_handler", False) and stream is not None:
            return int(stream.fileno())
    target = f if f is not None else sys.__stdout__
    return int(target.fileno()) if target is not None else None


def _patch_safe_say(on: bool) -> None:
    global _original_safe_say
    try:
        from celery.apps import worker as celery_worker
    except ImportError:  # pragma: no cover - celery without its worker program
        return
    if on and _original_safe_say is None:
        _original_safe_say = celery_worker.safe_say
        celery_worker.safe_say = _say
    elif not on and _original_safe_say is not None:
        celery_worker.safe_say = _original_safe_say
        _original_safe_say = None


_RECEIVERS: tuple[tuple[str, Any], ...] = (
    ("before_task_publish", _on_before_task_publish),
    ("task_prerun", _on_task_prerun),
    ("task_failure", _on_task_failure),
    ("task_retry", _on_task_retry),
    ("task_postrun", _on_task_postrun),
)


_LOGGING_RECEIVERS: tuple[tuple[str, Any], ...] = (
    ("setup_logging", _on_setup_logging),
    ("celeryd_init", _on_celeryd_init),
    ("celeryd_after_setup", _on_celeryd_after_setup),
)


def install(app: Any = None, *, keep_logging: bool = True) -> None:
    """
    Connect obslog to Celery's task signals; calling it again does nothing.

    Tasks published inside an obslog scope carry its ``request_id``, ``trace_id`` and ``span_id``
    in their message headers; each task run in a worker gets its own ``task`` scope and ends with
    one canonical ``task`` line (``task_name``, ``task_id``, ``state``, ``retries``,
    ``duration_ms``, ``outcome``, ``timings``).

    Args:
        app: The Celery app.  Celery signals are process-wide, so every app in the process is
            covered and *app* may be omitted.
        keep_logging: Connect a receiver to ``setup_logging`` so that a worker keeps the logging
            set up with :func:`obslog.configure` instead of replacing the root logger's handlers
            and redirecting stdout (``celery worker --logfile`` is then ignored).  When nothing
            configured logging, obslog is configured with the worker's ``--loglevel``.  The
            worker's own output becomes obslog lines too: Python warnings (its
            ``SecurityWarning``) go through logging, its ASCII banner is replaced by one
            ``celery worker starting`` line, and the messages it writes directly from signal
            handlers (``worker: Warm shutdown (MainProcess)``) are written as obslog lines.  Pass
            ``False`` to let Celery configure logging.

    Raises:
        ImportError: Celery is not installed.

    .. versionadded:: 0.1.0
    """
    _require_celery()
    global _installed
    with _install_lock:
        if _installed:
            return
        for name, receiver in _RECEIVERS:
            getattr(_signals, name).connect(receiver, weak=False, dispatch_uid=f"{_UID}.{name}")
        if keep_logging:
            for name, receiver in _LOGGING_RECEIVERS:
                getattr(_signals, name).connect(
                    receiver, weak=False, dispatch_uid=f"{_UID}.{name}"
                )
            _patch_safe_say(True)
        _installed = True


def uninstall() -> None:
    """
    Disconnect every receiver connected by :func:`install`.

    .. versionadded:: 0.1.0
    """
    _require_celery()
    global _installed
    with _install_lock:
        for name, receiver in _RECEIVERS:
            getattr(_signals, name).disconnect(receiver, dispatch_uid=f"{_UID}.{name}")
        for name, receiver in _LOGGING_RECEIVERS:
            getattr(_signals, name).disconnect(receiver, dispatch_uid=f"{_UID}.{name}")
        _patch_safe_say(False)
        _installed = False


def enable_events(app: Any) -> None:
    """
    Turn on the task events that ``obslog celery-events`` consumes.

    Sets ``worker_send_task_events`` (``task-received``, ``task-started``, ``task-succeeded``,
    ``task-failed``, ``task-retried``; same as ``celery worker -E``) and ``task_send_sent_event``
    (``task-sent``, sent by the publisher, so call this in the web process too).

    Args:
        app: The Celery app.

    .. versionadded:: 0.1.0
    """
    _require_celery()
    app.conf.worker_send_task_events = True
    app.conf.task_send_sent_event = True


def active_tasks() -> int:
    """
    Return the number of task runs in this process between ``task_prerun`` and ``task_postrun``.

    .. versionadded:: 0.1.0
    """
    return len(_inflight)
