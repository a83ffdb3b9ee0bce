"""
The standard-library side: dictConfig, ContextFilter, JsonFormatter options, QueueHandler, extra
collisions, configure(), environment overrides and the console format.
"""

from __future__ import annotations

import io
import json
import logging
import logging.config
import logging.handlers
import queue
import subprocess
import sys
import threading

import pytest
import structlog

from _lines import parse

import obslog


def handler_with(formatter: logging.Formatter, stream: io.StringIO) -> logging.Handler:
    """A handler on a fresh, non-propagating logger, with obslog's filter and *formatter*."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(obslog.ContextFilter())
    return handler


@pytest.fixture(name="own_logger")
def _own_logger(request):
    """A logger of its own, not propagating to root; handlers removed afterwards."""
    log = logging.getLogger(f"t.own.{request.node.name}")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    yield log
    for h in log.handlers[:]:
        log.removeHandler(h)


class TestDictConfig:
    def test_dict_config_function(self):
        """logging.config.dictConfig(obslog.dict_config(...)) writes enriched JSON lines."""
        stream = io.StringIO()
        logging.config.dictConfig(obslog.dict_config(service="shop", env="test", stream=stream))
        log = logging.getLogger("shop.orders")
        with obslog.request_scope("GET", "/orders/{id}") as req:
            with obslog.timed("db_query"):
                pass
            log.info("order listed", extra={"order_count": 3})
            req.status = 200
        listed, canonical = parse(stream)
        assert ("shop", "test", "shop.orders", "order listed", 3) == (
            listed["service"], listed["env"], listed["logger"], listed["event"], listed["order_count"]
        )
        assert req.request_id == listed["request_id"] == canonical["request_id"]
        assert 1 == listed["timings"]["db_query"]["count"]
        assert (200, "ok") == (canonical["status"], canonical["outcome"])

    def test_dict_config_is_plain_dict(self):
        """dict_config returns plain data carrying the settings; applying it picks the formatter."""
        config = obslog.dict_config(fmt="console", service="shop", redact_keys=["pin"])
        assert json.loads(json.dumps(config)) == config
        assert {"fmt": "console", "service": "shop", "redact_keys": ["pin"]} == (
            config["formatters"]["obslog"]["settings"]
        )
        assert False is config["disable_existing_loggers"]
        config["handlers"]["obslog"]["stream"] = io.StringIO()
        logging.config.dictConfig(config)
        (handler,) = [h for h in logging.getLogger().handlers if h.get_name() == "obslog"]
        assert obslog.ConsoleFormatter is type(handler.formatter)

    def test_dict_config_is_pure(self):
        """dict_config changes nothing until applied: obslog's settings and structlog stay as they were."""
        before, structlog_before = obslog.get_config(), structlog.get_config()
        obslog.dict_config(service="first", level="DEBUG", fmt="console", sample_rate=5)
        assert before == obslog.get_config()
        assert structlog_before == structlog.get_config()

    def test_dict_config_applied_twice_leaves_nothing_behind(self):
        """Applying a second dict_config dict gives its settings only, none of the first's."""
        first, second = io.StringIO(), io.StringIO()
        logging.config.dictConfig(obslog.dict_config(service="first", env="prod", stream=first))
        logging.config.dictConfig(obslog.dict_config(version="2", stream=second))
        logging.getLogger("t.dict.second").warning("x")
        (line,) = parse(second)
        assert ("2", None, None) == (line["version"], line.get("service"), line.get("env"))
        assert (None, "2") == (obslog.get_config()["service"], obslog.get_config()["version"])

    def test_dict_config_invalid_setting_raises_at_call(self):
        """An invalid setting raises from dict_config itself, saying what is valid."""
        with pytest.raises(ValueError, match="fmt must be one of"):
            obslog.dict_config(fmt="xml")

    def test_dict_config_keeps_existing_loggers(self):
        """Loggers made before dictConfig keep working (disable_existing_loggers is False)."""
        early = logging.getLogger("t.dict.early")
        stream = io.StringIO()
        logging.config.dictConfig(obslog.dict_config(stream=stream))
        early.info("still here")
        assert ["still here"] == [line["event"] for line in parse(stream)]

    def test_dict_config_also_configures_structlog(self):
        """dict_config routes structlog through stdlib: structlog lines reach the same handler."""
        stream = io.StringIO()
        logging.config.dictConfig(obslog.dict_config(service="shop", stream=stream))
        structlog.get_logger("t.dict.sl").info("via structlog", k=1)
        (line,) = parse(stream)
        assert ("via structlog", 1, "shop", "t.dict.sl") == (
            line["event"], line["k"], line["service"], line["logger"]
        )

    def test_hand_written_dict(self):
        """A user's own dict naming obslog.JsonFormatter and obslog.ContextFilter by "()" works."""
        stream = io.StringIO()
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "filters": {"ctx": {"()": "obslog.ContextFilter"}},
                "formatters": {
                    "json": {
                        "()": "obslog.JsonFormatter",
                        "static_fields": {"team": "core"},
                        "rename_fields": {"order_id": "oid"},
                    }
                },
                "handlers": {
                    "out": {
                        "class": "logging.StreamHandler",
                        "stream": stream,
                        "formatter": "json",
                        "filters": ["ctx"],
                    }
                },
                "loggers": {"t.hand": {"handlers": ["out"], "level": "DEBUG", "propagate": False}},
            }
        )
        log = logging.getLogger("t.hand")
        with obslog.request_scope(request_id="r1"), obslog.timed("db_query"):
            log.debug("written", extra={"order_id": 7})
        (line,) = parse(stream)
        assert ("debug", "written", "r1", 7, "core") == (
            line["level"], line["event"], line["request_id"], line["oid"], line["team"]
        )
        assert "order_id" not in line

    def test_twice_gives_one_line(self):
        """Applying obslog.dict_config twice leaves one handler: each record is written once."""
        stream = io.StringIO()
        logging.config.dictConfig(obslog.dict_config(stream=stream))
        logging.config.dictConfig(obslog.dict_config(stream=stream))
        logging.getLogger("t.dict.twice").warning("once")
        assert 1 == len(parse(stream))


class TestJsonFormatterOptions:
    def test_fmt_fields(self, own_logger):
        """Record attributes named in fmt appear on the line (python-json-logger's fmt)."""
        stream = io.StringIO()
        own_logger.addHandler(handler_with(obslog.JsonFormatter("%(funcName)s %(lineno)d %(module)s"), stream))
        own_logger.info("x")
        (line,) = parse(stream)
        assert ("test_fmt_fields", "test_stdlib") == (line["funcName"], line["module"])
        assert isinstance(line["lineno"], int)
        assert "x" == line["event"]

    def test_asctime_in_fmt(self, own_logger):
        """%(asctime)s in fmt adds asctime formatted with datefmt."""
        stream = io.StringIO()
        own_logger.addHandler(handler_with(obslog.JsonFormatter("%(asctime)s", datefmt="%Y"), stream))
        own_logger.info("x")
        (line,) = parse(stream)
        assert line["timestamp"][:4] == line["asctime"]

    def test_rename_fields(self, own_logger):
        """rename_fields renames fmt fields and extras."""
        stream = io.StringIO()
        formatter = obslog.JsonFormatter(
            "%(levelname)s", rename_fields={"levelname": "severity", "order_id": "oid"}
        )
        own_logger.addHandler(handler_with(formatter, stream))
        own_logger.warning("x", extra={"order_id": 1})
        (line,) = parse(stream)
        assert ("WARNING", 1, "warning") == (line["severity"], line["oid"], line["level"])
        assert not {"levelname", "order_id"} & set(line)

    def test_static_fields_and_defaults(self, own_logger):
        """static_fields are on every line; defaults fill in when an extra is missing."""
        stream = io.StringIO()
        formatter = obslog.JsonFormatter(static_fields={"team": "core"}, defaults={"region": "eu"})
        own_logger.addHandler(handler_with(formatter, stream))
        own_logger.info("a")
        own_logger.info("b", extra={"region": "us"})
        a, b = parse(stream)
        assert ("core", "eu") == (a["team"], a["region"])
        assert ("core", "us") == (b["team"], b["region"])

    def test_prefix(self, own_logger):
        """prefix is written before the JSON object."""
        stream = io.StringIO()
        own_logger.addHandler(handler_with(obslog.JsonFormatter(prefix="@cee: "), stream))
        own_logger.info("x")
        raw = stream.getvalue()
        assert raw.startswith("@cee: {")
        assert "x" == json.loads(raw.removeprefix("@cee: "))["event"]

    def test_reserved_attrs(self, own_logger):
        """Extras listed in reserved_attrs are left out, as in python-json-logger."""
        from pythonjsonlogger.core import RESERVED_ATTRS

        stream = io.StringIO()
        formatter = obslog.JsonFormatter(reserved_attrs=[*RESERVED_ATTRS, "internal"])
        own_logger.addHandler(handler_with(formatter, stream))
        own_logger.info("x", extra={"internal": 1, "kept": 2})
        (line,) = parse(stream)
        assert 2 == line["kept"]
        assert "internal" not in line

    def test_schema_without_options(self, own_logger):
        """A bare JsonFormatter writes the schema fields in order, without stdlib record noise."""
        stream = io.StringIO()
        own_logger.addHandler(handler_with(obslog.JsonFormatter(), stream))
        own_logger.info("x")
        (line,) = parse(stream)
        assert ["timestamp", "level", "logger", "event", "pid"] == list(line)

    def test_without_filter_context_taken_at_format_time(self, own_logger):
        """Without ContextFilter the formatter captures the scope itself (synchronous handlers)."""
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(obslog.JsonFormatter())
        own_logger.addHandler(handler)
        with obslog.request_scope(request_id="nofilter"):
            own_logger.info("x")
        assert "nofilter" == parse(stream)[0]["request_id"]

    def test_dict_message(self, own_logger):
        """A dict message gives its keys as fields and its "event" (or "message") as the event."""
        stream = io.StringIO()
        own_logger.addHandler(handler_with(obslog.JsonFormatter(), stream))
        own_logger.info({"event": "from dict", "k": 1})
        own_logger.info({"message": "legacy", "k": 2})
        a, b = parse(stream)
        assert ("from dict", 1, "legacy", 2) == (a["event"], a["k"], b["event"], b["k"])


class Point:
    """A value JSON cannot encode."""

    def __init__(self, x: int) -> None:
        self.x = x

    def __repr__(self) -> str:
        return f"Point({self.x})"


def formatted(formatter: logging.Formatter, log: logging.Logger, *args, **kwargs) -> str:
    """Log one record through *formatter* on *log* and return the raw output."""
    stream = io.StringIO()
    log.addHandler(handler_with(formatter, stream))
    log.info(*args, **kwargs)
    return stream.getvalue()


class TestPythonJsonLoggerOptions:
    def test_json_default_before_repr_fallback(self, own_logger):
        """json_default encodes what it knows; what it refuses falls back to obslog's repr."""

        def encode_complex(value):
            if isinstance(value, complex):
                return [value.real, value.imag]
            raise TypeError(value)

        raw = formatted(obslog.JsonFormatter(json_default=encode_complex), own_logger,
                        "x", extra={"z": complex(3, 8), "p": Point(1)})
        line = json.loads(raw)
        assert ([3.0, 8.0], "Point(1)") == (line["z"], line["p"])
        assert 1 == len(raw.splitlines())

    def test_json_encoder(self, own_logger):
        """json_encoder is used with its own default method."""

        class PointEncoder(json.JSONEncoder):
            def default(self, o):
                return {"x": o.x} if isinstance(o, Point) else super().default(o)

        line = json.loads(formatted(obslog.JsonFormatter(json_encoder=PointEncoder), own_logger,
                                    "x", extra={"p": Point(2)}))
        assert {"x": 2} == line["p"]

    def test_json_serializer(self, own_logger):
        """json_serializer receives python-json-logger's keyword arguments and writes the line."""
        calls = []

        def serializer(data, **kwargs):
            calls.append(sorted(kwargs))
            return "S" + json.dumps(data, **kwargs)

        raw = formatted(obslog.JsonFormatter(json_serializer=serializer), own_logger, "x")
        assert [["cls", "default", "ensure_ascii", "indent"]] == calls
        assert "x" == json.loads(raw.removeprefix("S"))["event"]

    def test_failing_serializer_is_counted(self, own_logger):
        """A json_serializer that raises does not lose the line: obslog encodes it, counted."""

        def serializer(data, **kwargs):
            raise RuntimeError("broken")

        before = obslog.stats()["render_errors"]
        line = json.loads(formatted(obslog.JsonFormatter(json_serializer=serializer), own_logger, "kept"))
        assert ("kept", before + 1) == (line["event"], obslog.stats()["render_errors"])

    def test_json_indent(self, own_logger):
        """json_indent writes indented JSON (one record, several lines)."""
        raw = formatted(obslog.JsonFormatter(json_indent=2), own_logger, "x", extra={"k": 1})
        assert raw.startswith('{\n  "timestamp": ')
        assert (1, "x") == (json.loads(raw)["k"], json.loads(raw)["event"])

    def test_json_ensure_ascii(self, own_logger):
        """json_ensure_ascii=True escapes non-ASCII; by default it is written as is, compact."""
        escaped = formatted(obslog.JsonFormatter(json_ensure_ascii=True), own_logger, "Привет")
        plain = formatted(obslog.JsonFormatter(), own_logger, "Привет")
        assert '"event":"\\u041f\\u0440' in escaped
        assert '"event":"Привет"' in plain

    def test_rename_schema_fields(self, own_logger):
        """rename_fields renames schema fields; "message" names the event as in python-json-logger."""
        formatter = obslog.JsonFormatter(
            rename_fields={"message": "msg_text", "timestamp": "@timestamp", "level": "severity"}
        )
        with obslog.request_scope(request_id="r1"):
            line = json.loads(formatted(formatter, own_logger, "hello"))
        assert ["@timestamp", "severity", "logger", "msg_text", "pid", "request_id"] == list(line)
        assert ("info", "hello", "r1") == (line["severity"], line["msg_text"], line["request_id"])
        event = json.loads(formatted(obslog.JsonFormatter(rename_fields={"event": "message"}), own_logger, "e"))
        assert "e" == event["message"]

    def test_rename_keep_missing(self, own_logger):
        """rename_fields_keep_missing writes a renamed field that is missing as null."""
        formatter = obslog.JsonFormatter(rename_fields={"order_id": "oid"}, rename_fields_keep_missing=True)
        line = json.loads(formatted(formatter, own_logger, "x"))
        assert None is line["oid"]

    def test_exc_info_in_fmt(self, own_logger):
        """%(exc_info)s in fmt writes the formatted traceback, as python-json-logger does."""
        stream = io.StringIO()
        own_logger.addHandler(handler_with(obslog.JsonFormatter("%(exc_info)s"), stream))
        try:
            raise ValueError("bad")
        except ValueError:
            own_logger.exception("failed")
            expected = __import__("traceback").format_exc().rstrip("\n")
        own_logger.info("fine")
        failed, fine = parse(stream)
        assert (expected, expected, "ValueError") == (failed["exc_info"], failed["stack"], failed["exc_type"])
        assert None is fine["exc_info"]

    def test_exc_info_and_stack_info_as_array(self, own_logger):
        """exc_info_as_array and stack_info_as_array write the traceback and stack as lists of lines."""
        stream = io.StringIO()
        formatter = obslog.JsonFormatter("%(exc_info)s", exc_info_as_array=True, stack_info_as_array=True)
        own_logger.addHandler(handler_with(formatter, stream))
        try:
            raise ValueError("bad")
        except ValueError:
            own_logger.exception("failed", stack_info=True)
        (line,) = parse(stream)
        assert "ValueError: bad" == line["stack"][-1] == line["exc_info"][-1]
        assert line["stack_info"][0].startswith("Stack (most recent call last):")

    @pytest.mark.parametrize("hook", ["add_fields", "process_log_record", "jsonify_log_record",
                                      "serialize_log_record"])
    def test_subclass_hooks_are_called(self, own_logger, hook):
        """A subclass overriding a python-json-logger hook gets it called once per record."""
        calls = []

        def override(self, *args):
            calls.append(hook)
            return getattr(obslog.JsonFormatter, hook)(self, *args)

        subclass = type("Custom", (obslog.JsonFormatter,), {hook: override})
        line = json.loads(formatted(subclass(), own_logger, "x", extra={"k": 1}))
        assert ([hook], "x", 1) == (calls, line["event"], line["k"])

    def test_process_log_record_changes_the_line(self, own_logger):
        """process_log_record sees the schema fields and what it returns is written."""

        class Upper(obslog.JsonFormatter):
            def process_log_record(self, log_data):
                log_data["level"] = log_data["level"].upper()
                return log_data

        assert "INFO" == json.loads(formatted(Upper(), own_logger, "x"))["level"]

    def test_hooks_decided_at_construction(self, own_logger, monkeypatch):
        """A formatter without overridden hooks keeps its fast path: patching the class later has no effect."""
        formatter = obslog.JsonFormatter()
        monkeypatch.setattr(obslog.JsonFormatter, "process_log_record", lambda self, d: {"patched": 1})
        assert "x" == json.loads(formatted(formatter, own_logger, "x"))["event"]

    def test_exc_text_only_record_keeps_traceback(self):
        """A record that arrives through SocketHandler (only exc_text travelled) keeps its traceback."""
        import logging.handlers
        import pickle

        log = logging.getLogger("t.socket")
        try:
            raise KeyError("missing")
        except KeyError:
            record = log.makeRecord("t.socket", logging.ERROR, __file__, 1, "failed", (),
                                    sys.exc_info())
        pickled = logging.handlers.SocketHandler("127.0.0.1", 9).makePickle(record)
        received = logging.makeLogRecord(pickle.loads(pickled[4:]))
        assert (None, True) == (received.exc_info, bool(received.exc_text))
        line = json.loads(obslog.JsonFormatter().format(received))
        assert ("KeyError", "'missing'") == (line["exc_type"], line["exc_message"])
        assert line["stack"].startswith("Traceback (most recent call last):")
        assert line["stack"].endswith("KeyError: 'missing'")

    def test_queue_handler_record_keeps_traceback(self):
        """A record prepared by a real QueueHandler (traceback folded into the message) is split back."""
        q: queue.Queue = queue.Queue()
        stream = io.StringIO()
        target = logging.StreamHandler(stream)
        target.setFormatter(obslog.JsonFormatter())
        listener = logging.handlers.QueueListener(q, target)
        log = logging.Logger("t.queue.exc")
        log.addHandler(logging.handlers.QueueHandler(q))
        listener.start()
        try:
            try:
                raise ValueError("bad value")
            except ValueError:
                log.exception("failed %s", "order")
            log.info("plain")
        finally:
            listener.stop()
        failed, plain = parse(stream)
        assert ("failed order", "ValueError", "bad value") == (
            failed["event"], failed["exc_type"], failed["exc_message"]
        )
        assert failed["stack"].startswith("Traceback (most recent call last):")
        assert ("plain", False) == (plain["event"], "stack" in plain)

    def test_timestamp_option(self, own_logger):
        """timestamp="@timestamp" adds an ISO-8601 string; timestamp=True keeps the schema's timestamp."""
        import datetime

        at = json.loads(formatted(obslog.JsonFormatter(timestamp="@timestamp"), own_logger, "x"))
        parsed = datetime.datetime.fromisoformat(at["@timestamp"])
        assert datetime.timezone.utc == parsed.tzinfo
        assert at["timestamp"][:19] == at["@timestamp"][:19]
        plain = json.loads(formatted(obslog.JsonFormatter(timestamp=True), own_logger, "x"))
        assert plain["timestamp"].endswith("Z")

    def test_reserved_attrs_empty_writes_every_record_attribute(self, own_logger):
        """reserved_attrs=[] writes every LogRecord attribute, as python-json-logger does."""
        line = json.loads(formatted(obslog.JsonFormatter(reserved_attrs=[]), own_logger, "x"))
        bare = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__)
        # An attribute named like a schema field (stack_info) is kept as extra_<name>.
        assert set() == {key for key in bare if key not in line and f"extra_{key}" not in line}
        assert ("x", own_logger.name) == (line["msg"], line["name"])

    def test_non_string_extra_key_without_obslog_logger(self, own_logger):
        """A plain logger's extra with a non-string key is written under its str()."""
        plain = logging.Logger("t.plain.int")
        stream = io.StringIO()
        plain.addHandler(handler_with(obslog.JsonFormatter(), stream))
        plain.info("x", extra={5: "nine", "k": 1})
        (line,) = parse(stream)
        assert ("nine", 1) == (line["5"], line["k"])

    def test_attributes_set_outside_make_record_are_written(self):
        """A record factory's attribute (before or after LogRecord.__init__) and a filter's reach the line."""

        class EarlyRecord(logging.LogRecord):
            def __init__(self, *args, **kwargs):
                self.early = "set before __init__"
                super().__init__(*args, **kwargs)

        def factory(*args, **kwargs):
            record = EarlyRecord(*args, **kwargs)
            record.late = "set after __init__"
            return record

        class AddFilter(logging.Filter):
            def filter(self, record):
                record.filtered = "set by a filter"
                return True

        previous = logging.getLogRecordFactory()
        logging.setLogRecordFactory(factory)
        try:
            for log in (logging.Logger("t.plain.factory"), obslog.ObslogLogger("t.obs.factory")):
                stream = io.StringIO()
                handler = handler_with(obslog.JsonFormatter(), stream)
                handler.addFilter(AddFilter())
                log.addHandler(handler)
                log.info("x", extra={"k": 1})
                (line,) = parse(stream)
                assert ("set before __init__", "set after __init__", "set by a filter", 1) == (
                    line["early"], line["late"], line["filtered"], line["k"]
                )
        finally:
            logging.setLogRecordFactory(previous)

    def test_structlog_line_renamed(self):
        """rename_fields and static_fields also apply to lines structlog rendered."""
        stream = io.StringIO()
        obslog.configure(stream=io.StringIO())
        handler = logging.StreamHandler(stream)
        handler.setFormatter(obslog.JsonFormatter(rename_fields={"event": "message"},
                                                  static_fields={"team": "core"}))
        logging.getLogger().addHandler(handler)
        structlog.get_logger("t.sl.renamed").info("via structlog", k=1)
        (line,) = parse(stream)
        assert ("via structlog", 1, "core") == (line["message"], line["k"], line["team"])
        assert "event" not in line

    def test_every_option_in_dict_config(self):
        """Every option works from a dictConfig, ext:// references included."""
        stream = io.StringIO()
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "formatters": {
                    "json": {
                        "()": "obslog.JsonFormatter",
                        "fmt": "%(funcName)s %(exc_info)s",
                        "json_default": "ext://builtins.vars",
                        "json_indent": None,
                        "json_ensure_ascii": True,
                        "rename_fields": {"event": "message", "level": "severity"},
                        "static_fields": {"team": "core"},
                        "timestamp": "@timestamp",
                        "exc_info_as_array": True,
                        "reserved_attrs": [],
                    }
                },
                "handlers": {"out": {"class": "logging.StreamHandler", "stream": stream, "formatter": "json"}},
                "loggers": {"t.dc.opts": {"handlers": ["out"], "level": "INFO", "propagate": False}},
            }
        )
        logging.getLogger("t.dc.opts").info("été", extra={"p": Point(3)})
        raw = stream.getvalue()
        line = json.loads(raw)
        assert ("été", "info", "core", {"x": 3}) == (line["message"], line["severity"], line["team"], line["p"])
        assert ("test_every_option_in_dict_config", None) == (line["funcName"], line["exc_info"])
        assert {"@timestamp", "lineno", "threadName"} <= set(line)
        assert "\\u00e9t\\u00e9" in raw


class TestQueueHandler:
    def test_context_of_logging_thread_is_kept(self):
        """Records passed through QueueHandler/QueueListener keep the scope of the thread that logged."""
        q: queue.Queue = queue.Queue()
        stream = io.StringIO()
        target = logging.StreamHandler(stream)
        target.setFormatter(obslog.JsonFormatter())
        listener = logging.handlers.QueueListener(q, target)
        qh = logging.handlers.QueueHandler(q)
        qh.addFilter(obslog.ContextFilter())
        log = logging.getLogger("t.queue")
        log.propagate = False
        log.setLevel(logging.INFO)
        log.addHandler(qh)
        listener.start()
        try:

            def work(i: int) -> None:
                with obslog.request_scope(request_id=f"q-{i}", worker=i), obslog.timed("db_query"):
                    log.info("queued", extra={"i": i})

            threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            listener.stop()
            log.removeHandler(qh)
        lines = parse(stream)
        assert 4 == len(lines)
        for line in lines:
            assert f"q-{line['i']}" == line["request_id"]
            assert line["i"] == line["worker"]
            assert "queued" == line["event"]
        assert {"timestamp", "level", "logger", "event", "pid", "request_id", "worker", "i"} == set(lines[0])


RECORD_ATTRS = [
    "name", "msg", "message", "args", "levelname", "levelno", "asctime", "exc_info", "lineno",
    "module", "process", "thread", "created", "pathname", "funcName", "stack_info",
]
OBSLOG_FIELDS = [
    "timestamp", "level", "logger", "event", "service", "pid", "request_id", "trace_id",
    "span_id", "timings", "exc_type",
]


class TestExtraCollisions:
    @pytest.mark.parametrize("key", RECORD_ATTRS)
    def test_record_attribute_key(self, captured, key):
        """An extra key that is a LogRecord attribute does not crash; it is kept as extra_<key>."""
        log = logging.getLogger("t.collide")
        log.info("hello %s", "you", extra={key: "clash"})
        (line,) = captured
        assert ("hello you", "t.collide", "info", "clash") == (
            line["event"], line["logger"], line["level"], line[f"extra_{key}"]
        )

    @pytest.mark.parametrize("key", OBSLOG_FIELDS)
    def test_obslog_field_key(self, captured, key):
        """An extra key that is an obslog field never overwrites it; it is kept as extra_<key>."""
        log = logging.getLogger("t.collide2")
        with obslog.request_scope(request_id="real", trace_id="a" * 32, span_id="b" * 16):
            with obslog.timed("db_query"):
                pass
            log.info("hi", extra={key: "evil"})
        line = captured[0]
        assert ("real", "a" * 32, "b" * 16, "hi", "info", "t.collide2", "shop") == (
            line["request_id"], line["trace_id"], line["span_id"], line["event"], line["level"],
            line["logger"], line["service"],
        )
        assert "evil" == line[f"extra_{key}"]
        assert isinstance(line["pid"], int)
        assert {"db_query"} == set(line["timings"])

    def test_bound_field_key(self, captured):
        """An extra key equal to a bound field does not overwrite the bound value."""
        with obslog.request_scope("GET", "/real"):
            logging.getLogger("t.collide3").info("hi", extra={"route": "/evil"})
        line = captured[0]
        assert ("/real", "/evil") == (line["route"], line["extra_route"])

    def test_odd_extra_values(self, captured):
        """Non-string extra keys and an extra that is not a mapping never crash the call."""
        log = logging.getLogger("t.collide4")
        log.info("keys", extra={1: "one", ("a", "b"): "tuple"})
        log.info("not a mapping", extra=["x"])
        keys, odd = captured
        assert ("one", "tuple") == (keys["1"], keys["('a', 'b')"])
        assert "not a mapping" == odd["event"]

    def test_hand_written_dict_leaves_logger_class_alone(self):
        """A hand-written dict changes no logger class; ObslogLogger is an explicit opt-in there."""
        code = (
            "import io, json, logging, logging.config, obslog\n"
            "early = logging.getLogger('early')\n"
            "logging.config.dictConfig({'version': 1,"
            " 'formatters': {'j': {'()': 'obslog.JsonFormatter'}},"
            " 'handlers': {'h': {'class': 'logging.StreamHandler', 'formatter': 'j',"
            " 'stream': 'ext://sys.stdout'}},"
            " 'root': {'handlers': ['h'], 'level': 'INFO'}})\n"
            "classes = [logging.getLoggerClass().__name__, type(early).__name__,"
            " type(logging.getLogger()).__name__]\n"
            "logging.getLogger('app').info('x', extra={'order_id': 1})\n"
            "logging.setLoggerClass(obslog.ObslogLogger)\n"
            "logging.getLogger('opted.in').info('y', extra={'name': 'clash'})\n"
            "print(json.dumps(classes))\n"
        )
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
        plain, opted, classes = result.stdout.splitlines()
        assert ["Logger", "Logger", "RootLogger"] == json.loads(classes)
        assert (1, "clash") == (json.loads(plain)["order_id"], json.loads(opted)["extra_name"])

    def test_obslog_logger_class_directly(self):
        """ObslogLogger.makeRecord renames clashing keys where the stdlib raises KeyError."""
        plain = logging.Logger("t.plain")
        with pytest.raises(KeyError):
            plain.makeRecord("t", logging.INFO, "f", 1, "m", (), None, extra={"name": "x"})
        record = obslog.ObslogLogger("t.obs").makeRecord(
            "t", logging.INFO, "f", 1, "m", (), None, extra={"name": "x", "ok": 1}
        )
        assert ("t", "x", 1) == (record.name, record.extra_name, record.ok)


class TestConfigure:
    def test_twice_no_duplicate_lines(self):
        """configure() twice replaces its handler: one line per record, in the latest stream."""
        first, second = io.StringIO(), io.StringIO()
        obslog.configure(stream=first)
        obslog.configure(stream=second)
        logging.getLogger("t.twice").warning("once")
        assert ([], ["once"]) == (parse(first), [line["event"] for line in parse(second)])
        marked = [h for h in logging.getLogger().handlers if getattr(h, "_obslog_handler", False)]
        assert 1 == len(marked)

    def test_foreign_handler_kept(self):
        """configure() leaves handlers it did not install on the root logger."""
        foreign = logging.NullHandler()
        logging.getLogger().addHandler(foreign)
        obslog.configure(stream=io.StringIO())
        obslog.configure(stream=io.StringIO())
        assert foreign in logging.getLogger().handlers

    def test_structlog_configured_twice_no_duplicates(self):
        """After two configure() calls a structlog event is written once."""
        stream = io.StringIO()
        obslog.configure(stream=stream)
        obslog.configure(stream=stream)
        structlog.get_logger("t.sl.twice").info("once")
        assert 1 == len(parse(stream))

    def test_level(self):
        """level filters lower records, given as a name in any case or as a number."""
        stream = io.StringIO()
        obslog.configure(stream=stream, level="warning")
        log = logging.getLogger("t.level")
        log.info("dropped")
        log.warning("kept")
        obslog.configure(stream=stream, level=logging.DEBUG)
        log.debug("kept too")
        assert ["kept", "kept too"] == [line["event"] for line in parse(stream)]

    def test_static_fields(self):
        """service, env and version are on every line."""
        stream = io.StringIO()
        obslog.configure(service="shop", env="prod", version="1.2.3", stream=stream)
        logging.getLogger("t.static").info("x")
        line = parse(stream)[0]
        assert ("shop", "prod", "1.2.3") == (line["service"], line["env"], line["version"])

    @pytest.mark.parametrize(
        ("kwargs", "error"),
        [
            ({"fmt": "xml"}, ValueError),
            ({"level": "LOUD"}, ValueError),
            ({"level": 1.5}, TypeError),
            ({"sample_rate": 0}, ValueError),
            ({"service": 3}, TypeError),
            ({"redact_keys": "password"}, TypeError),
        ],
    )
    def test_invalid_settings(self, kwargs, error):
        """Invalid settings raise a clear error naming what is valid."""
        with pytest.raises(error):
            obslog.configure(stream=io.StringIO(), **kwargs)

    def test_get_config_and_reset(self):
        """get_config reflects configure(); reset_defaults restores the built-in settings."""
        obslog.configure(service="shop", level="DEBUG", stream=io.StringIO())
        assert ("shop", logging.DEBUG) == (obslog.get_config()["service"], obslog.get_config()["level"])
        obslog.reset_defaults()
        assert (None, logging.INFO) == (obslog.get_config()["service"], obslog.get_config()["level"])


class TestEnvironment:
    def test_level_override(self, monkeypatch):
        """OBSLOG_LEVEL wins over the level argument."""
        monkeypatch.setenv("OBSLOG_LEVEL", "ERROR")
        stream = io.StringIO()
        obslog.configure(stream=stream, level="DEBUG")
        log = logging.getLogger("t.env.level")
        log.warning("dropped")
        log.error("kept")
        assert ["kept"] == [line["event"] for line in parse(stream)]

    def test_service_override(self, monkeypatch):
        """OBSLOG_SERVICE wins over the service argument."""
        monkeypatch.setenv("OBSLOG_SERVICE", "from-env")
        stream = io.StringIO()
        obslog.configure(stream=stream, service="from-code")
        logging.getLogger("t.env.svc").info("x")
        assert "from-env" == parse(stream)[0]["service"]

    def test_format_override(self, monkeypatch):
        """OBSLOG_FORMAT=console switches the output to the console rendering."""
        monkeypatch.setenv("OBSLOG_FORMAT", "CONSOLE")
        stream = io.StringIO()
        obslog.configure(stream=stream, fmt="json")
        logging.getLogger("t.env.fmt").info("readable")
        text = stream.getvalue()
        assert "readable" in text
        with pytest.raises(ValueError):
            json.loads(text)

    def test_overrides_apply_to_dict_config(self, monkeypatch):
        """The environment overrides apply to dict_config too."""
        monkeypatch.setenv("OBSLOG_LEVEL", "warning")
        monkeypatch.setenv("OBSLOG_FORMAT", "console")
        config = obslog.dict_config(level="DEBUG", fmt="json")
        assert "WARNING" == config["root"]["level"]
        assert "console" == config["formatters"]["obslog"]["settings"]["fmt"]

    def test_invalid_env_value_is_reported(self, monkeypatch):
        """An invalid OBSLOG_LEVEL fails configure() with a ValueError, not later while logging."""
        monkeypatch.setenv("OBSLOG_LEVEL", "chatty")
        with pytest.raises(ValueError, match="chatty"):
            obslog.configure(stream=io.StringIO())


class TestConsoleFormat:
    def test_same_fields_as_json(self):
        """The console rendering of a record shows every field of its JSON line."""
        json_stream, console_stream = io.StringIO(), io.StringIO()
        log = logging.getLogger("t.console")
        log.propagate = False
        try:
            obslog.configure(service="shop", env="dev", stream=io.StringIO())
            for fmt, stream in (("json", json_stream), ("console", console_stream)):
                h = logging.StreamHandler(stream)
                h.setFormatter(obslog.JsonFormatter() if fmt == "json" else obslog.ConsoleFormatter())
                h.addFilter(obslog.ContextFilter())
                log.addHandler(h)
            with obslog.request_scope("GET", "/c", request_id="cons1"):
                with obslog.timed("db_query"):
                    pass
                log.info("shown", extra={"order_count": 3})
        finally:
            for h in log.handlers[:]:
                log.removeHandler(h)
            log.propagate = True
        (line,) = parse(json_stream)
        text = console_stream.getvalue()
        assert 1 == len(text.strip().splitlines())
        for key in ("service", "env", "pid", "request_id", "method", "route", "order_count", "timings"):
            assert f"{key}=" in text, key
        for value in ("shown", "t.console", "info", "cons1", "/c", "db_query="):
            assert value in text, value
        assert line["timestamp"][:19] in text

    def test_configure_console_with_exception(self):
        """configure(fmt="console") renders structlog and stdlib lines, exceptions as a block."""
        stream = io.StringIO()
        obslog.configure(fmt="console", stream=stream)
        log = logging.getLogger("t.console.exc")
        try:
            raise ValueError("bad value")
        except ValueError:
            log.exception("failed")
        structlog.get_logger("t.console.sl").info("from structlog", k=1)
        text = stream.getvalue()
        assert "failed" in text
        assert "Traceback" in text
        assert "ValueError: bad value" in text
        assert "from structlog" in text
        assert "k=1" in text
        assert "\x1b[" not in text  # not a terminal: no colours


class TestFilteredOutCalls:
    def _logger(self, name: str) -> tuple[logging.Logger, io.StringIO]:
        stream = io.StringIO()
        obslog.configure(stream=stream, level="INFO")
        return logging.getLogger(f"t.filtered.{name}"), stream

    def test_below_level_is_a_nop_then_logs_after_set_level(self):
        """A filtered-out debug call is a no-op; setLevel(DEBUG) brings the real method back."""
        log, stream = self._logger("setlevel")
        log.debug("dropped", extra={"k": 1})
        assert "" == stream.getvalue()

        log.setLevel(logging.DEBUG)
        log.debug("kept")

        assert ["kept"] == [json.loads(text)["event"] for text in stream.getvalue().splitlines()]

    def test_parent_level_change_is_seen(self):
        """A level set on a parent (any logger's setLevel clears the caches) is honoured at once."""
        log, stream = self._logger("parent.child")
        parent = logging.getLogger("t.filtered.parent")
        log.info("one")
        parent.setLevel(logging.WARNING)
        log.info("two")
        parent.setLevel(logging.NOTSET)
        log.info("three")
        parent.setLevel(logging.DEBUG)
        log.debug("four")

        events = [json.loads(text)["event"] for text in stream.getvalue().splitlines()]
        assert ["one", "three", "four"] == events

    def test_logging_disable_and_back(self):
        """logging.disable() silences and logging.disable(NOTSET) restores an ObslogLogger."""
        log, stream = self._logger("disable")
        log.error("before")
        logging.disable(logging.ERROR)
        try:
            log.error("silenced")
            log.exception("silenced too")
        finally:
            logging.disable(logging.NOTSET)
        log.error("after")

        events = [json.loads(text)["event"] for text in stream.getvalue().splitlines()]
        assert ["before", "after"] == events

    def test_disabled_call_accepts_any_arguments(self):
        """A filtered-out call takes what Logger.debug takes, args and unknown keywords alike."""
        log, _ = self._logger("args")

        assert None is log.debug("%s %s", 1, 2, extra={"a": 1}, stack_info=True, stacklevel=2)
        assert None is log.debug("x", unknown=1)

    def test_subclass_methods_are_kept(self):
        """A subclass's own level method is never replaced by the no-op."""
        calls = []

        class Counting(obslog.ObslogLogger):
            def debug(self, msg, *args, **kwargs):
                calls.append(msg)
                super().debug(msg, *args, **kwargs)

        obslog.configure(stream=io.StringIO(), level="INFO")
        log = Counting("t.filtered.subclass")
        log.parent = logging.getLogger()
        log.debug("a")
        log.debug("b")

        assert ["a", "b"] == calls


class TestExtraAfterMakeRecord:
    def test_late_attributes_of_logging_and_obslog_are_not_fields(self):
        """message/asctime (a logging.Formatter's) and the captured context are never fields."""
        obslog.configure(stream=io.StringIO())
        log = logging.getLogger("t.extra.late")
        log.propagate = False
        text = io.StringIO()
        plain = logging.StreamHandler(text)
        plain.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(obslog.JsonFormatter())
        handler.addFilter(obslog.ContextFilter())
        log.handlers[:] = [plain, handler]

        log.info("hi", extra={"order_id": 7})

        line = json.loads(stream.getvalue())
        assert (7, set()) == (line["order_id"], {"message", "asctime", "_obslog"} & set(line))

    def test_attribute_set_by_a_filter_after_make_record_is_written(self):
        """A filter's attribute set after makeRecord reaches the line beside the extra fields."""
        obslog.configure(stream=io.StringIO())
        log = logging.getLogger("t.extra.filter")
        log.propagate = False
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(obslog.JsonFormatter())

        def tag(record):
            record.tenant = "acme"
            return True

        handler.addFilter(tag)
        log.handlers[:] = [handler]

        log.info("hi", extra={"order_id": 7})

        line = json.loads(stream.getvalue())
        assert (7, "acme") == (line["order_id"], line["tenant"])

    def teardown_method(self):
        """Remove the handlers the tests put on their loggers."""
        for name in ("t.extra.late", "t.extra.filter"):
            logging.getLogger(name).handlers.clear()
