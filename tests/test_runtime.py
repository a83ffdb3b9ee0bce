"""Tests for obslog.runtime: the psutil/gc sampler and the periodic ``runtime`` line."""

from __future__ import annotations

import gc
import json
import logging
import multiprocessing
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import pytest

from _lines import wait_until

import obslog

from obslog import runtime
from obslog.testing import capture_lines


NUMERIC_FIELDS = {
    "pid", "cpu_percent", "cpu_user_s", "cpu_system_s", "rss_bytes", "vms_bytes", "threads",
    "threads_active", "fds", "ctx_switches_voluntary", "ctx_switches_involuntary",
    "gc_count_gen0", "gc_count_gen1", "gc_count_gen2", "gc_collections", "gc_collected",
    "gc_collections_gen0", "gc_collections_gen1", "gc_collections_gen2", "gc_collected_gen0",
    "gc_collected_gen1", "gc_collected_gen2", "gc_uncollectable", "gc_pauses",
    "gc_pause_ms_total", "gc_pause_ms_max", "uptime_s", "start_time",
}


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(name="runtime_records")
def _runtime_records():
    """Collect the records of the ``obslog.runtime`` logger."""
    logger = logging.getLogger("obslog.runtime")
    handler = _ListHandler()
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(level)
    logger.propagate = propagate


def _runtime_lines(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    return [r for r in list(records) if r.getMessage() == "runtime"]


def _fork_and_report(child) -> dict:
    """Run *child* in an ``os.fork()`` child and return the JSON-able dict it returns."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        status = 1
        try:
            os.close(read_fd)
            payload = json.dumps(child()).encode()
            os.write(write_fd, payload)
            status = 0
        finally:
            os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert 0 == os.waitstatus_to_exitcode(status)
    return json.loads(payload)


def _sample_in_child(queue) -> None:
    reading = runtime.sample()
    queue.put({"reading_pid": reading["pid"], "getpid": os.getpid(),
               "uptime_s": reading["uptime_s"]})


class TestSampler:
    def test_fields(self):
        """One reading carries every documented figure as a number, for this process."""
        reading = runtime.sample()

        assert set() == NUMERIC_FIELDS - set(reading)
        assert os.getpid() == reading["pid"]
        assert threading.active_count() == reading["threads_active"]
        assert [] == [k for k, v in reading.items() if not isinstance(v, (int, float))]
        assert reading["rss_bytes"] > 0
        assert reading["gc_collections"] == sum(
            reading[f"gc_collections_gen{g}"] for g in range(3)
        )

    def test_objects_only_on_demand(self):
        """``len(gc.get_objects())`` is counted only with ``objects=True``."""
        assert "objects" not in runtime.sample()
        assert runtime.sample(objects=True)["objects"] > 1000

    def test_gc_pauses_are_timed(self):
        """A collection is timed through gc.callbacks and shows in total, count and max."""
        sampler = runtime.Sampler()
        before = sampler.sample()
        junk = [[i] for i in range(50_000)]
        gc.collect()
        after = sampler.sample()
        del junk

        assert after["gc_pauses"] > before["gc_pauses"]
        assert after["gc_pause_ms_total"] > before["gc_pause_ms_total"]
        assert after["gc_pause_ms_max"] > 0
        assert after["gc_collections_gen2"] > before["gc_collections_gen2"]

    def test_pause_max_is_per_sampler_window(self):
        """Each sampler reports the longest pause since its own previous reading."""
        first, second = runtime.Sampler(), runtime.Sampler()
        first.sample()
        second.sample()
        gc.collect()

        assert first.sample()["gc_pause_ms_max"] > 0
        assert second.sample()["gc_pause_ms_max"] > 0

    def test_threads_and_fds_follow_the_process(self):
        """A new thread and a new open file show in the next reading."""
        sampler = runtime.Sampler()
        before = sampler.sample()
        stop = threading.Event()
        thread = threading.Thread(target=stop.wait)
        thread.start()
        try:
            with tempfile.TemporaryFile() as handle:
                assert handle.fileno() >= 0
                during = sampler.sample()
        finally:
            stop.set()
            thread.join()

        assert before["threads_active"] + 1 == during["threads_active"]
        assert before["threads"] + 1 == during["threads"]
        assert during["fds"] >= before["fds"] + 1

    def test_cpu_percent_measures_the_window(self):
        """cpu_percent is a non-negative figure computed over the sampler's own window."""
        sampler = runtime.Sampler()
        sampler.sample()
        deadline = time.process_time() + 0.05
        while time.process_time() < deadline:
            pass
        reading = sampler.sample()

        assert reading["cpu_percent"] > 0
        assert reading["cpu_user_s"] + reading["cpu_system_s"] > 0

    def test_rebuilt_after_os_fork(self):
        """After a real os.fork() the child's reading describes the child, not the parent."""
        sampler = runtime.Sampler()
        parent = sampler.sample()

        def child() -> dict:
            reading = sampler.sample()
            return {"reading_pid": reading["pid"], "getpid": os.getpid(),
                    "start_time": reading["start_time"], "uptime_s": reading["uptime_s"]}

        report = _fork_and_report(child)

        assert report["getpid"] == report["reading_pid"]
        assert parent["pid"] != report["reading_pid"]
        assert report["start_time"] >= parent["start_time"]
        assert report["uptime_s"] < parent["uptime_s"] + 5

    def test_rebuilt_in_multiprocessing_fork_child(self):
        """The default sampler used before a multiprocessing fork reads the child after it."""
        parent = runtime.sample()
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        process = ctx.Process(target=_sample_in_child, args=(queue,))
        process.start()
        try:
            report = queue.get(timeout=10)
        finally:
            process.join(10)

        assert 0 == process.exitcode
        assert report["getpid"] == report["reading_pid"]
        assert parent["pid"] != report["reading_pid"]


class TestGcCallback:
    """Issue 12: the sampler's gc callback goes when the sampler is closed."""

    def test_callback_lives_from_first_reading_until_last_close(self):
        """Creating adds nothing; a reading adds one callback; the last close (or gc) removes it."""
        code = textwrap.dedent(
            """
            import gc
            from obslog import runtime

            def n():
                return gc.callbacks.count(runtime._gc_callback)

            seen = []
            s = runtime.Sampler()
            seen.append(n())
            s.sample()
            seen.append(n())
            t = runtime.Sampler()
            t.sample()
            s.close()
            seen.append(n())  # t still times pauses
            t.close()
            s.close()
            seen.append(n())
            assert s.sample()["gc_pause_ms_max"] == 0  # readings work after close
            seen.append(n())
            u = runtime.Sampler()
            u.sample()
            del u
            gc.collect()
            seen.append(n())
            with runtime.Sampler() as v:
                v.sample()
            seen.append(n())
            logger = runtime.RuntimeLogger(interval=60, logger="t.gc").start()
            logger.log_once()
            seen.append(n())
            logger.close()
            seen.append(n())
            print(seen)
            """
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
        )
        assert "[0, 1, 1, 0, 0, 0, 0, 1, 0]" == result.stdout.strip()

    def test_given_sampler_stays_open_after_logger_closes(self):
        """A sampler passed to RuntimeLogger is the caller's: closing the logger leaves it open."""
        sampler = runtime.Sampler()
        sampler.sample()
        logger = runtime.RuntimeLogger(interval=60, logger="t.gc.given", sampler=sampler)
        logger.close()
        assert runtime._gc_callback in gc.callbacks
        assert sampler._closer is not None
        assert sampler._closer.alive
        sampler.close()
        assert not sampler._closer.alive


class _FailingOnce(runtime.Sampler):
    __slots__ = ("calls",)

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def sample(self, *, objects: bool = False) -> dict:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("proc is gone")
        return super().sample(objects=objects)


class TestRuntimeLogger:
    def test_logs_runtime_lines(self, runtime_records):
        """The thread logs ``runtime`` lines with the numbers as record attributes."""
        with runtime.RuntimeLogger(interval=0.02) as logger:
            assert wait_until(lambda: len(_runtime_lines(runtime_records)) >= 2, 5.0)
            assert logger.running
        record = _runtime_lines(runtime_records)[0]

        assert "obslog.runtime" == record.name
        assert logging.INFO == record.levelno
        assert "runtime" == record.msg
        assert record.rss_bytes > 0
        assert record.gc_collections >= 0
        assert not logger.running

    def test_rendered_by_json_formatter(self):
        """Through obslog's JSON formatter the numbers are top-level fields of event=runtime."""
        logger = logging.getLogger("obslog.runtime.json-test")
        logger.propagate = False
        with capture_lines("INFO", logger=logger) as lines:
            runtime.RuntimeLogger(logger=logger).log_once()
        line = lines[0]

        assert "runtime" == line["event"]
        assert os.getpid() == line["pid"]
        assert line["rss_bytes"] > 0
        assert "uptime_s" in line
        assert "cpu_percent" in line

    def test_starts_once(self, runtime_records):
        """A second start() while running does not start a second thread."""
        logger = runtime.RuntimeLogger(interval=60)
        try:
            logger.start()
            logger.start()
            threads = [t for t in threading.enumerate() if t.name == "obslog-runtime"]
            assert 1 == len(threads)
            assert wait_until(lambda: 1 == len(_runtime_lines(runtime_records)), 5.0)
        finally:
            logger.close()

        assert [] == [t for t in threading.enumerate() if t.name == "obslog-runtime"]

    def test_close_stops_promptly_and_is_idempotent(self, runtime_records):
        """close() stops the thread (no more lines) and may be called again."""
        logger = runtime.RuntimeLogger(interval=0.01).start()
        assert wait_until(lambda: len(_runtime_lines(runtime_records)) >= 1, 5.0)
        logger.close()
        logger.close()
        count = len(_runtime_lines(runtime_records))
        time.sleep(0.05)

        assert count == len(_runtime_lines(runtime_records))
        assert not logger.running

    def test_survives_a_failing_sample(self, runtime_records):
        """A failing reading is counted and logged; the thread carries on with the next one."""
        before = obslog.stats().get("runtime_errors", 0)
        sampler = _FailingOnce()
        with runtime.RuntimeLogger(interval=0.01, sampler=sampler):
            assert wait_until(lambda: len(_runtime_lines(runtime_records)) >= 2, 5.0)
        failures = [r for r in runtime_records if r.getMessage() == "runtime sample failed"]

        assert before + 1 == obslog.stats()["runtime_errors"]
        assert 1 == len(failures)
        assert logging.WARNING == failures[0].levelno
        assert RuntimeError == failures[0].exc_info[0]

    def test_rejects_a_bad_interval(self):
        """A zero or negative interval is refused."""
        with pytest.raises(ValueError, match="positive"):
            runtime.RuntimeLogger(interval=0)

    def test_restarts_in_forked_child(self, runtime_records):
        """A logger running in the parent runs again in a forked child and logs there."""
        logger = runtime.RuntimeLogger(interval=0.02).start()
        try:
            def child() -> dict:
                del runtime_records[:]
                ok = wait_until(lambda: len(_runtime_lines(runtime_records)) >= 1, 5.0)
                return {
                    "running": logger.running,
                    "logged": ok,
                    "threads": [t.name for t in threading.enumerate()],
                    "pid": os.getpid(),
                }

            report = _fork_and_report(child)
        finally:
            logger.close()

        assert report["running"]
        assert report["logged"]
        assert os.getpid() != report["pid"]
        assert 1 == report["threads"].count("obslog-runtime")

    def test_stopped_at_interpreter_exit(self):
        """A running logger is stopped by its atexit hook and the interpreter exits cleanly."""
        code = textwrap.dedent(
            """
            import atexit, logging
            from obslog import runtime
            logger = runtime.RuntimeLogger(interval=0.01)
            # Registered first, so it runs after the logger's own atexit hook.
            atexit.register(lambda: print("running-at-exit", logger.running))
            logging.basicConfig(level=logging.INFO)
            logger.start()
            """
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
        )

        assert 0 == result.returncode, result.stderr
        assert "running-at-exit False" == result.stdout.strip()
        assert "runtime" in result.stderr

    def test_process_wide_logger_starts_once(self, runtime_records):
        """start_runtime_logger() returns the one running logger; stop_runtime_logger() ends it."""
        try:
            first = runtime.start_runtime_logger(interval=60)
            second = runtime.start_runtime_logger(interval=1)
            assert first is second
            assert first.running
            assert 60 == first.interval
        finally:
            runtime.stop_runtime_logger()

        assert not first.running
