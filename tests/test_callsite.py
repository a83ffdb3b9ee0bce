"""
Caller information: ``configure(callsite=True)`` puts ``module``/``func``/``lineno`` on both paths;
without it ObslogLogger skips the stack walk only when no handler, filter or formatter may read it.
"""

from __future__ import annotations

import io
import json
import logging
import logging.config
import logging.handlers
import queue
import sys

import pytest
import structlog

import obslog

from obslog import ObslogLogger


NO_CALLER = ("(unknown file)", 0, "(unknown function)", None)


@pytest.fixture(name="make_log")
def _make_log(request):
    """
    obslog configured; a maker of a non-propagating ObslogLogger with one obslog JSON handler.

    Made in the test itself: pytest adds its capture handler to the non-propagating loggers that
    exist when a test starts, and that handler (rightly) reads the caller.
    """
    obslog.configure(stream=io.StringIO())
    made = []

    def make() -> logging.Logger:
        log = logging.getLogger(f"t.callsite.{request.node.name}")
        assert isinstance(log, ObslogLogger)
        log.propagate = False
        log.setLevel(logging.DEBUG)
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(obslog.JsonFormatter())
        handler.addFilter(obslog.ContextFilter())
        log.handlers[:] = [handler]
        log.stream = stream  # type: ignore[attr-defined]
        made.append(log)
        return log

    yield make
    for log in made:
        log.handlers.clear()
        log.filters.clear()


def lines(log: logging.Logger) -> list[dict]:
    """The JSON lines written by *log*'s obslog handler."""
    return [json.loads(text) for text in log.stream.getvalue().splitlines()]  # type: ignore[attr-defined]


def text_handler(log: logging.Logger, fmt: str) -> io.StringIO:
    """Add a StreamHandler with a ``logging.Formatter(fmt)`` to *log*; return its stream."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(fmt))
    log.addHandler(handler)
    return stream


def call_site(log: logging.Logger) -> int:
    """Log one line from here; return the line number of the call."""
    log.info("here")
    return call_site.__code__.co_firstlineno + 2


class TestSkippedWalk:
    def test_no_walk_when_only_obslog_reads_the_record(self, make_log):
        """With only obslog's JSON formatter and filter on the route, findCaller does not walk."""
        log = make_log()
        assert NO_CALLER == log.findCaller()

    def test_line_is_unchanged_without_the_caller(self, make_log):
        """The JSON line has no caller fields unless callsite is on."""
        log = make_log()
        log.info("order listed", extra={"order_id": 42})

        [line] = lines(log)
        assert {"order_id": 42, "event": "order listed"}.items() <= line.items()
        assert set() == {"module", "func", "lineno"} & set(line)

    def test_stack_info_always_walks(self, make_log):
        """stack_info=True needs the stack: the walk happens and the stack is on the line."""
        log = make_log()
        log.info("with stack", stack_info=True)

        [line] = lines(log)
        assert "test_stack_info_always_walks" in line["stack_info"]

    def test_no_handler_at_all_walks(self):
        """A record that reaches no handler goes to logging.lastResort: the caller is kept."""
        obslog.configure(stream=io.StringIO())
        log = logging.getLogger("t.callsite.nohandler")
        log.propagate = False

        assert __file__ == log.findCaller()[0]


class TestOtherHandlersKeepTheCaller:
    def test_user_lineno_formatter_beside_obslog(self, make_log):
        """A user's %(lineno)d formatter on another handler gets the real caller."""
        log = make_log()
        stream = text_handler(log, "%(module)s %(funcName)s %(lineno)d %(message)s")

        line = call_site(log)

        assert f"test_callsite call_site {line} here\n" == stream.getvalue()
        assert "here" == lines(log)[0]["event"]

    def test_user_formatter_on_root_via_propagation(self):
        """A %(lineno)d handler on the root sees the caller of a record from a child logger."""
        obslog.configure(stream=io.StringIO())
        root = logging.getLogger()
        stream = text_handler(root, "%(filename)s:%(lineno)d")
        try:
            line = call_site(logging.getLogger("t.callsite.child"))
        finally:
            root.handlers.pop()

        assert f"test_callsite.py:{line}\n" == stream.getvalue()

    def test_brace_style_formatter(self, make_log):
        """A {lineno} format (str.format style) counts as reading the caller."""
        log = make_log()
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("{funcName}:{lineno}", style="{"))
        log.addHandler(handler)

        line = call_site(log)

        assert f"call_site:{line}\n" == stream.getvalue()

    def test_formatter_set_later_is_seen(self, make_log):
        """A formatter replaced after the first record is decided again: the next record walks."""
        log = make_log()
        stream = text_handler(log, "%(message)s")
        log.info("first")
        log.handlers[1].setFormatter(logging.Formatter("%(lineno)d"))

        line = call_site(log)

        assert f"first\n{line}\n" == stream.getvalue()

    def test_unknown_handler_class(self, make_log):
        """A handler class obslog does not know (even a StreamHandler subclass) gets the caller."""
        log = make_log()

        class Recorder(logging.StreamHandler):  # type: ignore[type-arg]
            def emit(self, record):
                self.seen = (record.funcName, record.lineno)

        handler = Recorder(io.StringIO())
        log.addHandler(handler)

        line = call_site(log)

        assert ("call_site", line) == handler.seen

    @pytest.mark.parametrize(
        "make",
        [
            lambda: logging.handlers.QueueHandler(queue.SimpleQueue()),
            lambda: logging.handlers.MemoryHandler(100),
        ],
        ids=["QueueHandler", "MemoryHandler"],
    )
    def test_handlers_that_pass_records_on(self, make_log, make):
        """QueueHandler and MemoryHandler pass the record on: it keeps its caller."""
        log = make_log()
        handler = make()
        log.addHandler(handler)

        line = call_site(log)

        if isinstance(handler, logging.handlers.QueueHandler):
            record = handler.queue.get_nowait()
        else:
            record = handler.buffer[0]
        assert ("call_site", line) == (record.funcName, record.lineno)

    def test_caplog_records(self, caplog):
        """pytest's caplog handler sees the caller of records from obslog's logger class."""
        obslog.configure(stream=io.StringIO())
        caplog.set_level(logging.INFO)

        line = call_site(logging.getLogger("t.callsite.caplog"))

        [record] = caplog.records
        assert ("call_site", line) == (record.funcName, record.lineno)

    def test_unknown_filter_on_the_handler(self, make_log):
        """A handler filter obslog does not know may read the caller: it gets it."""
        log = make_log()
        seen = []

        def remember(record):
            seen.append(record.lineno)
            return True

        log.handlers[0].addFilter(remember)

        line = call_site(log)

        assert [line] == seen

    def test_unknown_filter_on_the_logger(self, make_log):
        """A logger filter obslog does not know may read the caller: it gets it."""
        log = make_log()
        seen = []

        class Remember(logging.Filter):
            def filter(self, record):
                seen.append(record.lineno)
                return True

        log.addFilter(Remember())

        line = call_site(log)

        assert [line] == seen

    def test_stacklevel_is_kept(self, make_log):
        """stacklevel=2 still names the caller's caller."""
        log = make_log()
        stream = text_handler(log, "%(funcName)s")

        def helper():
            log.info("x", stacklevel=2)

        helper()

        assert "test_stacklevel_is_kept\n" == stream.getvalue()

    def test_json_formatter_writing_record_attributes(self, make_log):
        """A JsonFormatter that writes LogRecord attributes (reserved_attrs=[]) gets lineno."""
        log = make_log()
        log.handlers[0].setFormatter(obslog.JsonFormatter(reserved_attrs=[]))

        line = call_site(log)

        assert line == lines(log)[0]["lineno"]

    def test_json_formatter_fmt_naming_lineno(self, make_log):
        """A JsonFormatter whose fmt names lineno writes the real line number."""
        log = make_log()
        log.handlers[0].setFormatter(obslog.JsonFormatter("%(lineno)d %(message)s"))

        line = call_site(log)

        assert line == lines(log)[0]["lineno"]


class TestCallsiteOption:
    def test_stdlib_line_has_the_caller(self, make_log):
        """configure(callsite=True): the stdlib line carries module, func and lineno."""
        log = make_log()
        obslog.configure(stream=io.StringIO(), callsite=True)

        line = call_site(log)

        [fields] = lines(log)
        assert ("test_callsite", "call_site", line) == (
            fields["module"],
            fields["func"],
            fields["lineno"],
        )

    def test_structlog_line_has_its_real_caller(self):
        """configure(callsite=True): a structlog line names the application's call, not obslog's."""
        stream = io.StringIO()
        obslog.configure(stream=stream, callsite=True)
        log = structlog.get_logger("t.callsite.structlog")

        log.info("here")
        line = sys._getframe().f_lineno - 1

        fields = json.loads(stream.getvalue())
        assert ("test_callsite", "test_structlog_line_has_its_real_caller", line) == (
            fields["module"],
            fields["func"],
            fields["lineno"],
        )

    def test_extra_named_like_a_caller_field(self, make_log):
        """An extra called func keeps its value as extra_func when the caller is written."""
        log = make_log()
        obslog.configure(stream=io.StringIO(), callsite=True)

        log.info("x", extra={"func": "billing"})

        [fields] = lines(log)
        assert "billing" == fields["extra_func"]

    def test_off_by_default(self):
        """callsite is off unless asked for."""
        assert False is obslog.get_config()["callsite"]

    def test_invalid_value(self):
        """callsite must be a bool; the error says what is valid."""
        with pytest.raises(TypeError, match="callsite must be True or False, not 'yes'"):
            obslog.configure(stream=io.StringIO(), callsite="yes")  # type: ignore[arg-type]

    def test_dict_config_carries_it(self):
        """dict_config(callsite=True) sets the option when the dict is applied."""
        config = obslog.dict_config(callsite=True, stream=io.StringIO())
        logging.config.dictConfig(config)

        assert True is obslog.get_config()["callsite"]


class TestRecordWithoutCaller:
    def test_same_attributes_as_logrecord(self, make_log):
        """A record made without a caller has LogRecord's attributes, order and values."""
        log = make_log()
        seen = []
        log.handlers[0].addFilter(obslog.ContextFilter())
        log.handlers[0].format = lambda record: seen.append(record) or ""  # type: ignore[method-assign]

        log.warning("m %(x)s", {"x": 1}, exc_info=False)

        [record] = seen
        real = logging.LogRecord(
            log.name, logging.WARNING, "(unknown file)", 0, "m %(x)s", ({"x": 1},), False,
            "(unknown function)",
        )  # fmt: skip
        timed = ("created", "msecs", "relativeCreated")
        made = {k: v for k, v in record.__dict__.items() if k not in timed and k[:1] != "_"}
        assert list(real.__dict__) == [k for k in record.__dict__ if k[:1] != "_"]
        assert {k: v for k, v in real.__dict__.items() if k not in timed} == made
        assert "m 1" == record.getMessage()

    def test_custom_record_factory_still_makes_records(self, make_log):
        """With logging.setLogRecordFactory, obslog's logger uses that factory."""
        log = make_log()
        original = logging.getLogRecordFactory()

        def factory(*args, **kwargs):
            record = original(*args, **kwargs)
            record.tenant = "acme"
            return record

        logging.setLogRecordFactory(factory)
        try:
            log.info("x")
        finally:
            logging.setLogRecordFactory(original)

        assert "acme" == lines(log)[0]["tenant"]
