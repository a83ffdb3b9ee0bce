"""
Tests for obslog.celery and ``obslog celery-events``: a real worker process on a real Redis broker.

The worker (``tests/celery_app/obslog_celery_testapp.py``, prefork pool, one child) writes obslog
JSON lines to a file that the tests read back; tasks are published from this process inside obslog
scopes.  Every run uses its own queue, worker name and Redis database 5, and removes its keys.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


celery = pytest.importorskip("celery")

import obslog  # noqa: E402
import obslog.celery  # noqa: E402

from obslog._celery_events import EventLogger, main  # noqa: E402
from obslog.testing import CapturedLines, capture_lines  # noqa: E402


APP_DIR = Path(__file__).parent / "celery_app"
REDIS_DB = 5
WAIT = 30.0  # seconds a test waits for a line before it fails


# --------------------------------------------------------------------------- helpers


def _broker(redis_url: str) -> str:
    return f"{redis_url.rsplit('/', 1)[0]}/{REDIS_DB}"


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OBSLOG_", "CELERY_"))}
    env.update(extra)
    return env


class LogFile:
    """The JSON lines a process writes to a file, read back as dicts."""

    def __init__(self, path: Path, *, strict: bool = True) -> None:
        self.path = path
        # strict: every line must be JSON (a file only obslog writes to).
        self.strict = strict

    def lines(self) -> list[dict[str, Any]]:
        """Return every complete line parsed so far."""
        if not self.path.exists():
            return []
        text = self.path.read_text(encoding="utf-8")
        return [
            json.loads(line)
            for line in text.splitlines(keepends=True)
            if line.endswith("\n") and (self.strict or line.startswith("{"))
        ]

    def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], bool], what: str
    ) -> list[dict[str, Any]]:
        """Poll until *predicate(lines)* holds; fail after :data:`WAIT` seconds."""
        deadline = time.monotonic() + WAIT
        while True:
            lines = self.lines()
            if predicate(lines):
                return lines
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}; got {len(lines)} lines")
            time.sleep(0.05)


def _task_lines(lines: list[dict[str, Any]], task_id: str) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("task_id") == task_id and line["event"] == "task"]


class Worker:
    """A ``celery worker`` subprocess running the test app on its own queue."""

    def __init__(self, broker: str, tmp: Path, *, stdout_log: bool = False) -> None:
        self.token = uuid.uuid4().hex[:10]
        self.broker = broker
        self.queue = f"obslog-test-{self.token}"
        self.output = tmp / f"worker-{self.token}.out"
        # stdout_log: obslog writes to the worker's stdout, read back from its output file.
        self.log = (
            LogFile(self.output, strict=False)
            if stdout_log
            else LogFile(tmp / f"worker-{self.token}.log")
        )
        self._log_env = "-" if stdout_log else str(self.log.path)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the worker and wait until it consumes its queue."""
        env = _clean_env(
            OBSLOG_TEST_BROKER=self.broker,
            OBSLOG_TEST_QUEUE=self.queue,
            OBSLOG_TEST_LOG=self._log_env,
            PYTHONPATH=os.pathsep.join([str(APP_DIR), os.environ.get("PYTHONPATH", "")]),
        )
        with self.output.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "obslog_celery_testapp",
                    "worker",
                    "--pool=prefork",
                    "--concurrency=1",
                    "-E",
                    "--without-heartbeat",
                    "--without-gossip",
                    "--without-mingle",
                    "--loglevel=INFO",
                    "-Q",
                    self.queue,
                    "-n",
                    f"obslog-{self.token}@%h",
                ],
                cwd=APP_DIR,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + WAIT
        while not any(line["event"].endswith(" ready.") for line in self.log.lines()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"worker did not start:\n{self.output.read_text(errors='replace')}")
            time.sleep(0.05)

    def terminate(self) -> None:
        """Ask for a cold shutdown: every test has waited for its tasks, and it is faster."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)

    def stop(self) -> None:
        """Shut down, kill if it does not exit, and remove the run's queue from the broker."""
        self.terminate()
        if self.proc is not None:
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._clean_broker()

    def _clean_broker(self) -> None:
        if self.broker.startswith("amqp"):
            self._clean_amqp()
        else:
            self._clean_redis()

    def _clean_amqp(self) -> None:
        from kombu import Connection

        with Connection(self.broker, connect_timeout=5) as conn:
            channel = conn.default_channel
            channel.queue_delete(self.queue)
            channel.exchange_delete(self.queue)

    def _clean_redis(self) -> None:
        import redis

        client = redis.Redis.from_url(self.broker)
        try:
            for key in client.scan_iter(match=f"*{self.token}*"):
                client.delete(key)
            for key in client.scan_iter(match="_kombu.binding.*"):
                if client.type(key) == b"set":
                    stale = [m for m in client.smembers(key) if self.token.encode() in m]
                    if stale:
                        client.srem(key, *stale)
        finally:
            client.close()


class EventsCommand:
    """``obslog celery-events`` as a real subprocess whose stdout is read line by line."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.lines: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "obslog._celery_events", *args],
            env=_clean_env(**(env or {})),
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._cond:
                self.lines.append(json.loads(raw))
                self._cond.notify_all()

    def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], bool], what: str
    ) -> list[dict[str, Any]]:
        """Wait until *predicate(lines)* holds; fail after :data:`WAIT` seconds."""
        deadline = time.monotonic() + WAIT
        with self._cond:
            while not predicate(self.lines):
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    self._stderr.seek(0)
                    err = self._stderr.read().decode(errors="replace")
                    pytest.fail(f"timed out waiting for {what}; lines: {self.lines}\n{err}")
                self._cond.wait(min(left, 0.2))
            return list(self.lines)

    def events(self, task_ids: set[str]) -> list[dict[str, Any]]:
        """Return the ``celery_event`` lines of *task_ids*."""
        with self._cond:
            return [
                line
                for line in self.lines
                if line["event"] == "celery_event" and line.get("task_id") in task_ids
            ]

    def wait_for_events(self, types_by_task: dict[str, tuple[str, ...]]) -> None:
        """Wait until each task in *types_by_task* has a ``celery_event`` of each of its types."""
        expected = {(task_id, kind) for task_id, kinds in types_by_task.items() for kind in kinds}
        self.wait_for(
            lambda _: expected
            <= {(e["task_id"], e["type"]) for e in self.events(set(types_by_task))},
            "task events",
        )

    def wait_listening(self) -> None:
        """Wait until the command has subscribed to the event stream."""
        self.wait_for(
            lambda lines: any(line["event"] == "celery_events_listening" for line in lines),
            "celery_events_listening",
        )

    def stop(self) -> int:
        """Interrupt the command (Ctrl-C) and return its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._reader.join(timeout=5)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self._stderr.close()
        return code


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(name="_workers", scope="module")
def _workers_fixture() -> Iterator[dict[str, Worker]]:
    """Workers by broker URL, started on first use and stopped when the module is done."""
    workers: dict[str, Worker] = {}
    yield workers
    for worker in workers.values():
        worker.terminate()  # shut down in parallel
    for worker in workers.values():
        worker.stop()


def _worker_for(
    broker: str, workers: dict[str, Worker], tmp_path_factory: pytest.TempPathFactory
) -> Worker:
    if broker not in workers:
        worker = Worker(broker, tmp_path_factory.mktemp("celery"))
        workers[broker] = worker
        worker.start()
    return workers[broker]


@pytest.fixture(name="worker")
def _worker(
    redis_url: str, _workers: dict[str, Worker], tmp_path_factory: pytest.TempPathFactory
) -> Worker:
    """The Redis-broker worker of the module."""
    return _worker_for(_broker(redis_url), _workers, tmp_path_factory)


@pytest.fixture(name="amqp_worker")
def _amqp_worker(
    amqp_url: str, _workers: dict[str, Worker], tmp_path_factory: pytest.TempPathFactory
) -> Worker:
    """The RabbitMQ-broker worker of the module."""
    return _worker_for(amqp_url, _workers, tmp_path_factory)


def _make_publisher(worker: Worker) -> Iterator[Any]:
    app = celery.Celery("obslog-test-publisher", broker=worker.broker, set_as_current=False)
    app.conf.task_default_queue = worker.queue
    obslog.celery.install(app)
    obslog.celery.enable_events(app)
    try:
        yield app
    finally:
        obslog.celery.uninstall()
        app.close()


@pytest.fixture(name="publisher_factory")
def _publisher_factory() -> Iterator[Callable[[Worker], Any]]:
    """Make a publisher for a worker a test started itself; closed after the test."""
    made: list[Iterator[Any]] = []

    def make(worker: Worker) -> Any:
        publishers = _make_publisher(worker)
        made.append(publishers)
        return next(publishers)

    yield make
    for publishers in made:
        next(publishers, None)


@pytest.fixture(name="publisher")
def _publisher(worker: Worker) -> Iterator[Any]:
    """A Celery app in this process that publishes to the Redis worker's queue, obslog installed."""
    yield from _make_publisher(worker)


@pytest.fixture(name="amqp_publisher")
def _amqp_publisher(amqp_worker: Worker) -> Iterator[Any]:
    """The same for the RabbitMQ worker."""
    yield from _make_publisher(amqp_worker)


@pytest.fixture(name="captured")
def _captured() -> Iterator[CapturedLines]:
    """obslog configured in this process (service celery-unit); its lines captured in memory."""
    logging.getLogger().removeHandler(obslog.configure(service="celery-unit"))
    try:
        with capture_lines(level="INFO") as lines:
            yield lines
    finally:
        obslog.reset_defaults()


# --------------------------------------------------------------------------- worker tests


class TestTaskScope:
    """Ids travel from the publishing scope through the broker into the task's lines."""

    def test_task_in_request_logs_the_request_id(self, worker: Worker, publisher: Any) -> None:
        """A task queued in a request scope logs the request's id on its own and canonical lines."""
        with obslog.request_scope("POST", "/orders") as request:
            result = publisher.send_task("obslog_test.work", args=[1])
        lines = worker.log.wait_for(lambda ls: _task_lines(ls, result.id), "task line")
        own = [
            line
            for line in lines
            if line.get("task_id") == result.id and line["event"] == "working"
        ]
        (canonical,) = _task_lines(lines, result.id)

        assert [request.request_id] == [line["request_id"] for line in own]
        assert {
            "level": "info",
            "logger": "obslog",
            "event": "task",
            "service": "celery-test",
            "request_id": request.request_id,
            "task_name": "obslog_test.work",
            "task_id": result.id,
            "state": "SUCCESS",
            "retries": 0,
            "outcome": "ok",
            "sample_rate": 1,
        } == {
            key: canonical[key]
            for key in (
                "level",
                "logger",
                "event",
                "service",
                "request_id",
                "task_name",
                "task_id",
                "state",
                "retries",
                "outcome",
                "sample_rate",
            )
        }
        assert 1 == canonical["timings"]["db_query"]["count"]
        assert isinstance(canonical["duration_ms"], float)
        ready = next(line for line in lines if line["event"].endswith(" ready."))
        assert ready["pid"] != canonical["pid"]  # the prefork child's own pid, not the parent's

    def test_child_task_keeps_the_request_id(self, worker: Worker, publisher: Any) -> None:
        """A task queued by a task carries the originating request id one hop further."""
        with obslog.request_scope("POST", "/orders") as request:
            parent = publisher.send_task("obslog_test.spawn")
        lines = worker.log.wait_for(
            lambda ls: any(
                line.get("n") == 7 and line.get("request_id") == request.request_id for line in ls
            ),
            "child task line",
        )
        child = next(
            line
            for line in lines
            if line.get("n") == 7 and line.get("request_id") == request.request_id
        )

        assert request.request_id == _task_lines(lines, parent.id)[0]["request_id"]
        assert parent.id != child["task_id"]

    def test_bad_incoming_ids_are_replaced(self, worker: Worker, publisher: Any) -> None:
        """A malformed request id header is never logged; a valid traceparent gives the trace id."""
        trace_id, span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
        result = publisher.send_task(
            "obslog_test.work",
            args=[2],
            headers={
                "obslog_request_id": "evil\r\nid",
                "traceparent": f"00-{trace_id}-{span_id}-01",
            },
        )
        lines = worker.log.wait_for(lambda ls: _task_lines(ls, result.id), "task line")
        (canonical,) = _task_lines(lines, result.id)

        assert 32 == len(canonical["request_id"])
        assert "evil" not in worker.log.path.read_text(encoding="utf-8")
        assert (trace_id, span_id) == (canonical["trace_id"], canonical["span_id"])


class TestCanonicalTaskLine:
    """Each task run ends with exactly one ``task`` line stating how it ended."""

    def test_failing_task(self, worker: Worker, publisher: Any) -> None:
        """A task that raises gives state FAILURE, outcome error and structured exception fields."""
        with obslog.request_scope("POST", "/orders") as request:
            result = publisher.send_task("obslog_test.boom")
        lines = worker.log.wait_for(lambda ls: _task_lines(ls, result.id), "task line")
        (canonical,) = _task_lines(lines, result.id)

        assert {
            "level": "error",
            "request_id": request.request_id,
            "state": "FAILURE",
            "outcome": "error",
            "exc_type": "ValueError",
            "exc_message": "boom",
        } == {
            key: canonical[key]
            for key in (
                "level",
                "request_id",
                "state",
                "outcome",
                "exc_type",
                "exc_message",
            )
        }
        assert canonical["stack"].endswith("ValueError: boom")
        assert [canonical] == [  # Celery's own error line is silenced: the failure is logged once
            line for line in lines if line.get("task_id") == result.id and line["level"] == "error"
        ]

    def test_retried_task(self, worker: Worker, publisher: Any) -> None:
        """A retry gives a RETRY line for the attempt, then a line for the attempt that succeeds."""
        with obslog.request_scope("POST", "/orders") as request:
            result = publisher.send_task("obslog_test.flaky")
        lines = worker.log.wait_for(
            lambda ls: len(_task_lines(ls, result.id)) == 2, "two task lines"
        )
        first, second = _task_lines(lines, result.id)

        assert [
            ("warning", "RETRY", "retry", 0, "ConnectionError", request.request_id),
            ("info", "SUCCESS", "ok", 1, None, request.request_id),
        ] == [
            (
                line["level"],
                line["state"],
                line["outcome"],
                line["retries"],
                line.get("exc_type"),
                line["request_id"],
            )
            for line in (first, second)
        ]

    def test_no_state_is_left_behind(self, worker: Worker, publisher: Any) -> None:
        """After successes, failures and retries the worker holds only the running task's state."""
        for name in ("obslog_test.boom", "obslog_test.flaky", "obslog_test.work"):
            publisher.send_task(name, args=[3] if name.endswith("work") else [])
        probe = publisher.send_task("obslog_test.inflight", countdown=0.5)
        lines = worker.log.wait_for(
            lambda ls: any(
                line.get("task_id") == probe.id and line["event"] == "inflight" for line in ls
            ),
            "inflight line",
        )
        (inflight,) = [
            line
            for line in lines
            if line.get("task_id") == probe.id and line["event"] == "inflight"
        ]

        assert 1 == inflight["open_runs"]


# --------------------------------------------------------------------------- events command


class TestEventsCommand:
    """``obslog celery-events`` turns the event stream into structured lines."""

    def test_sees_the_task_lifecycle(self, worker: Worker, publisher: Any) -> None:
        """task-sent, -received, -started, -succeeded and -failed arrive as celery_event lines."""
        command = EventsCommand("--broker", worker.broker, "--timeout", "60")
        try:
            command.wait_listening()
            ok = publisher.send_task("obslog_test.work", args=[4])
            bad = publisher.send_task("obslog_test.boom")
            command.wait_for_events(
                {
                    ok.id: ("task-sent", "task-received", "task-started", "task-succeeded"),
                    bad.id: ("task-sent", "task-received", "task-started", "task-failed"),
                }
            )
        finally:
            code = command.stop()
        events = command.events({ok.id, bad.id})
        succeeded = next(e for e in events if e["type"] == "task-succeeded")
        failed = next(e for e in events if e["type"] == "task-failed")

        assert 0 == code
        assert ("obslog_test.work", "info") == (succeeded["task_name"], succeeded["level"])
        assert isinstance(succeeded["runtime_ms"], float)
        assert f"obslog-{worker.token}" == succeeded["hostname"].split("@")[0]
        assert ("obslog_test.boom", "error", "ValueError") == (
            failed["task_name"],
            failed["level"],
            failed["exception_type"],
        )
        assert "ValueError: boom" in failed["traceback"]

    def test_stops_after_limit(self, worker: Worker, publisher: Any) -> None:
        """With --limit N the command exits 0 by itself after N events."""
        command = EventsCommand("--broker", worker.broker, "--limit", "2", "--timeout", "60")
        command.wait_listening()
        publisher.send_task("obslog_test.work", args=[5])
        code = command.proc.wait(timeout=WAIT)
        command.stop()

        assert 0 == code
        assert 2 == sum(1 for line in command.lines if line["event"] == "celery_event")

    def test_snapshot_lists_running_tasks(self, worker: Worker, publisher: Any) -> None:
        """--snapshot-interval writes celery_active lines that list the task a worker runs now."""
        command = EventsCommand(
            "--broker", worker.broker, "--snapshot-interval", "0.3", "--timeout", "60"
        )
        try:
            command.wait_listening()
            slow = publisher.send_task("obslog_test.slow", args=[3.0])
            lines = command.wait_for(
                lambda ls: any(
                    slow.id in {t["task_id"] for t in line.get("tasks", ())}
                    for line in ls
                    if line["event"] == "celery_active"
                ),
                "celery_active listing the slow task",
            )
        finally:
            command.stop()
        worker.log.wait_for(lambda ls: _task_lines(ls, slow.id), "slow task line")
        snapshot = next(
            line
            for line in lines
            if line["event"] == "celery_active"
            and slow.id in {t["task_id"] for t in line.get("tasks", ())}
        )
        (task,) = [t for t in snapshot["tasks"] if t["task_id"] == slow.id]

        assert (f"obslog-{worker.token}", 1, "obslog_test.slow") == (
            snapshot["hostname"].split("@")[0],
            snapshot["active"],
            task["task_name"],
        )
        assert isinstance(task["running_ms"], float)

    def test_app_option(self, worker: Worker, publisher: Any, tmp_path: Path) -> None:
        """--app module:attr takes the app's broker; lines go to stdout, not the app's log."""
        command = EventsCommand(
            "--app",
            "obslog_celery_testapp:app",
            "--limit",
            "1",
            "--timeout",
            "60",
            env={
                "PYTHONPATH": str(APP_DIR),
                "OBSLOG_TEST_BROKER": worker.broker,
                "OBSLOG_TEST_QUEUE": worker.queue,
                "OBSLOG_TEST_LOG": str(tmp_path / "app.log"),
            },
        )
        command.wait_listening()
        publisher.send_task("obslog_test.work", args=[8])
        code = command.proc.wait(timeout=WAIT)
        command.stop()

        assert 0 == code
        assert ["celery-events"] == [  # one event, whichever came first, through the app's broker
            line["service"] for line in command.lines if line["event"] == "celery_event"
        ]

    def test_broker_down_exits_1(self) -> None:
        """An unreachable broker gives one error line and exit status 1."""
        command = EventsCommand("--broker", "redis://127.0.0.1:1/0", "--timeout", "5")
        code = command.proc.wait(timeout=WAIT)
        command.stop()

        assert 1 == code
        assert ["celery_events_broker_error"] == [
            line["event"] for line in command.lines if line["level"] == "error"
        ]

    def test_arguments_are_checked(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Without a broker or an app the command exits 2 and says what is missing."""
        assert 2 == main([])
        assert "give --broker URL or --app module:attr" in capsys.readouterr().err


class TestWorkerOwnLines:
    """With install(), everything a real worker writes (banner, warnings, shutdown) is JSON."""

    def test_every_worker_line_is_obslog_json(
        self, redis_url: str, tmp_path: Path, publisher_factory: Callable[[Worker], Any]
    ) -> None:
        """Boot, tasks, a failing task, then a warm shutdown (SIGTERM): stdout and stderr hold
        only obslog JSON lines, the banner and "Warm shutdown" among them."""
        worker = Worker(_broker(redis_url), tmp_path, stdout_log=True)
        worker.start()
        try:
            app = publisher_factory(worker)
            ok = app.send_task("obslog_test.work", args=[1])
            bad = app.send_task("obslog_test.boom")
            worker.log.wait_for(
                lambda ls: _task_lines(ls, ok.id) and _task_lines(ls, bad.id), "task lines"
            )
        finally:
            assert worker.proc is not None
            worker.proc.send_signal(signal.SIGTERM)
            worker.stop()
        raw = [line for line in worker.output.read_text().splitlines() if line.strip()]
        records = []
        for line in raw:
            try:
                records.append(json.loads(line))
            except ValueError:
                pytest.fail(f"not an obslog line: {line!r}")
        events = [r["event"] for r in records]
        assert {"celery-test"} == {r.get("service") for r in records}
        (banner,) = [r for r in records if r["event"] == "celery worker starting"]
        assert (1, "prefork") == (banner["concurrency"], banner["pool"])
        assert "worker: Warm shutdown (MainProcess)" in events
        assert any(e.endswith(" ready.") for e in events)
        assert 2 == len([e for e in events if e == "task"])


class TestRabbitMQ:
    """The same path through a RabbitMQ broker."""

    def test_request_id_and_events(self, amqp_worker: Worker, amqp_publisher: Any) -> None:
        """Over AMQP a task logs the request id; the command sees sent/received/succeeded/failed."""
        command = EventsCommand("--broker", amqp_worker.broker, "--timeout", "60")
        try:
            command.wait_listening()
            with obslog.request_scope("POST", "/orders") as request:
                ok = amqp_publisher.send_task("obslog_test.work", args=[6])
                bad = amqp_publisher.send_task("obslog_test.boom")
            command.wait_for_events(
                {
                    ok.id: ("task-sent", "task-received", "task-succeeded"),
                    bad.id: ("task-sent", "task-received", "task-failed"),
                }
            )
        finally:
            code = command.stop()
        lines = amqp_worker.log.wait_for(
            lambda ls: _task_lines(ls, ok.id) and _task_lines(ls, bad.id), "task lines"
        )

        assert 0 == code
        assert [(request.request_id, "SUCCESS"), (request.request_id, "FAILURE")] == [
            (line["request_id"], line["state"])
            for line in (*_task_lines(lines, ok.id), *_task_lines(lines, bad.id))
        ]


class TestEventLogger:
    """Event dicts become log fields without ids clashing with the schema."""

    def test_fields_of_a_failed_event(self) -> None:
        """The task name is remembered from task-received; pid and timestamp are renamed."""
        handler = EventLogger(logging.getLogger("test.celery_events"))
        handler.fields({"type": "task-received", "uuid": "t1", "name": "shop.charge"})

        assert {
            "type": "task-failed",
            "task_id": "t1",
            "task_name": "shop.charge",
            "hostname": "celery@w1",
            "worker_pid": 42,
            "event_time": "2026-01-01T00:00:00.500000Z",
            "exception_type": "ValueError",
            "exception": "ValueError('boom')",
            "traceback": "Traceback ...",
        } == handler.fields(
            {
                "type": "task-failed",
                "uuid": "t1",
                "hostname": "celery@w1",
                "pid": 42,
                "timestamp": 1767225600.5,
                "exception": "ValueError('boom')",
                "traceback": "Traceback ...",
                "args": "[secret]",
                "clock": 9,
            }
        )


# --------------------------------------------------------------------------- in-process units


@pytest.fixture(name="eager_app")
def _eager_app() -> Iterator[Any]:
    app = celery.Celery("obslog-test-eager", set_as_current=False)
    obslog.celery.install(app)

    @app.task(name="unit.ok", shared=False)
    def ok() -> str:
        logging.getLogger("unit").info("inside")
        return "ok"

    @app.task(name="unit.fail", shared=False)
    def fail() -> None:
        raise KeyError("missing")

    try:
        yield app
    finally:
        obslog.celery.uninstall()
        app.close()


class TestInstall:
    """install() wires the signals once and never breaks a task."""

    def test_idempotent(self, eager_app: Any) -> None:
        """Calling install twice connects each receiver once."""
        from celery import signals

        before = len(signals.task_prerun.receivers)
        obslog.celery.install(eager_app)

        assert before == len(signals.task_prerun.receivers)

    def test_direct_worker_messages_are_obslog_lines_until_uninstall(self, tmp_path: Path) -> None:
        """While installed, Celery's safe_say writes an obslog line; uninstall restores it."""
        from celery.apps import worker as celery_worker

        original = celery_worker.safe_say
        path = tmp_path / "out.log"
        with path.open("w", encoding="utf-8") as stream:
            obslog.configure(service="unit", stream=stream)
            obslog.celery.install()
            try:
                celery_worker.safe_say("worker: Cold shutdown (MainProcess)")
            finally:
                obslog.celery.uninstall()
                obslog.reset_defaults()
        (line,) = [json.loads(raw) for raw in path.read_text().splitlines()]
        assert ("celery.apps.worker", "worker: Cold shutdown (MainProcess)", "unit") == (
            line["logger"],
            line["event"],
            line["service"],
        )
        assert original is celery_worker.safe_say

    def test_enable_events(self, eager_app: Any) -> None:
        """enable_events turns on worker task events and the publisher's task-sent event."""
        obslog.celery.enable_events(eager_app)

        assert (True, True) == (
            eager_app.conf.worker_send_task_events,
            eager_app.conf.task_send_sent_event,
        )

    def test_eager_runs_end_with_one_line_each(
        self, eager_app: Any, captured: CapturedLines
    ) -> None:
        """Tasks run in-process get a task scope inside the request; no state remains after."""
        with obslog.request_scope("GET", "/x") as request:
            eager_app.tasks["unit.ok"].apply()
            eager_app.tasks["unit.fail"].apply()
        tasks = [line for line in captured if line["event"] == "task"]

        assert [
            ("unit.ok", "SUCCESS", "ok", None, request.request_id),
            ("unit.fail", "FAILURE", "error", "KeyError", request.request_id),
        ] == [
            (
                line["task_name"],
                line["state"],
                line["outcome"],
                line.get("exc_type"),
                line["request_id"],
            )
            for line in tasks
        ]
        assert 0 == obslog.celery.active_tasks()

    def test_broken_scope_does_not_break_the_task(
        self, eager_app: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """When opening the scope fails, the task still runs and the failure is counted."""

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("broken")

        monkeypatch.setattr(obslog, "scope", broken)
        before = obslog.stats().get("celery_errors", 0)

        assert "ok" == eager_app.tasks["unit.ok"].apply().get()
        assert before + 1 == obslog.stats()["celery_errors"]
        assert 0 == obslog.celery.active_tasks()
