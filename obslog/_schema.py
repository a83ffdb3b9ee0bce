"""
The line schema's field names, in one place.

The renderer, the reserved-key logic of both logging paths, the scope's bound fields, the Loki
handler and the rule generator all read these names from here, so a field is named once.
"""

from __future__ import annotations

import logging


__all__ = [
    "BOUND_RESERVED",
    "CANONICAL_FIELDS",
    "DURATION_MS",
    "ENV",
    "ERROR",
    "EVENT",
    "EXC_MESSAGE",
    "EXC_TYPE",
    "EXTRA_PREFIX",
    "ID_FIELDS",
    "LEVEL",
    "LINE_FIELDS",
    "LOGGER",
    "LOG_RECORD_KEYS",
    "OUTCOME",
    "PER_RECORD_FIELDS",
    "PID",
    "PROTECTED",
    "REQUEST_ID",
    "SAMPLE_RATE",
    "SERVICE",
    "SPAN_ID",
    "STACK",
    "STACK_INFO",
    "STATIC_FIELDS",
    "STATUS",
    "TIMESTAMP",
    "TIMINGS",
    "TRACE_ID",
    "VERSION",
]

# The fields every line may carry, in the order they are written.
TIMESTAMP = "timestamp"
LEVEL = "level"
LOGGER = "logger"
EVENT = "event"
SERVICE = "service"
ENV = "env"
VERSION = "version"
PID = "pid"
REQUEST_ID = "request_id"
TRACE_ID = "trace_id"
SPAN_ID = "span_id"
TIMINGS = "timings"
EXC_TYPE = "exc_type"
EXC_MESSAGE = "exc_message"
STACK = "stack"
STACK_INFO = "stack_info"
#: Set only on a degraded line: what went wrong while rendering it.
ERROR = "obslog_error"

# The canonical line's own fields (a scope's summary).
DURATION_MS = "duration_ms"
OUTCOME = "outcome"
STATUS = "status"
SAMPLE_RATE = "sample_rate"

#: A key that clashes with a reserved name is written as ``extra_<key>``.
EXTRA_PREFIX = "extra_"

#: The configured static fields (``obslog.configure(service=..., env=..., version=...)``).
STATIC_FIELDS = (SERVICE, ENV, VERSION)
#: The ids a scope puts on each of its lines.
ID_FIELDS = (REQUEST_ID, TRACE_ID, SPAN_ID)

#: Every schema field a line can have, in schema order.
LINE_FIELDS = (
    TIMESTAMP, LEVEL, LOGGER, EVENT, *STATIC_FIELDS, PID, *ID_FIELDS, TIMINGS,
    EXC_TYPE, EXC_MESSAGE, STACK, STACK_INFO, ERROR,
)  # fmt: skip

#: Names an ``extra`` key or a structlog keyword may not take (on both paths): kept as
#: ``extra_<key>`` instead.
PROTECTED = frozenset(LINE_FIELDS)

#: The canonical line's summary fields.
CANONICAL_FIELDS = frozenset({DURATION_MS, OUTCOME, STATUS, SAMPLE_RATE})

#: Names a scope's bound field may not take: the schema and the canonical line's own fields.
BOUND_RESERVED = PROTECTED | CANONICAL_FIELDS

#: Fields whose value changes on every line (never a Loki stream label).
PER_RECORD_FIELDS = frozenset(
    {
        TRACE_ID, SPAN_ID, REQUEST_ID, "task_id", PID, TIMESTAMP, DURATION_MS, EVENT, LOGGER,
        "message",
    }
)  # fmt: skip

#: Every attribute a bare ``logging.LogRecord`` has on this Python, plus the two that
#: ``Formatter.format`` adds: an ``extra`` key with one of these names would make the stdlib raise.
LOG_RECORD_KEYS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
}
