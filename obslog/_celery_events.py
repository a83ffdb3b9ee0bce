"""
``obslog celery-events``: Celery's event stream as structured log lines.

Celery does not keep task events: a worker sends them (when started with ``-E`` or
``worker_send_task_events``) and they are gone unless something consumes them.  This command
consumes them with Celery's event receiver and writes each one as one obslog line::

    {"event": "celery_event", "type": "task-succeeded", "task_id": "…", "task_name": "shop.charge",
     "hostname": "celery@web-1", "runtime_ms": 12.8, …}

With ``--snapshot-interval`` it also asks the workers what they run now
(``app.control.inspect().active()``) and writes one ``celery_active`` line per worker.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import time

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from obslog._render import format_timestamp


__all__ = ["EventLogger", "main"]

LOGGER_NAME = "obslog.celery_events"
#: Task names remembered per task id, so that later events (which carry no name) get one.
MAX_REMEMBERED_NAMES = 10_000

# Event fields copied as they are; everything else is renamed, converted or dropped (args, kwargs
# and results may be large or sensitive and are never written).
_COPIED = (
    "hostname",
    "retries",
    "root_id",
    "parent_id",
    "eta",
    "expires",
    "queue",
    "exchange",
    "routing_key",
    "terminated",
    "signum",
    "expired",
    "requeue",
    "freq",
    "active",
    "processed",
    "loadavg",
    "sw_ident",
    "sw_ver",
    "sw_sys",
)
_TERMINAL = frozenset({"task-succeeded", "task-failed", "task-revoked", "task-rejected"})
_LEVELS = {"task-failed": logging.ERROR, "task-retried": logging.WARNING}


def _exc_type(text: str) -> str | None:
    """Return ``ValueError`` for Celery's ``"ValueError('boom')"`` representation, else ``None``."""
    name = text.split("(", 1)[0].strip()
    if name and all(part.isidentifier() for part in name.split(".")):
        return name
    return None


class EventLogger:
    """
    Turn Celery event dicts into log records on one logger.

    Args:
        logger: Where the lines go.
        worker_events: Also write ``worker-*`` events (online, offline, heartbeat).
        limit: Stop (see :attr:`done`) after this many written events; ``None`` for no limit.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self, logger: logging.Logger, *, worker_events: bool = False, limit: int | None = None
    ) -> None:
        self.logger = logger
        self.worker_events = worker_events
        self.limit = limit
        self.count = 0
        self._names: OrderedDict[str, str] = OrderedDict()

    @property
    def done(self) -> bool:
        """Whether the limit of written events has been reached."""
        return self.limit is not None and self.count >= self.limit

    def fields(self, event: dict[str, Any]) -> dict[str, Any]:
        """Return the log fields of one event dict."""
        kind = str(event.get("type", ""))
        out: dict[str, Any] = {"type": kind}
        task_id = event.get("uuid")
        if task_id is not None:
            out["task_id"] = task_id
            name = event.get("name")
            if name:
                self._remember(task_id, name)
            else:
                name = self._names.get(task_id)
            if name:
                out["task_name"] = name
            if kind in _TERMINAL:
                self._names.pop(task_id, None)
        for key in _COPIED:
            value = event.get(key)
            if value is not None:
                out[key] = value
        if event.get("pid") is not None:
            out["worker_pid"] = event["pid"]
        timestamp = event.get("timestamp")
        if isinstance(timestamp, (int, float)):
            out["event_time"] = format_timestamp(timestamp)
        runtime = event.get("runtime")
        if isinstance(runtime, (int, float)):
            out["runtime_ms"] = round(runtime * 1000.0, 3)
        exception = event.get("exception")
        if exception:
            # The task's error, raised in a worker: the worker's own ``task`` line carries it as
            # exc_type/exc_message/stack; here it keeps Celery's names so it is not counted twice.
            exc_type = _exc_type(str(exception))
            if exc_type is not None:
                out["exception_type"] = exc_type
            out["exception"] = str(exception)
            if event.get("traceback"):
                out["traceback"] = str(event["traceback"])
        return out

    def _remember(self, task_id: str, name: str) -> None:
        self._names[task_id] = name
        self._names.move_to_end(task_id)
        while len(self._names) > MAX_REMEMBERED_NAMES:
            self._names.popitem(last=False)

    def __call__(self, event: dict[str, Any]) -> None:
        """Write one event (a receiver handler); worker events only when asked for."""
        if self.done:
            return
        kind = str(event.get("type", ""))
        if kind.startswith("worker-") and not self.worker_events:
            return
        level = _LEVELS.get(kind, logging.INFO)
        self.logger.log(level, "celery_event", extra=self.fields(event))
        self.count += 1

    def snapshot(self, inspect: Callable[[], dict[str, list[dict[str, Any]]] | None]) -> None:
        """Write one ``celery_active`` line per worker from ``inspect().active()``."""
        try:
            replies = inspect() or {}
        except Exception as exc:
            self.logger.warning("celery_active_failed", exc_info=exc)
            return
        now = time.time()
        if not replies:
            self.logger.warning("celery_active", extra={"workers": 0, "active": 0})
            return
        for hostname, tasks in sorted(replies.items()):
            active = []
            for task in tasks or ():
                item: dict[str, Any] = {"task_id": task.get("id"), "task_name": task.get("name")}
                started = task.get("time_start")
                if isinstance(started, (int, float)):
                    item["running_ms"] = round(max(now - started, 0.0) * 1000.0, 3)
                if task.get("worker_pid") is not None:
                    item["worker_pid"] = task["worker_pid"]
                active.append(item)
            self.logger.info(
                "celery_active",
                extra={
                    "hostname": hostname,
                    "workers": len(replies),
                    "active": len(active),
                    "tasks": active,
                },
            )


def _load_app(spec: str | None, broker: str | None) -> Any:
    try:
        from celery import Celery
    except ImportError:
        msg = "obslog celery-events needs Celery: pip install 'obslog[celery]'"
        raise ImportError(msg) from None
    if spec is None:
        app = Celery("obslog-celery-events", broker=broker, set_as_current=False)
    else:
        module_name, _, attr = spec.partition(":")
        # As `celery -A`: the app's module is found from the current directory, also when this
        # runs as the `obslog` console script (whose sys.path starts with its bin directory).
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())
        module = importlib.import_module(module_name)
        app = getattr(module, attr or "app")
        if broker is not None:
            app.conf.broker_url = broker
    return app


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="obslog celery-events",
        description="Write Celery task events as structured obslog JSON lines.",
    )
    parser.add_argument(
        "--broker", help="broker URL, e.g. redis://127.0.0.1:6379/0 (default: the app's)"
    )
    parser.add_argument("--app", help="Celery app as module:attribute, e.g. shop.worker:app")
    parser.add_argument(
        "--snapshot-interval",
        type=float,
        default=0.0,
        metavar="S",
        help="every S seconds also write what each worker runs (inspect().active()); 0: never",
    )
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="stop after N events")
    parser.add_argument(
        "--timeout", type=float, default=None, metavar="S", help="stop after S seconds"
    )
    parser.add_argument("--worker-events", action="store_true", help="also write worker-* events")
    parser.add_argument(
        "--service",
        default="celery-events",
        help="service field of the lines (default: celery-events)",
    )
    parser.add_argument("--level", default=None, help="log level (default INFO)")
    return parser


def run(
    app: Any,
    handler: EventLogger,
    *,
    timeout: float | None = None,
    snapshot_interval: float = 0.0,
    poll_interval: float = 0.25,
) -> None:
    """
    Consume *app*'s event stream into *handler* until its limit, *timeout* or ``KeyboardInterrupt``.

    Args:
        app: The Celery app whose broker carries the events.
        handler: Writes the lines and knows the limit.
        timeout: Seconds to run; ``None`` for ever.
        snapshot_interval: Seconds between ``inspect().active()`` snapshots; ``0`` for none.
        poll_interval: How often the loop wakes up to check the deadline without events.

    .. versionadded:: 0.1.0
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    next_snapshot: float | None = None
    logger = handler.logger
    iterations = 0
    broker_uri = ""

    def inspect_active() -> Any:
        return app.control.inspect(timeout=min(1.0, max(snapshot_interval / 2, 0.2))).active()

    class Receiver(app.events.Receiver):  # type: ignore[misc]  # subclasses Any: Celery is untyped
        def on_iteration(self) -> None:
            nonlocal iterations, next_snapshot
            iterations += 1
            now = time.monotonic()
            if iterations == 2:
                # The first drain subscribed the event queue (Redis subscribes lazily), so events
                # published from now on are seen.
                logger.info("celery_events_listening", extra={"broker": broker_uri})
                if snapshot_interval > 0:
                    next_snapshot = now
            if handler.done or (deadline is not None and now >= deadline):
                self.should_stop = True
                return
            if next_snapshot is not None and now >= next_snapshot:
                handler.snapshot(inspect_active)
                next_snapshot = time.monotonic() + snapshot_interval

    with app.connection_for_read() as connection:
        connection.ensure_connection(
            max_retries=3, interval_start=0.5, interval_step=0.5, interval_max=1.0
        )
        broker_uri = connection.as_uri()  # kombu masks the password
        receiver = Receiver(connection, handlers={"*": handler}, app=app)
        for _ in receiver.consume(limit=None, timeout=None, safety_interval=poll_interval):
            if handler.done:
                receiver.should_stop = True


def _configure_logging(service: str | None, level: str | None) -> logging.Logger:
    import obslog

    obslog.configure(service=service, level=level or "INFO", fmt="json", stream=sys.stdout)
    return logging.getLogger(LOGGER_NAME)


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run ``obslog celery-events``; return the exit status.

    Args:
        argv: Arguments after the command name; ``None`` reads ``sys.argv[1:]``.

    Returns:
        ``0`` after the limit, the timeout or Ctrl-C; ``1`` when the broker cannot be reached;
        ``2`` for bad arguments.

    .. versionadded:: 0.1.0
    """
    parser = _parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.broker is None and args.app is None:
        parser.print_usage(sys.stderr)
        print(
            "obslog celery-events: error: give --broker URL or --app module:attr", file=sys.stderr
        )
        return 2
    if args.limit is not None and args.limit < 1:
        print("obslog celery-events: error: --limit must be >= 1", file=sys.stderr)
        return 2
    seconds = (("--snapshot-interval", args.snapshot_interval), ("--timeout", args.timeout))
    for option, value in seconds:
        if value is not None and not value >= 0:  # also rejects nan
            message = f"obslog celery-events: error: {option} must be >= 0, not {value}"
            print(message, file=sys.stderr)
            return 2
    try:
        app = _load_app(args.app, args.broker)
    except (ImportError, AttributeError) as exc:
        print(f"obslog celery-events: error: cannot load the app: {exc}", file=sys.stderr)
        return 2
    # After importing the app: its module may configure logging for its worker.
    try:
        logger = _configure_logging(args.service, args.level)
    except (TypeError, ValueError) as exc:  # --level or an OBSLOG_* variable
        print(f"obslog celery-events: error: {exc}", file=sys.stderr)
        return 2
    handler = EventLogger(logger, worker_events=args.worker_events, limit=args.limit)
    try:
        run(app, handler, timeout=args.timeout, snapshot_interval=args.snapshot_interval)
    except KeyboardInterrupt:
        return 0
    except (TimeoutError, OSError) as exc:
        logger.error("celery_events_broker_error", exc_info=exc)
        return 1
    except Exception as exc:
        # kombu raises its own OperationalError (not an OSError) when the broker is down.
        if type(exc).__module__.startswith(("kombu", "amqp", "redis")):
            logger.error("celery_events_broker_error", exc_info=exc)
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
