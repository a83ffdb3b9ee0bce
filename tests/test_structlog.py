"""
The structlog side: same schema as stdlib lines, exceptions, positional args, failing processors,
disabled levels (obslog.processors).
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import inspect
import io
import json
import logging
import multiprocessing
import os
import threading

from collections.abc import Iterator

import pytest
import structlog
import structlog.testing

import obslog

from obslog._render import format_timestamp
from obslog._schema import PROTECTED
from obslog.processors import BoundLogger, _nop, add_context, redact_secrets, render_to_stdlib
from obslog.testing import CapturedLines, capture_lines


@pytest.fixture(name="captured")
def _captured() -> Iterator[CapturedLines]:
    """conftest's ``captured`` with env and version set as well."""
    logging.getLogger().removeHandler(obslog.configure(service="shop", env="test", version="1"))
    with capture_lines(level="INFO") as captured:
        yield captured


def without_timestamp(line: dict) -> dict:
    return {k: v for k, v in line.items() if k != "timestamp"}


class TestSameSchema:
    def test_same_keys_and_values_in_scope(self, captured):
        """A structlog event and the same stdlib record give the same keys and values."""
        with obslog.request_scope("GET", "/orders/{id}", trace_id="a" * 32, span_id="b" * 16):
            with obslog.timed("db_query"):
                pass
            logging.getLogger("shop.orders").info("order listed", extra={"order_count": 3})
            structlog.get_logger("shop.orders").info("order listed", order_count=3)
        std, sl, _canonical = captured
        assert set(std) == set(sl)
        assert without_timestamp(std) == without_timestamp(sl)
        assert [
            "timestamp", "level", "logger", "event", "service", "env", "version", "pid", "request_id",
            "trace_id", "span_id", "method", "route", "order_count", "timings",
        ] == list(sl)

    def test_same_keys_outside_scope(self, captured):
        """Outside a scope both paths give the base schema only."""
        logging.getLogger("t.same").warning("plain")
        structlog.get_logger("t.same").warning("plain")
        std, sl = captured
        assert without_timestamp(std) == without_timestamp(sl)
        assert {"timestamp", "level", "logger", "event", "service", "env", "version", "pid"} == set(sl)

    @pytest.mark.parametrize("method", ["debug", "info", "warning", "error", "critical"])
    def test_level_names(self, captured, method):
        """Each structlog method gives the lower-case level name the stdlib path gives."""
        obslog.configure(stream=io.StringIO(), level="DEBUG")
        getattr(logging.getLogger("t.lv"), method)("x")
        getattr(structlog.get_logger("t.lv"), method)("x")
        std, sl = captured
        assert method == std["level"] == sl["level"]

    def test_bound_values_and_contextvars(self, captured):
        """Values bound on the logger or with structlog.contextvars appear as fields."""
        structlog.contextvars.bind_contextvars(tenant="acme")
        log = structlog.get_logger("t.bound").bind(user_id=7)
        log.info("x", extra_key=1)
        (line,) = captured
        assert ("acme", 7, 1) == (line["tenant"], line["user_id"], line["extra_key"])

    def test_keyword_cannot_overwrite_schema_fields(self, captured):
        """Keywords named like schema fields never overwrite them; they become extra_<key>."""
        with obslog.request_scope(request_id="real"):
            structlog.get_logger("t.kw").info("x", request_id="evil", level="evil", logger="evil", pid=0)
        line = captured[0]
        assert ("real", "info", "t.kw", "evil") == (
            line["request_id"], line["level"], line["logger"], line["extra_request_id"]
        )
        assert isinstance(line["pid"], int) and line["pid"] > 0

    @pytest.mark.parametrize("key", sorted(PROTECTED - {"event", "stack_info"}))
    def test_every_reserved_name_kept_as_extra_on_both_paths(self, captured, key):
        """A keyword or extra named like any schema field is kept as extra_<key> on both paths."""
        structlog.get_logger("t.kw").info("x", **{key: 3})
        logging.getLogger("t.kw").info("x", extra={key: 3})
        for line in captured:
            assert 3 == line[f"extra_{key}"]
            assert 3 != line.get(key)

    def test_level_timestamp_logger_keywords_kept(self, captured):
        """log.info("x", level=3, timestamp=..., logger=...) keeps all three as extra_<key>."""
        structlog.get_logger("t.kw").info("x", level=3, timestamp="then", logger="other")
        (line,) = captured
        assert (3, "then", "other", "info", "t.kw") == (
            line["extra_level"], line["extra_timestamp"], line["extra_logger"],
            line["level"], line["logger"],
        )

    async def test_async_methods(self, captured):
        """The async spellings (ainfo, awarning, ...) write the same line."""
        await structlog.get_logger("t.async").ainfo("async", k=1)
        (line,) = captured
        assert ("async", 1, "info") == (line["event"], line["k"], line["level"])


class TestExceptions:
    def test_exception_method(self, captured):
        """log.exception() inside except gives exc_type, exc_message and stack on one line."""
        log = structlog.get_logger("t.exc")
        try:
            raise ValueError("bad value")
        except ValueError:
            log.exception("failed", order_id=1)
        raw = captured.text
        assert 1 == len(raw.splitlines())
        (line,) = captured
        assert ("error", "failed", "ValueError", "bad value", 1) == (
            line["level"], line["event"], line["exc_type"], line["exc_message"], line["order_id"]
        )
        assert line["stack"].startswith("Traceback (most recent call last):")
        assert line["stack"].endswith("ValueError: bad value")

    def test_same_exception_fields_as_stdlib(self, captured):
        """The stdlib and structlog exception lines have the same keys."""
        try:
            raise KeyError("k")
        except KeyError:
            logging.getLogger("t.exc2").exception("failed")
            structlog.get_logger("t.exc2").exception("failed")
        std, sl = captured
        assert set(std) == set(sl)
        assert std["exc_type"] == sl["exc_type"] == "KeyError"

    def test_exc_info_keyword(self, captured):
        """exc_info=<exception> on any method adds the exception fields."""
        error = RuntimeError("later")
        structlog.get_logger("t.exc3").warning("seen", exc_info=error)
        (line,) = captured
        assert ("warning", "RuntimeError", "later") == (line["level"], line["exc_type"], line["exc_message"])

    def test_exception_outside_except(self, captured):
        """log.exception() with no exception being handled writes the line without exception fields."""
        structlog.get_logger("t.exc4").exception("nothing")
        (line,) = captured
        assert "nothing" == line["event"]
        assert "exc_type" not in line


class TestPositionalArgs:
    def test_percent_args(self, captured):
        """Positional args are %-formatted into the event, like stdlib."""
        structlog.get_logger("t.args").info("hello %s, %d items", "bob", 3)
        assert "hello bob, 3 items" == captured[0]["event"]

    def test_bad_args_degrade(self, captured):
        """Args that do not fit the format string never raise; a degraded line is written and counted."""
        before = obslog.stats()["render_errors"]
        structlog.get_logger("t.args2").info("%d items", "not a number")
        (line,) = captured
        assert 1 == obslog.stats()["render_errors"] - before
        assert "obslog_error" in line
        assert ("info", "t.args2", "shop") == (line["level"], line["logger"], line["service"])


class TestFailingProcessor:
    def test_failing_processor_never_raises(self, captured):
        """A processor that raises does not reach the app; the event is written degraded and counted."""

        def broken(logger, method_name, event_dict):
            raise RuntimeError("processor bug")

        structlog.configure(processors=[broken, render_to_stdlib])
        before = obslog.stats()["render_errors"]
        with obslog.request_scope(request_id="rid"):
            result = structlog.get_logger("t.broken").info("kept anyway", k=1)
        assert None is result
        line = captured[0]
        assert 1 == obslog.stats()["render_errors"] - before
        assert ("kept anyway", "info", "t.broken") == (line["event"], line["level"], line["logger"])
        assert "RuntimeError: processor bug" == line["obslog_error"]

    def test_drop_event(self, captured):
        """A processor raising structlog.DropEvent drops the event silently, not counted as an error."""

        def drop(logger, method_name, event_dict):
            raise structlog.DropEvent

        structlog.configure(processors=[drop, render_to_stdlib])
        before = obslog.stats()["render_errors"]
        structlog.get_logger("t.drop").info("gone")
        assert [] == list(captured)
        assert before == obslog.stats()["render_errors"]

    def test_unrenderable_event(self, captured):
        """An event object whose __str__ raises still gives a line."""

        class Bad:
            def __str__(self):
                raise ValueError("no str")

            def __repr__(self):
                return "<Bad>"

        structlog.get_logger("t.badevent").info(Bad())
        (line,) = captured
        assert "<Bad>" == line["event"]

    def test_custom_chain_with_add_context(self, captured):
        """add_context and redact_secrets compose with structlog's own renderer."""
        out = io.StringIO()
        log = structlog.wrap_logger(
            structlog.PrintLogger(out),
            processors=[add_context, redact_secrets, structlog.processors.JSONRenderer()],
            wrapper_class=structlog.BoundLogger,
        )
        with obslog.request_scope(request_id="rid2"):
            with obslog.timed("db_query"):
                pass
            log.info("custom", password="p", nested={"token": "t"})
        line = json.loads(out.getvalue())
        assert ("rid2", "[REDACTED]", {"token": "[REDACTED]"}) == (
            line["request_id"], line["password"], line["nested"]
        )
        assert 1 == line["timings"]["db_query"]["count"]


class TestDisabledLevels:
    def test_disabled_levels_write_nothing_and_skip_processors(self, captured):
        """Calls below the stdlib level write nothing and run no processor."""
        calls = []

        def spy(logger, method_name, event_dict):
            calls.append(method_name)
            return event_dict

        obslog.configure(stream=io.StringIO(), level="WARNING")
        structlog.configure(processors=[spy, render_to_stdlib])
        log = structlog.get_logger("t.disabled")
        log.debug("no")
        log.info("no")
        log.warning("yes")
        assert ["yes"] == [line["event"] for line in captured]
        assert ["warning"] == calls

    def test_logger_level_respected(self, captured):
        """A per-logger stdlib level applies to structlog loggers of that name."""
        logging.getLogger("t.quiet").setLevel(logging.ERROR)
        try:
            structlog.get_logger("t.quiet").warning("no")
            structlog.get_logger("t.quiet").error("yes")
        finally:
            logging.getLogger("t.quiet").setLevel(logging.NOTSET)
        assert ["yes"] == [line["event"] for line in captured]

    def test_log_with_numeric_level(self, captured):
        """log(level, ...) maps a numeric level to the method of that level."""
        log = structlog.get_logger("t.num")
        log.log(logging.DEBUG, "no")
        log.log(logging.ERROR, "yes")
        (line,) = captured
        assert ("yes", "error") == (line["event"], line["level"])

    def test_wrapper_is_obslog_bound_logger(self, captured):
        """configure() makes structlog loggers obslog BoundLoggers."""
        log = structlog.get_logger("t.wrapper").bind()
        assert isinstance(log, BoundLogger)


class TestRuntimeLevels:
    """Level methods below the level are no-ops that follow the stdlib level as it changes."""

    def test_set_level_at_runtime_reaches_a_cached_logger(self, captured):
        """setLevel() on the stdlib logger, up and down, applies to a cached structlog logger."""
        std = logging.getLogger("t.runtime")
        std.setLevel(logging.INFO)
        log = structlog.get_logger("t.runtime")
        log.debug("off 1")
        log.info("on 1")
        std.setLevel(logging.DEBUG)
        log.debug("on 2")
        std.setLevel(logging.WARNING)
        log.debug("off 2")
        log.info("off 3")
        log.warning("on 3")
        std.setLevel(logging.NOTSET)  # the root's INFO again
        log.debug("off 4")
        log.info("on 4")
        assert ["on 1", "on 2", "on 3", "on 4"] == [line["event"] for line in captured]

    def test_parent_level_and_logging_disable(self, captured):
        """A parent's setLevel() and logging.disable() reach the level methods of a child."""
        log = structlog.get_logger("t.parent.child")
        log.info("on 1")
        logging.getLogger("t.parent").setLevel(logging.ERROR)
        log.info("off 1")
        log.error("on 2")
        logging.disable(logging.CRITICAL)
        try:
            log.critical("off 2")
        finally:
            logging.disable(logging.NOTSET)
        logging.getLogger("t.parent").setLevel(logging.NOTSET)
        log.info("on 3")
        assert ["on 1", "on 2", "on 3"] == [line["event"] for line in captured]

    def test_disabled_logger_comes_back(self, captured):
        """A logger switched off with ``disabled`` (as dictConfig does) writes again when on."""
        std = logging.getLogger("t.switched")
        log = structlog.get_logger("t.switched")
        std.disabled = True
        try:
            log.info("off")
            log.debug("off")
        finally:
            std.disabled = False
        log.info("on")
        assert ["on"] == [line["event"] for line in captured]

    def test_bound_copies_share_the_level(self, captured):
        """Loggers made by bind() and copy.copy() follow a level change as the original does."""
        std = logging.getLogger("t.shared")
        std.setLevel(logging.WARNING)
        log = structlog.get_logger("t.shared").bind(a=1)
        log.info("off")
        bound = log.bind(b=2)
        copied = copy.copy(bound)
        std.setLevel(logging.INFO)
        bound.info("bound")
        copied.info("copied")
        log.info("original")
        assert [("bound", 2), ("copied", 2), ("original", None)] == [
            (line["event"], line.get("b")) for line in captured
        ]

    def test_subclass_keeps_its_own_attributes(self, captured):
        """A BoundLogger subclass keeps attributes of its own across level changes."""

        class Tagged(BoundLogger):
            def tagged(self, event):
                self.last = event
                self.info(event)

        structlog.configure(wrapper_class=Tagged)
        std = logging.getLogger("t.sub")
        log = structlog.get_logger("t.sub").bind()
        log.tagged("on 1")
        std.setLevel(logging.WARNING)
        log.info("off")
        std.setLevel(logging.NOTSET)
        log.tagged("on 2")
        assert "on 2" == log.last
        assert ["on 1", "on 2"] == [line["event"] for line in captured]

    def test_filtered_out_call_is_a_nop(self, captured):
        """After one filtered-out call, every level method below the level is a no-op."""
        log = structlog.get_logger("t.nop").bind()
        logging.getLogger("t.nop").setLevel(logging.ERROR)
        log.debug("off")
        below = ("debug", "info", "warning", "warn")
        assert {True} == {getattr(log, name) is _nop for name in below}
        assert _nop is not log.error
        logging.getLogger("t.nop").setLevel(logging.NOTSET)
        assert _nop is not log.debug


    def test_dir_and_getmembers(self, captured):
        """dir() and inspect.getmembers() work on a logger whose level methods are no-ops."""
        log = structlog.get_logger("t.dir").bind()
        logging.getLogger("t.dir").setLevel(logging.WARNING)
        log.debug("off")
        assert {"debug", "info", "bind", "_context"} <= set(dir(log))
        assert "info" in dict(inspect.getmembers(log))

class _Records(logging.Handler):
    """Keeps the records it is given; formats them with a classic formatter on demand."""

    def __init__(self, fmt: str) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter(fmt))
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def texts(self) -> list[str]:
        """The records as the classic formatter writes them."""
        return [self.format(record) for record in self.records]


@pytest.fixture(name="records")
def _records() -> Iterator[_Records]:
    """A second handler, with a classic ``logging.Formatter``, on the ``t.rec`` logger."""
    handler = _Records(
        "%(threadName)s %(processName)s %(process)d %(name)s %(levelname)s %(message)s"
    )
    logger = logging.getLogger("t.rec")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


class TestRecord:
    """The record a structlog line is handed to the stdlib in is a complete LogRecord."""

    def test_classic_formatter_on_another_handler(self, captured, records):
        """A classic formatter on a second handler sees the thread, process, name and level."""
        log = structlog.get_logger("t.rec")
        worker = threading.Thread(target=lambda: log.warning("from a thread", k=1), name="worker-7")
        worker.start()
        worker.join()
        (text,) = records.texts
        (line,) = captured
        prefix = f"worker-7 MainProcess {os.getpid()} t.rec WARNING "
        assert prefix + records.records[0].msg == text
        assert line == json.loads(records.records[0].getMessage())

    def test_renamed_thread(self, captured, records):
        """A thread renamed between two calls is named as it is now, as the stdlib names it."""
        log = structlog.get_logger("t.rec")

        def work():
            log.info("first")
            threading.current_thread().name = "renamed"
            log.info("second")

        worker = threading.Thread(target=work, name="original")
        worker.start()
        worker.join()
        assert ["original", "renamed"] == [r.threadName for r in records.records]

    def test_process_name_from_multiprocessing(self, captured, records):
        """With multiprocessing loaded, processName is the current process's name, as in stdlib."""
        process = multiprocessing.current_process()
        saved = process.name
        process.name = "Worker-3"
        try:
            structlog.get_logger("t.rec").info("x")
        finally:
            process.name = saved
        assert "Worker-3" == records.records[0].processName

    def test_same_attributes_as_a_logrecord(self, captured, records):
        """The record has a LogRecord's attributes, in order, with the values the stdlib gives."""
        structlog.get_logger("t.rec").error("x")
        (record,) = records.records
        made = logging.LogRecord("t.rec", logging.ERROR, "(structlog)", 0, record.msg, None, None)
        records.format(made)  # as the handler formatted the record: "message" added
        assert list(made.__dict__) == list(record.__dict__)
        varying = {"created", "msecs", "relativeCreated"}
        assert {k: v for k, v in made.__dict__.items() if k not in varying} == {
            k: v for k, v in record.__dict__.items() if k not in varying
        }
        assert logging.LogRecord is type(record)
        assert 0 <= made.created - record.created < 5
        assert int((record.created - int(record.created)) * 1000) == int(record.msecs)
        assert 0 <= made.relativeCreated - record.relativeCreated < 5000

    def test_record_time_is_the_line_time(self, captured, records):
        """The record's created time is the line's timestamp."""
        structlog.get_logger("t.rec").info("x")
        (record,) = records.records
        assert format_timestamp(record.created) == captured[0]["timestamp"]

    def test_custom_record_factory(self, captured, records, monkeypatch):
        """A record factory set with logging.setLogRecordFactory makes the records."""
        made = logging.getLogRecordFactory()

        def factory(*args, **kwargs):
            record = made(*args, **kwargs)
            record.host = "h1"
            return record

        monkeypatch.setattr(logging, "_logRecordFactory", factory)
        structlog.get_logger("t.rec").info("x")
        assert "h1" == records.records[0].host

    def test_failing_record_factory_never_raises(self, captured, monkeypatch):
        """A record factory that raises does not reach the app; the line is counted as dropped."""

        def factory(*args, **kwargs):
            raise RuntimeError("factory bug")

        monkeypatch.setattr(logging, "_logRecordFactory", factory)
        before = obslog.stats()["dropped"]
        assert None is structlog.get_logger("t.rec").info("x")
        assert 1 == obslog.stats()["dropped"] - before

    async def test_task_name_as_the_stdlib_gives_it(self, captured, records):
        """In an asyncio task the record's taskName is a LogRecord's there (Python 3.12+ has it)."""

        async def work():
            structlog.get_logger("t.rec").info("x")
            made = logging.LogRecord("t.rec", logging.INFO, "(structlog)", 0, "", None, None)
            return getattr(made, "taskName", "absent")

        expected = await asyncio.create_task(work(), name="job-5")
        assert expected in ("job-5", "absent")
        assert expected == getattr(records.records[0], "taskName", "absent")

    def test_thread_and_process_switches(self, captured, records, monkeypatch):
        """logThreads, logProcesses and logMultiprocessing off leave those attributes None."""
        monkeypatch.setattr(logging, "logThreads", False)
        monkeypatch.setattr(logging, "logProcesses", False)
        monkeypatch.setattr(logging, "logMultiprocessing", False)
        structlog.get_logger("t.rec").info("x")
        (record,) = records.records
        assert (None, None, None, None) == (
            record.thread, record.threadName, record.processName, record.process
        )
        assert os.getpid() == captured[0]["pid"]

    def test_added_level_name(self, captured, records):
        """A level renamed with logging.addLevelName is the record's levelname."""
        structlog.get_logger("t.rec").warning("x")
        logging.addLevelName(logging.WARNING, "WARN")
        try:
            structlog.get_logger("t.rec").warning("y")
        finally:
            logging.addLevelName(logging.WARNING, "WARNING")
        assert ["WARNING", "WARN"] == [r.levelname for r in records.records]


class TestInlineChain:
    def test_same_lines_as_running_the_chain(self, captured):
        """The chain configure() installs, run inline, writes what running it in turn writes."""

        def passthrough(logger, method_name, event_dict):
            return event_dict

        def calls(log):
            structlog.contextvars.bind_contextvars(tenant="acme", order_id=0, event="cv", zone=3)
            try:
                log.info("first %s", "arg", order_id=1)
                log.bind(event="bound").info(None, k=2)
                log.info(None)
                log.bind(user=7, password="p").warning("bound", user=8, nested={"token": "t"})
                try:
                    raise ValueError("bad")
                except ValueError:
                    log.exception("failed", stack_info="stack text")
            finally:
                structlog.contextvars.clear_contextvars()

        calls(structlog.get_logger("t.inline"))
        structlog.configure(
            processors=[structlog.contextvars.merge_contextvars, passthrough, render_to_stdlib]
        )
        calls(structlog.get_logger("t.inline"))
        inline, chained = captured[:5], captured[5:]
        assert 5 == len(chained)
        strip = {"timestamp", "stack"}
        assert [{k: v for k, v in line.items() if k not in strip} for line in chained] == [
            {k: v for k, v in line.items() if k not in strip} for line in inline
        ]
        # Keys bound with bind_contextvars come in the order they were bound (structlog's scan
        # follows the context's internal order instead); every other key keeps its place.
        bound = {"tenant", "zone"}
        assert [[k for k in line if k not in bound] for line in chained] == [
            [k for k in line if k not in bound] for line in inline
        ]

    def test_contextvars_bound_unbound_and_per_context(self, captured):
        """Contextvars appear until unbound or cleared, only in their context; keywords win."""
        log = structlog.get_logger("t.ctxvars")
        structlog.contextvars.bind_contextvars(a=1, b=2)
        log.info("both", b=20)
        structlog.contextvars.unbind_contextvars("a")
        log.info("b only")

        def in_a_copy():
            structlog.contextvars.bind_contextvars(c=3)
            log.info("c")

        contextvars.copy_context().run(in_a_copy)
        structlog.contextvars.clear_contextvars()
        log.info("none")
        assert [(1, 20, None), (None, 2, None), (None, 2, 3), (None, None, None)] == [
            (line.get("a"), line.get("b"), line.get("c")) for line in captured
        ]

    def test_structlog_capture_logs_sees_cached_loggers(self, captured):
        """structlog.testing.capture_logs() captures the events of an already cached logger."""
        log = structlog.get_logger("t.capture")
        log.info("before")
        with structlog.testing.capture_logs() as logs:
            log.info("inside", k=1)
        log.info("after")
        assert [{"event": "inside", "k": 1, "log_level": "info"}] == logs
        assert ["before", "after"] == [line["event"] for line in captured]
