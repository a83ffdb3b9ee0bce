"""
Request and trace identifiers: generation, validation of incoming values, W3C ``traceparent``.

Incoming headers are untrusted.  A value that fails validation is never logged; callers generate a
fresh id instead.
"""

from __future__ import annotations

import os
import re
import time

from typing import Any


__all__ = [
    "current_otel_ids",
    "new_request_id",
    "parse_traceparent",
    "valid_request_id",
]

MAX_REQUEST_ID_LENGTH = 128

# Printable ASCII without space: UUIDs, nginx's 32-hex $request_id, ULIDs, AWS trace ids all pass.
_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,%d}" % MAX_REQUEST_ID_LENGTH)  # noqa: UP031 - regex braces
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


def _as_text(value: object) -> str | None:
    """Return a header value as ``str``: bytes must be ASCII; anything else is ``None``."""
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("ascii")
        except UnicodeDecodeError:
            return None
    return value if isinstance(value, str) else None


def new_request_id() -> str:
    """Return a new random request id: 32 lower-case hex characters."""
    return os.urandom(16).hex()


def valid_request_id(value: str | bytes | None) -> str | None:
    """
    Return *value* as a ``str`` if it is acceptable as a request id, else ``None``.

    Acceptable means 1 to 128 printable ASCII characters without spaces or control characters.

    >>> valid_request_id("3f2a9c")
    '3f2a9c'
    >>> valid_request_id("evil\\r\\nheader") is None
    True
    """
    value = _as_text(value)
    if value is None or _REQUEST_ID.fullmatch(value) is None:
        return None
    return value


def parse_traceparent(value: str | bytes | None) -> tuple[str, str] | None:
    """
    Return ``(trace_id, span_id)`` from a W3C ``traceparent`` header, or ``None`` if malformed.

    Version ``ff`` and all-zero ids are invalid (W3C Trace Context, section 3.2).  Version ``00``
    must not carry extra fields; later versions may.
    """
    value = _as_text(value)
    if value is None or len(value) > 512:
        return None
    match = _TRACEPARENT.fullmatch(value.strip())
    if match is None:
        return None
    version, trace_id, span_id, _flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return trace_id, span_id


def _load_otel() -> Any:
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    return trace


_otel_trace = _load_otel()
otel_available = _otel_trace is not None
_otel_sdk = False
_otel_checked = -1.0


def _otel_in_use() -> bool:
    # Spans carry ids only once an SDK TracerProvider is installed, which happens once per process;
    # until then look again at most once a second (get_tracer_provider() is not cheap).
    global _otel_sdk, _otel_checked
    if _otel_sdk:
        return True
    now = time.monotonic()
    if now - _otel_checked < 1.0:
        return False
    _otel_checked = now
    _otel_sdk = not isinstance(_otel_trace.get_tracer_provider(), _otel_trace.ProxyTracerProvider)
    return _otel_sdk


def current_otel_ids() -> tuple[str, str] | None:
    """Return ``(trace_id, span_id)`` of the active OpenTelemetry span, or ``None``.

    ``None`` as well while no OpenTelemetry SDK ``TracerProvider`` is installed.
    """
    if _otel_trace is None or not _otel_in_use():
        return None
    ctx = _otel_trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
