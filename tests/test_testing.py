"""
obslog.testing: capturing the lines obslog writes, and resetting its global state.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import subprocess
import sys
import threading

from pathlib import Path

import pytest
import structlog

import obslog

from obslog.testing import capture_lines, reset


README = Path(__file__).resolve().parent.parent / "README.md"


class TestCaptureLines:
    def test_stdlib_line_parsed_with_schema(self):
        """A stdlib line comes back as a dict with obslog's schema fields and its extras."""
        with capture_lines() as lines:
            logging.getLogger("shop").info("order listed", extra={"order_id": 42})
        line = lines.one(event="order listed")
        assert "info" == line["level"]
        assert "shop" == line["logger"]
        assert 42 == line["order_id"]
        assert line["timestamp"].endswith("Z")
        assert '"event":"order listed"' in lines.raw[0]

    def test_structlog_routed_for_the_block_and_restored(self):
        """structlog lines are captured without configure(), and structlog is put back after."""
        assert not structlog.is_configured()
        with capture_lines() as lines:
            structlog.get_logger("shop").info("paid", amount=3)
        assert 3 == lines.one(event="paid")["amount"]
        assert not structlog.is_configured()

    def test_structlog_configuration_of_the_user_kept(self):
        """A structlog configuration that is not obslog's is restored as it was."""
        processors = [structlog.processors.JSONRenderer()]
        structlog.configure(processors=processors)
        with capture_lines():
            pass
        assert processors == structlog.get_config()["processors"]

    def test_canonical_line_and_lines_of_a_request(self):
        """canonical() finds the scope's line; of_request() finds every line of the request."""
        with capture_lines() as lines:
            with obslog.request_scope(method="GET", route="/orders/{id}") as req:
                with obslog.timed("db_query"):
                    pass
                logging.getLogger("shop").info("inside")
                req.status = 200
            logging.getLogger("shop").info("outside")
        (request,) = lines.canonical()
        assert "/orders/{id}" == request["route"]
        assert 1 == request["timings"]["db_query"]["count"]
        events = [line["event"] for line in lines.of_request(request["request_id"])]
        assert ["inside", "request"] == events

    def test_text_is_every_raw_line(self):
        """text holds each rendered line followed by a newline, as a stream would."""
        with capture_lines() as lines:
            logging.getLogger("shop").info("a")
            logging.getLogger("shop").info("b")
        assert lines.raw[0] + "\n" + lines.raw[1] + "\n" == lines.text
        assert ["a", "b"] == [json.loads(raw)["event"] for raw in lines.text.splitlines()]

    def test_redaction_applies(self):
        """Captured lines are redacted as the real output is."""
        with capture_lines() as lines:
            logging.getLogger("shop").info("login", extra={"password": "hunter2"})
        assert "hunter2" not in lines.raw[0]
        assert "hunter2" != lines.one(event="login")["password"]

    def test_level_and_handlers_restored(self):
        """The root logger gets its level and handlers back after the block."""
        root = logging.getLogger()
        level, handlers = root.level, root.handlers[:]
        with capture_lines(level="INFO") as lines:
            logging.getLogger("shop").debug("hidden")
            logging.getLogger("shop").info("shown")
        assert level == root.level
        assert handlers == root.handlers
        assert ["shown"] == [line["event"] for line in lines]

    def test_named_logger_that_does_not_propagate(self, monkeypatch):
        """logger= captures a logger that does not propagate, children included, and restores it."""
        quiet = logging.getLogger("t.testing.quiet")
        monkeypatch.setattr(quiet, "propagate", False)
        with capture_lines() as at_root:
            quiet.warning("unseen at the root")
        with capture_lines("INFO", logger="t.testing.quiet") as lines:
            quiet.debug("below the level")
            logging.getLogger("t.testing.quiet.child").info("from a child")
            quiet.warning("from the logger")
        assert [] == list(at_root)
        assert ["from a child", "from the logger"] == [line["event"] for line in lines]
        assert ([], logging.NOTSET) == (quiet.handlers, quiet.level)

    def test_lines_from_other_threads(self):
        """Lines written by another thread during the block are captured."""
        with capture_lines() as lines:
            thread = threading.Thread(target=logging.getLogger("worker").warning, args=("busy",))
            thread.start()
            thread.join()
        assert "warning" == lines.one(event="busy")["level"]

    def test_one_reports_what_it_saw(self):
        """one() raises AssertionError naming the fields when no line or several match."""
        with capture_lines() as lines:
            logging.getLogger("shop").info("twice")
            logging.getLogger("shop").info("twice")
        with pytest.raises(AssertionError, match="found 2"):
            lines.one(event="twice")
        with pytest.raises(AssertionError, match="found 0"):
            lines.one(event="never")


class TestWaiting:
    def test_snapshot_unchanged_by_later_lines(self):
        """snapshot() keeps the lines written so far; lines written later do not appear in it."""
        with capture_lines() as lines:
            logging.getLogger("shop").info("first")
            before = lines.snapshot()
            logging.getLogger("shop").info("second")
        assert ["first"] == [line["event"] for line in before]
        assert 1 == len(before.raw)
        assert ["first", "second"] == [line["event"] for line in lines]

    def test_wait_for_a_line_from_another_thread(self):
        """wait_for() returns once a line another thread writes later satisfies the predicate."""
        with capture_lines() as lines:
            timer = threading.Timer(0.1, logging.getLogger("worker").info, args=("done",))
            timer.start()
            got = lines.wait_for(lambda ls: ls.find(event="done"), timeout=30)
            timer.join()
        assert ["done"] == [line["event"] for line in got]

    def test_wait_for_returns_the_lines_at_timeout(self):
        """When the predicate never holds, wait_for() returns the lines it has after *timeout*."""
        with capture_lines() as lines:
            logging.getLogger("shop").info("only")
            got = lines.wait_for(lambda ls: ls.find(event="never"), timeout=0.05)
        assert ["only"] == [line["event"] for line in got]

    async def test_wait_for_async_lets_the_loop_run(self):
        """wait_for_async() sleeps in the event loop, so a task logging later gets to run."""

        async def later() -> None:
            await asyncio.sleep(0.05)
            logging.getLogger("shop").info("from a task")

        with capture_lines() as lines:
            task = asyncio.ensure_future(later())
            got = await lines.wait_for_async(lambda ls: ls.find(event="from a task"), timeout=30)
            await task
        assert ["from a task"] == [line["event"] for line in got]


class TestReset:
    def test_reset_restores_settings_and_structlog(self):
        """reset() puts obslog's settings, structlog and bound contextvars back to defaults."""
        obslog.configure(service="shop", stream=io.StringIO())
        structlog.contextvars.bind_contextvars(user="u1")
        reset()
        assert obslog.get_config()["service"] != "shop"
        assert not structlog.is_configured()
        assert {} == structlog.contextvars.get_contextvars()


def test_readme_example_test_passes(tmp_path):
    """The README's example test for a FastAPI route runs green under pytest."""
    text = README.read_text()
    match = re.search(r"```python\n(# test_orders\.py\n.*?)```", text, re.DOTALL)
    assert match, "the README's obslog.testing example (# test_orders.py) is missing"
    (tmp_path / "test_orders.py").write_text(match.group(1))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert 0 == proc.returncode, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
