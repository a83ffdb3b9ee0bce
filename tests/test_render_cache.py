"""
What build() decides once and reuses (the start of a line, the extras' plain keys) follows every
change that would change a line: configuration, pid and context (obslog._render).
"""

from __future__ import annotations

import io
import json
import logging

import pytest

import obslog

from obslog._render import build


@pytest.fixture(name="line_of")
def _line_of():
    """Return a function that logs one line with *extra* and returns it parsed."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(obslog.JsonFormatter())
    logger = logging.getLogger("tests.render_cache")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)

    def line_of(**extra):
        stream.seek(0)
        stream.truncate()
        logger.info("hello", extra=extra)
        return json.loads(stream.getvalue())

    yield line_of
    logger.handlers.clear()


def test_key_seen_as_plain_is_redacted_once_configured_secret(line_of):
    """A key written as is before configure(redact_keys=[it]) is redacted on the next line."""
    obslog.configure(service="a", stream=io.StringIO())
    assert "visible" == line_of(order_note="visible")["order_note"]
    obslog.configure(service="a", stream=io.StringIO(), redact_keys=["order_note"])
    assert "[REDACTED]" == line_of(order_note="visible")["order_note"]


def test_plain_key_clashing_with_context_is_renamed(line_of):
    """A key seen as plain is still renamed when the scope binds the same name."""
    obslog.configure(service="a", stream=io.StringIO())
    assert 1 == line_of(job=1)["job"]
    with obslog.scope("task"):
        obslog.bind(job="bound")
        line = line_of(job=1)
    assert ("bound", 1) == (line["job"], line["extra_job"])


def test_static_fields_follow_configure(line_of):
    """A new service name is on the next line, not the cached one."""
    obslog.configure(service="a", stream=io.StringIO())
    assert "a" == line_of()["service"]
    obslog.configure(service="b", stream=io.StringIO())
    assert "b" == line_of()["service"]


def test_context_field_named_like_a_line_field_wins():
    """A context that sets "event" keeps its value and position, as the dict display did."""
    line = build(0.0, "info", "x", "message", 7, {"event": "from ctx", "a": 1}, None, None)
    assert ["timestamp", "level", "logger", "event", *list(line)[4:]] == list(line)
    assert ("from ctx", 7) == (line["event"], line["pid"])


def test_pid_follows_the_argument():
    """Two pids with the same context give two lines with their own pid."""
    ctx = {"request_id": "r"}
    assert (1, 2) == (
        build(0.0, "info", "x", "m", 1, ctx, None, None)["pid"],
        build(0.0, "info", "x", "m", 2, ctx, None, None)["pid"],
    )
