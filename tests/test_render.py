"""
Rendering: compact JSON, bad values, one line per record, exceptions, timestamps, orjson and the
standard-library encoder, formatter failures (obslog._render, obslog._json, obslog.JsonFormatter).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import io
import json
import logging
import re

import pytest
import structlog

from hypothesis import given, settings
from hypothesis import strategies as st

import obslog

from obslog import _json
from obslog._render import format_timestamp


@pytest.fixture(name="encoder", params=["orjson", "stdlib"])
def _encoder(request) -> str:
    """Run the test with each JSON encoder."""
    _json.use_orjson(request.param == "orjson")
    return request.param


def parse(stream: io.StringIO) -> list[dict]:
    # Split on "\n" only, so that a raw U+2028 would show up as a broken line, not a split one.
    return [json.loads(raw) for raw in stream.getvalue().split("\n") if raw]


@pytest.fixture(name="emit")
def _emit(sio):
    """Hand records straight to obslog's handler.

    pytest's own capture handlers sit on every logger and raise on a bad record, so a record meant to
    break formatting bypasses the logger tree (the handler and formatter are still the real ones).
    """
    handler = next(h for h in logging.getLogger().handlers if getattr(h, "_obslog_handler", False))

    def emit(level: int, msg: object, *args: object) -> None:
        handler.handle(logging.LogRecord("t.fail", level, __file__, 1, msg, args, None))

    return emit


def strict_loads(text: str) -> object:
    """json.loads that rejects NaN and Infinity, as Loki's parser does."""

    def reject(token: str) -> None:
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=reject)


def utf8_stream() -> tuple[io.BytesIO, io.TextIOWrapper]:
    """A text stream that encodes strictly as UTF-8, like a real file or pipe."""
    raw = io.BytesIO()
    return raw, io.TextIOWrapper(raw, encoding="utf-8", errors="strict", write_through=True)


class Unencodable:
    def __repr__(self) -> str:
        return "<Unencodable 42>"


class BrokenRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    __str__ = __repr__


class BrokenStr:
    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        return "<BrokenStr>"


def make_record(msg="event", args=(), **extra) -> logging.LogRecord:
    record = logging.LogRecord("t.rec", logging.INFO, __file__, 1, msg, args, None)
    record.created = 1795000801.5
    record.__dict__.update(extra)
    return record


class TestCompactJson:
    def test_no_spaces_between_tokens(self, sio, encoder):
        """Lines have no space after ':' or ',', so |= `"event":"request"` matches in Loki."""
        with obslog.request_scope("GET", "/x"), obslog.timed("db_query"):
            logging.getLogger("t.compact").info("hello", extra={"nested": {"a": [1, 2]}})
        raw = sio.getvalue().split("\n")[:-1]
        assert '"event":"request"' in raw[1]
        for text in raw:
            assert json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False) == text

    def test_non_ascii_kept(self, sio, encoder):
        """Non-ASCII text is written as UTF-8, not as \\u escapes."""
        logging.getLogger("t.utf8").info("café ✓", extra={"city": "Zürich"})
        raw = sio.getvalue()
        assert '"event":"café ✓"' in raw
        assert '"city":"Zürich"' in raw


class TestBadValues:
    def test_nan_and_infinity_become_null(self, sio, encoder):
        """nan, inf and -inf anywhere become null; the line never contains NaN or Infinity."""
        nan, inf = float("nan"), float("inf")
        logging.getLogger("t.nan").info("x", extra={"a": nan, "b": inf, "c": -inf, "d": {"e": [nan, 1.5]}})
        structlog.get_logger("t.nan").info("y", a=nan, d=(inf,))
        raw = sio.getvalue()
        assert "NaN" not in raw and "Infinity" not in raw
        std, sl = parse(sio)
        assert (None, None, None, {"e": [None, 1.5]}) == (std["a"], std["b"], std["c"], std["d"])
        assert (None, [None]) == (sl["a"], sl["d"])

    def test_unencodable_values_use_repr(self, sio, encoder):
        """Objects JSON cannot encode are written as their repr; sets as lists; never raising."""
        logging.getLogger("t.repr").info(
            "x", extra={"obj": Unencodable(), "broken": BrokenRepr(), "s": {3}, "c": 1 + 2j}
        )
        (line,) = parse(sio)
        assert ("<Unencodable 42>", [3], "(1+2j)") == (line["obj"], line["s"], line["c"])
        assert line["broken"].startswith("<unrepresentable BrokenRepr")

    def test_big_int(self, sio, encoder):
        """An integer beyond 64 bits is written as a number, not as a degraded line."""
        before = obslog.stats()["render_errors"]
        logging.getLogger("t.bigint").info("x", extra={"big": 2**70})
        (line,) = parse(sio)
        assert (2**70, before) == (line["big"], obslog.stats()["render_errors"])

    def test_lone_surrogates(self, encoder):
        """Lone surrogates in message, value and key still give a valid line on a strict UTF-8 stream."""
        raw, stream = utf8_stream()
        obslog.configure(stream=stream)
        logging.getLogger("t.sur").info("bad \ud800 text", extra={"v": "x\udc80y", "k\ud83d": 1})
        structlog.get_logger("t.sur").info("sl \udfff", v="\ud800")
        lines = [json.loads(text) for text in raw.getvalue().decode("utf-8").splitlines()]
        assert 2 == len(lines)
        assert "\\ud800" in lines[0]["event"]
        assert "\\udc80" in lines[0]["v"]

    def test_invalid_utf8_bytes(self, sio, encoder):
        """Invalid UTF-8 bytes are written with backslash escapes."""
        logging.getLogger("t.bytes").info("x", extra={"raw": b"ok\xff\xfe", "ba": bytearray(b"\x80")})
        (line,) = parse(sio)
        assert ("ok\\xff\\xfe", "\\x80") == (line["raw"], line["ba"])

    def test_deeply_nested(self, sio, encoder):
        """Absurdly deep nesting gives a valid line, cut off with "<too deep>"."""
        deep: list = []
        cur = deep
        for _ in range(100_000):
            cur.append([])
            cur = cur[0]
        logging.getLogger("t.deep").info("x", extra={"deep": deep, "after": 1})
        (line,) = parse(sio)
        assert 1 == line["after"]
        assert "<too deep>" in sio.getvalue()

    def test_cyclic(self, sio, encoder):
        """Cyclic dicts and lists give a valid line with "<cycle>" where the cycle closes."""
        d: dict = {"name": "d"}
        d["self"] = d
        lst: list = [1]
        lst.append(lst)
        logging.getLogger("t.cycle").info("x", extra={"d": d, "l": lst})
        (line,) = parse(sio)
        assert ({"name": "d", "self": "<cycle>"}, [1, "<cycle>"]) == (line["d"], line["l"])

    def test_non_string_keys(self, sio, encoder):
        """Dict keys that are not strings are written as strings."""
        logging.getLogger("t.keys").info("x", extra={"m": {1: "a", (2, 3): "b"}})
        (line,) = parse(sio)
        assert {"1": "a", "(2, 3)": "b"} == line["m"]

    @pytest.mark.parametrize("message", ["a\nb", "a\rb", "a\r\nb", "line\u2028sep", "tab\there"])
    def test_newlines_stay_one_line(self, sio, encoder, message):
        """Messages with \\n or \\r stay on one line, escaped inside the JSON string."""
        logging.getLogger("t.nl").info(message, extra={"v": message})
        structlog.get_logger("t.nl").info(message, v=message)
        raw = sio.getvalue()
        assert 2 == raw.count("\n")
        assert "\r" not in raw
        for line in parse(sio):
            assert (message, message) == (line["event"], line["v"])


class TestExceptions:
    def test_exception_fields_on_one_line(self, sio, encoder):
        """An exception becomes exc_type, exc_message and stack on one line."""

        class OrderError(Exception):
            pass

        try:
            try:
                raise KeyError("inner")
            except KeyError as inner:
                raise OrderError("order 7 failed\nsecond line") from inner
        except OrderError:
            logging.getLogger("t.exc").exception("failed")
        raw = sio.getvalue()
        assert 1 == raw.count("\n")
        (line,) = parse(sio)
        assert f"{__name__}.TestExceptions.test_exception_fields_on_one_line.<locals>.OrderError" == line["exc_type"]
        assert "order 7 failed\nsecond line" == line["exc_message"]
        assert "KeyError: 'inner'" in line["stack"]
        assert "The above exception was the direct cause" in line["stack"]
        assert "error" == line["level"]

    def test_exception_with_broken_str(self, sio, encoder):
        """An exception whose __str__ raises still gives the exception fields."""

        class Weird(Exception):
            def __str__(self):
                raise RuntimeError("no str")

        try:
            raise Weird
        except Weird:
            logging.getLogger("t.exc2").exception("failed")
        (line,) = parse(sio)
        assert line["exc_type"].endswith("Weird")
        assert "failed" == line["event"]

    def test_stack_info(self, sio, encoder):
        """stack_info=True adds the stack as one field."""
        logging.getLogger("t.stack").info("where", stack_info=True)
        (line,) = parse(sio)
        assert line["stack_info"].startswith("Stack (most recent call last):")


class TestTimestamp:
    def test_format(self, sio):
        """Timestamps are RFC 3339 UTC with microseconds and a Z."""
        logging.getLogger("t.ts").info("x")
        (line,) = parse(sio)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", line["timestamp"])

    @pytest.mark.parametrize(
        ("created", "expected"),
        [
            (0.0, "1970-01-01T00:00:00.000000Z"),
            (1795000801.5, "2026-11-18T11:20:01.500000Z"),
            (1795000801.25, "2026-11-18T11:20:01.250000Z"),
            (1795000802.125, "2026-11-18T11:20:02.125000Z"),
            (1795000801.0, "2026-11-18T11:20:01.000000Z"),
            (951825600.5, "2000-02-29T12:00:00.500000Z"),
        ],
    )
    def test_known_values(self, created, expected):
        """format_timestamp gives the UTC time of the epoch value, whatever second was cached before."""
        assert expected == format_timestamp(created)
        whole = dt.datetime.fromtimestamp(int(created), dt.timezone.utc)
        assert whole.strftime("%Y-%m-%dT%H:%M:%S") == expected[:19]

    def test_matches_record_created(self, sio):
        """The line's timestamp is the record's creation time in UTC."""
        record = make_record()
        text = obslog.JsonFormatter().format(record)
        expected = dt.datetime.fromtimestamp(1795000801.5, dt.timezone.utc)
        assert expected.strftime("%Y-%m-%dT%H:%M:%S.%fZ") == json.loads(text)["timestamp"]


class TestEncoders:
    VALUES = [
        {"a": 1, "b": [1.5, True, None], "c": "é\n\"q\""},
        {"nan": float("nan"), "inf": [float("-inf")]},
        {"obj": Unencodable(), "set": {1}, "bytes": b"\xff"},
        {"sur": "\ud800", "k\udc00": 1},
        {(1, 2): 3, 4: 5},
        {"big": 2**70},
        {True: 1, None: 2},
    ]

    @pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
    def test_same_output_with_and_without_orjson(self, value):
        """obslog's encoder renders the same text with orjson and with the standard library."""
        _json.use_orjson(True)
        fast = _json.dumps(value)
        _json.use_orjson(False)
        slow = _json.dumps(value)
        assert fast == slow
        json.loads(slow)
        slow.encode("utf-8")

    def test_same_line_with_and_without_orjson(self):
        """The same record renders to the same line with both encoders."""
        obslog.configure(service="shop", stream=io.StringIO())
        cyc: dict = {}
        cyc["c"] = cyc
        with obslog.request_scope("GET", "/x", request_id="rid"):
            with obslog.timed("db_query"):
                pass
            record = make_record(
                "msg %s", ("é",), nested={"x": [1, {"y": float("nan")}]}, obj=Unencodable(), cyc=cyc
            )
            formatter = obslog.JsonFormatter()
            _json.use_orjson(True)
            fast = formatter.format(record)
            _json.use_orjson(False)
            slow = formatter.format(record)
        assert fast == slow
        assert "msg é" == json.loads(fast)["event"]

    def test_datetime_and_uuid_same_with_and_without_orjson(self):
        """datetime and UUID values render the same with orjson and with the standard library."""
        import uuid

        value = {"at": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc), "id": uuid.UUID(int=1)}
        _json.use_orjson(True)
        fast = _json.dumps(value)
        _json.use_orjson(False)
        assert fast == _json.dumps(value)

    @settings(max_examples=150, deadline=None, database=None)
    @given(
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(max_size=8),
            lambda inner: st.lists(inner, max_size=4)
            | st.dictionaries(st.text(max_size=6) | st.integers(), inner, max_size=4),
            max_leaves=20,
        )
    )
    def test_any_value_gives_one_valid_line(self, value):
        """Any mix of values gives one valid UTF-8 JSON line, the same data with either encoder."""
        _json.use_orjson(True)
        fast = _json.dumps(value)
        _json.use_orjson(False)
        slow = _json.dumps(value)
        for text in (fast, slow):
            text.encode("utf-8")
            assert "\n" not in text and "\r" not in text
        assert strict_loads(fast) == strict_loads(slow)

    def test_use_orjson_switch(self):
        """use_orjson(False) really switches to the standard-library encoder and back."""
        _json.use_orjson(False)
        assert _json.dumps is _json._dumps_stdlib
        _json.use_orjson(True)
        assert _json.dumps is _json._dumps_orjson


class TestFormatterFailure:
    def test_bad_percent_args(self, sio, emit, capsys):
        """A record whose message cannot be %-formatted is written degraded, counted, never raised."""
        before = obslog.stats()["render_errors"]
        emit(logging.INFO, "%d items and %s", "x")
        assert 1 == obslog.stats()["render_errors"] - before
        (line,) = parse(sio)
        assert ("info", "t.fail", "shop") == (line["level"], line["logger"], line["service"])
        assert "%d items and %s" in line["event"]
        assert line["obslog_error"].startswith("TypeError")
        assert "" == capsys.readouterr().err

    def test_message_with_broken_str(self, sio, emit, capsys):
        """A message object whose __str__ raises is written degraded (using its repr) and counted."""
        before = obslog.stats()["render_errors"]
        emit(logging.WARNING, BrokenStr())
        assert 1 == obslog.stats()["render_errors"] - before
        (line,) = parse(sio)
        assert ("<BrokenStr>", "warning") == (line["event"], line["level"])
        assert "" == capsys.readouterr().err

    def test_message_with_broken_str_and_repr(self, sio, emit):
        """A message whose __str__ and __repr__ both raise still gives a degraded line."""
        emit(logging.ERROR, BrokenRepr())
        (line,) = parse(sio)
        assert "error" == line["level"]
        assert "obslog_error" in line

    def test_extra_value_with_broken_str(self, sio):
        """An extra value whose __str__ raises is not a failure: its repr is written."""
        before = obslog.stats()["render_errors"]
        logging.getLogger("t.fail4").info("x", extra={"v": BrokenStr()})
        (line,) = parse(sio)
        assert ("<BrokenStr>", before) == (line["v"], obslog.stats()["render_errors"])

    def test_format_directly_never_raises(self):
        """JsonFormatter.format returns a JSON line for a broken record instead of raising."""
        text = obslog.JsonFormatter().format(make_record("%s %s", ("only one",)))
        line = json.loads(text)
        assert "obslog_error" in line
        assert "t.rec" == line["logger"]


class Color(enum.IntEnum):
    RED = 1


@dataclasses.dataclass
class Point:
    x: int
    y: int


class TestFallbackEncoder:
    """Finding: the fallback encoder turned good lines into degraded ones (issue 8, item 2)."""

    def cyc(self) -> list:
        """A list that contains itself."""
        lst: list = [1]
        lst.append(lst)
        return lst

    @pytest.mark.parametrize(
        ("trigger", "expected"),
        [
            ("\ud800", "\\ud800"),
            (float("nan"), None),
            ("cycle", [1, "<cycle>"]),
        ],
        ids=["surrogate", "nan", "cycle"],
    )
    def test_rich_values_beside_a_fallback_trigger(self, sio, encoder, trigger, expected):
        """A set, frozenset, IntEnum, dataclass beside a surrogate, NaN or cycle keep the line."""
        trigger = self.cyc() if trigger == "cycle" else trigger
        before = obslog.stats()["render_errors"]
        logging.getLogger("t.fb").info(
            "x",
            extra={
                "s": {1},
                "fs": frozenset(),
                "e": Color.RED,
                "p": Point(1, 2),
                "t": trigger,
                "big": 2**70,
            },
        )
        (line,) = parse(sio)
        assert "obslog_error" not in line
        assert ([1], [], 1, {"x": 1, "y": 2}, expected, 2**70) == (
            line["s"], line["fs"], line["e"], line["p"], line["t"], line["big"]
        )
        assert before == obslog.stats()["render_errors"]

    def test_hypothesis_counterexample(self, sio, encoder):
        """The shape Hypothesis found, {"name": [[1, <cycle>], frozenset()]}, renders normally."""
        logging.getLogger("t.fb").info("x", extra={"names": [self.cyc(), frozenset()]})
        (line,) = parse(sio)
        assert [[1, "<cycle>"], []] == line["names"]

    def test_sanitize_converts_defaults(self):
        """sanitize() sanitizes what the default hook returns instead of calling it a string."""
        assert [[1], 1, {"x": 1, "y": None}] == _json.sanitize(
            [{1}, Color.RED, Point(1, float("nan"))]
        )


class TestDegradedLines:
    """Finding: degraded lines lost the ids (issue 8, item 3)."""

    def test_stdlib_bad_args_keep_ids_and_bound_fields(self, sio, emit):
        """log.info("%s %d", "a") in a scope: the degraded line keeps ids and bound fields."""
        with obslog.request_scope("GET", "/o", request_id="rid-1", trace_id="a" * 32) as s:
            s.bind(tenant="t1")
            emit(logging.INFO, "%s %d", "a")
        (line, _canonical) = parse(sio)
        assert line["obslog_error"].startswith("TypeError")
        assert ("rid-1", "a" * 32, "t1", "shop", "t.fail") == (
            line["request_id"], line["trace_id"], line["tenant"], line["service"], line["logger"]
        )
        assert "'%s %d' % ('a',)" == line["event"]

    def test_stdlib_degraded_keeps_extras(self, sio):
        """A record that fails to render keeps the extras that still render."""
        formatter = obslog.JsonFormatter()
        with obslog.request_scope("GET", "/o", request_id="rid-2"):
            text = formatter.format(make_record("%s %s", ("one",), order_id=7))
        line = json.loads(text)
        assert ("rid-2", 7) == (line["request_id"], line["order_id"])
        assert "obslog_error" in line

    def test_extra_replacing_captured_context_keeps_ids(self, sio):
        """An extra named like obslog's private capture key still gives a line with the ids."""
        with obslog.request_scope("GET", "/o", request_id="rid-4"):
            text = obslog.JsonFormatter().format(make_record(_obslog=[]))
        assert "rid-4" == json.loads(text)["request_id"]

    def test_structlog_failing_processor_keeps_ids(self, sio):
        """A structlog processor that raises: the degraded line keeps ids, bound and given keys."""

        def broken(logger, method, event_dict):
            raise ValueError("processor failed")

        obslog.configure(stream=sio, service="shop")
        structlog.configure(
            processors=[broken, obslog.processors.render_to_stdlib],
            wrapper_class=obslog.processors.BoundLogger,
            logger_factory=structlog.stdlib.LoggerFactory(),
        )
        with obslog.request_scope("GET", "/o", request_id="rid-3"):
            structlog.get_logger("t.sl").bind(user="u1").info("hello", order_id=9)
        line = parse(sio)[0]
        assert ("rid-3", "u1", 9, "hello") == (
            line["request_id"], line["user"], line["order_id"], line["event"]
        )
        assert "ValueError: processor failed" == line["obslog_error"]


class TestSmallerFindings:
    """Issue 8, item 11: a faked degraded marker, overwritten user keys, raw line separators."""

    def test_user_obslog_error_is_renamed(self, sio):
        """A user extra named obslog_error is kept as extra_obslog_error on both paths."""
        logging.getLogger("t.s").info("x", extra={"obslog_error": "fake"})
        structlog.get_logger("t.s").info("y", obslog_error="fake")
        for line in parse(sio):
            assert ("fake", False) == (line["extra_obslog_error"], "obslog_error" in line)

    def test_renamed_key_never_overwrites_a_user_key(self, sio):
        """extra_request_id given by the user stays; the clashing request_id goes further out."""
        with obslog.request_scope("GET", "/o", request_id="real"):
            logging.getLogger("t.s").info(
                "x", extra={"extra_request_id": "MINE", "request_id": "evil"}
            )
            structlog.get_logger("t.s").info("y", request_id="evil", extra_request_id="MINE")
        for line in parse(sio)[:2]:
            assert ("real", "MINE", "evil") == (
                line["request_id"], line["extra_request_id"], line["extra_extra_request_id"]
            )

    @pytest.mark.parametrize("sep", ["\u2028", "\u2029", "\x85"])
    def test_line_separators_escaped(self, sio, encoder, sep):
        """U+2028, U+2029 and U+0085 are written escaped: one line for str.splitlines()."""
        logging.getLogger("t.s").info(f"a{sep}b", extra={"v": sep})
        structlog.get_logger("t.s").info(f"a{sep}b", v=sep)
        raw = sio.getvalue()
        assert (2, False) == (len(raw.splitlines()), sep in raw)
        escape = f"\\u{ord(sep):04x}"
        assert 4 == raw.count(escape)
        for line in (json.loads(text) for text in raw.splitlines()):
            assert (f"a{sep}b", sep) == (line["event"], line["v"])
