"""
Request ids, W3C traceparent parsing and OpenTelemetry span ids on lines (obslog._ids).
"""

from __future__ import annotations

import logging
import re

import pytest
import structlog

import obslog

from obslog import _ids
from obslog._ids import new_request_id, parse_traceparent, valid_request_id


TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


class TestNewRequestId:
    def test_format_and_uniqueness(self):
        """new_request_id gives 32 lower-case hex characters, different each time."""
        ids = {new_request_id() for _ in range(1000)}
        assert 1000 == len(ids)
        assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


class TestValidRequestId:
    @pytest.mark.parametrize(
        "value",
        ["3f2a9c", "edge-0001", "550e8400-e29b-41d4-a716-446655440000", "Root=1-5759e988-bd862e3f",
         "x" * 128, "!~", "01ARZ3NDEKTSV4RRFFQ69G5FAV"],
    )
    def test_accepted(self, value):
        """Printable ASCII without spaces, 1 to 128 characters, is accepted as is."""
        assert value == valid_request_id(value)

    def test_bytes_accepted(self):
        """ASCII bytes (a raw header) are accepted and returned as str."""
        assert "abc-1" == valid_request_id(b"abc-1")

    @pytest.mark.parametrize(
        "value",
        [None, "", " ", "has space", "tab\tid", "evil\r\nheader", "x" * 129, "caf\u00e9", "nul\x00",
         "del\x7f", b"\xff\xfe", b"", 123, ["a"]],
    )
    def test_rejected(self, value):
        """Empty, too long, spaces, control or non-ASCII characters and non-strings give None."""
        assert None is valid_request_id(value)


class TestParseTraceparent:
    def test_valid(self):
        """A W3C traceparent gives (trace_id, span_id)."""
        assert (TRACE, SPAN) == parse_traceparent(f"00-{TRACE}-{SPAN}-01")

    def test_bytes_and_surrounding_whitespace(self):
        """Bytes are accepted; surrounding whitespace is ignored."""
        assert (TRACE, SPAN) == parse_traceparent(f"  00-{TRACE}-{SPAN}-00 ".encode())

    def test_future_version_may_carry_more(self):
        """A later version may append fields; they are ignored."""
        assert (TRACE, SPAN) == parse_traceparent(f"01-{TRACE}-{SPAN}-01-extra")

    @pytest.mark.parametrize(
        "value",
        [
            None,
            "",
            "garbage",
            f"00-{TRACE}-{SPAN}",  # no flags
            f"00-{TRACE}-{SPAN}-01-extra",  # version 00 takes no extra fields
            f"ff-{TRACE}-{SPAN}-01",  # version ff is invalid
            f"00-{'0' * 32}-{SPAN}-01",  # all-zero trace id
            f"00-{TRACE}-{'0' * 16}-01",  # all-zero span id
            f"00-{TRACE.upper()}-{SPAN}-01",  # upper-case hex
            f"00-{TRACE[:-1]}-{SPAN}-01",  # short trace id
            f"00-{TRACE}-{SPAN}x-01",
            f"0-{TRACE}-{SPAN}-01",
            f"01-{TRACE}-{SPAN}-01-" + "x" * 600,  # absurdly long
            b"\xff" * 55,
            42,
        ],
    )
    def test_malformed(self, value):
        """Malformed values give None, never an exception."""
        assert None is parse_traceparent(value)


@pytest.fixture(name="tracer")
def _tracer(monkeypatch):
    """A tracer of a real OpenTelemetry SDK TracerProvider, installed as the global provider."""
    sdk = pytest.importorskip("opentelemetry.sdk.trace")
    from opentelemetry import trace

    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(sdk.TracerProvider())
    # obslog looks for an SDK provider at most once a second; make it look now.
    monkeypatch.setattr(_ids, "_otel_checked", -1e9, raising=False)
    return trace.get_tracer("obslog-tests")


def hex_ids(span) -> tuple[str, str]:
    ctx = span.get_span_context()
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


class TestOpenTelemetry:
    def test_active_span_ids_on_lines(self, captured, tracer):
        """Inside an active span, stdlib and structlog lines carry its trace_id and span_id."""
        with tracer.start_as_current_span("work") as span:
            logging.getLogger("t.otel").info("in span")
            structlog.get_logger("t.otel").info("in span")
        for line in captured:
            assert hex_ids(span) == (line["trace_id"], line["span_id"])

    def test_scope_takes_span_ids(self, captured, tracer):
        """A scope entered inside a span takes its ids, and its canonical line carries them."""
        with tracer.start_as_current_span("request") as span, obslog.request_scope("GET", "/o") as req:
            pass
        assert hex_ids(span) == (req.trace_id, req.span_id)
        (line,) = captured
        assert hex_ids(span) == (line["trace_id"], line["span_id"])

    def test_child_span_inside_scope(self, captured, tracer):
        """A line logged in a child span inside a scope carries the child's span_id, same trace."""
        with tracer.start_as_current_span("request") as parent, obslog.request_scope():
            with tracer.start_as_current_span("db") as child:
                logging.getLogger("t.otel.child").info("in child")
            logging.getLogger("t.otel.child").info("back in parent")
        in_child, in_parent, _canonical = captured
        assert hex_ids(child) == (in_child["trace_id"], in_child["span_id"])
        assert hex_ids(parent) == (in_parent["trace_id"], in_parent["span_id"])
        assert in_child["trace_id"] == in_parent["trace_id"]

    def test_no_active_span_no_ids(self, captured, tracer):
        """Without an active span (SDK installed), lines have no trace_id or span_id."""
        logging.getLogger("t.otel.none").info("no span")
        with obslog.request_scope():
            pass
        for line in captured:
            assert "trace_id" not in line
            assert "span_id" not in line

    def test_explicit_ids_without_span(self, captured, tracer):
        """Ids from an incoming traceparent are used when no span is active."""
        trace_id, span_id = parse_traceparent(f"00-{TRACE}-{SPAN}-01")
        with obslog.request_scope(trace_id=trace_id, span_id=span_id):
            logging.getLogger("t.otel.tp").info("x")
        for line in captured:
            assert (TRACE, SPAN) == (line["trace_id"], line["span_id"])

    def test_current_otel_ids(self, tracer):
        """current_otel_ids() is the active span's ids, None outside a span."""
        assert None is _ids.current_otel_ids()
        with tracer.start_as_current_span("x") as span:
            assert hex_ids(span) == _ids.current_otel_ids()
