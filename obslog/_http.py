"""
Framework-neutral pieces shared by the HTTP integrations.

Every adapter (:mod:`obslog.asgi`, :mod:`obslog.wsgi`, :mod:`obslog.django`,
:mod:`obslog.aiohttp`) does the same five things per request, and does them here:
pick or reject the incoming request id, take trace ids from OpenTelemetry or a
``traceparent`` header, name the route (one shared value for unmatched
requests), set status and outcome on the scope, and echo the id back.
"""

from __future__ import annotations

import logging
import re

from dataclasses import dataclass
from typing import Any

from obslog._ids import (
    current_otel_ids,
    new_request_id,
    parse_traceparent,
    valid_request_id,
)


__all__ = [
    "ACCESS_LOGGERS",
    "CLIENT_CLOSED_STATUS",
    "DEFAULT_REQUEST_ID_HEADER",
    "FILTERED_ACCESS_LOGGERS",
    "UNMATCHED_ROUTE",
    "IncomingIds",
    "check_header_name",
    "close_scope",
    "mark_cancelled",
    "resolve_ids",
    "silence_access_logs",
    "wsgi_environ_key",
]

DEFAULT_REQUEST_ID_HEADER = "X-Request-ID"
"""Header read for an incoming request id and written back on the response."""

UNMATCHED_ROUTE = "<unmatched>"
"""The ``route`` of every request no route matched (404s, scanners, typos)."""

CLIENT_CLOSED_STATUS = 499
"""Status logged when the client went away before a response was started.

No response is sent; 499 is nginx's "client closed request", which log
tooling already knows.
"""

ACCESS_LOGGERS: dict[str, int] = {
    # Pure access loggers: every record is one line per request.
    "uvicorn.access": logging.CRITICAL + 1,
    "gunicorn.access": logging.CRITICAL + 1,
    "aiohttp.access": logging.CRITICAL + 1,
    # django.server logs 4xx as WARNING and 5xx as ERROR, still access lines.
    "django.server": logging.CRITICAL + 1,
}
"""Loggers that write only per-request access lines, and the level that mutes them."""

FILTERED_ACCESS_LOGGERS = ("werkzeug",)
"""Loggers that mix access lines with lines to keep: a filter drops only the access lines.

werkzeug writes its startup lines (``Running on http://...``) and the access lines on the same
logger, at the same level.
"""


class _WerkzeugAccessFilter(logging.Filter):
    """Drop werkzeug's per-request access lines (``"GET / HTTP/1.1" 200 -``), keep the rest."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.msg
        # WSGIRequestHandler.log_request: '<addr> - - [<date>] "%s" %s %s' with three args.
        return not (
            isinstance(msg, str)
            and msg.endswith(_WERKZEUG_ACCESS_SUFFIX)
            and isinstance(record.args, tuple)
            and len(record.args) == 3
        )


_WERKZEUG_ACCESS_SUFFIX = '] "%s" %s %s'

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}")


@dataclass(frozen=True)
class IncomingIds:
    """
    The ids a request scope opens with.

    Attributes:
        request_id: The validated incoming id, or a new one.
        trace_id: 32 hex characters, or ``None``.
        span_id: 16 hex characters, or ``None``.
        rejected: ``True`` when a request-id header was present but invalid
            (its value is dropped, never logged).
    """

    request_id: str
    trace_id: str | None
    span_id: str | None
    rejected: bool

    def scope_fields(self) -> dict[str, Any]:
        """
        Return the keyword arguments for :func:`obslog.request_scope`.

        Returns:
            ``request_id``, ``trace_id``, ``span_id`` and, for a rejected
            header, ``request_id_rejected=True``.
        """
        fields: dict[str, Any] = {
            "request_id": self.request_id,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
        }
        if self.rejected:
            fields["request_id_rejected"] = True
        return fields


def check_header_name(name: str) -> str:
    """
    Validate a configurable header name.

    Args:
        name: An HTTP header name such as ``"X-Request-ID"``.

    Returns:
        *name* unchanged.

    Raises:
        ValueError: *name* is not an RFC 9110 token of 1 to 64 characters.
    """
    if not isinstance(name, str) or _TOKEN.fullmatch(name) is None:
        msg = (
            f"invalid header name {name!r}: use 1 to 64 token characters "
            "(letters, digits and !#$%&'*+-.^_`|~), e.g. 'X-Request-ID'"
        )
        raise ValueError(msg)
    return name


def wsgi_environ_key(name: str) -> str:
    """
    Return the WSGI environ key of header *name* (``X-Request-ID`` -> ``HTTP_X_REQUEST_ID``).

    Args:
        name: A header name.

    Returns:
        The CGI-style key a WSGI server stores the header under.
    """
    return "HTTP_" + name.upper().replace("-", "_")


def resolve_ids(request_id: str | bytes | None, traceparent: str | bytes | None) -> IncomingIds:
    """
    Decide the ids of a new request from its (untrusted) headers.

    An incoming request id is kept only if
    :func:`obslog._ids.valid_request_id` accepts it; otherwise a new one is
    generated.  An active OpenTelemetry span wins over ``traceparent``; a
    malformed ``traceparent`` is ignored.

    Args:
        request_id: The request-id header value, ``None`` when absent.
        traceparent: The ``traceparent`` header value, ``None`` when absent.

    Returns:
        The ids to open the request scope with.
    """
    valid = valid_request_id(request_id)
    rejected = valid is None and request_id is not None
    ids = current_otel_ids()
    if ids is None:
        ids = parse_traceparent(traceparent)
    trace_id, span_id = ids if ids is not None else (None, None)
    return IncomingIds(valid or new_request_id(), trace_id, span_id, rejected)


def mark_cancelled(scope: Any, status: int | None) -> None:
    """
    Mark *scope* as ended by the client going away or by cancellation.

    Args:
        scope: The request scope.
        status: The status already sent, or ``None`` if the response never
            started (then :data:`CLIENT_CLOSED_STATUS` is logged).
    """
    _set_status(scope, status if status is not None else CLIENT_CLOSED_STATUS)
    scope.outcome = "cancelled"


def _set_status(scope: Any, status: object) -> None:
    # The status comes from the application: one outside 100-599 (or not an int) is left off the
    # line rather than raised into the server.
    try:
        scope.status = status
    except (TypeError, ValueError):
        scope.status = None


def close_scope(
    scope: Any, exc: BaseException | None, status: int | None, *, started: bool
) -> None:
    """
    Set status (and outcome for cancellation) on *scope* from how the request ended.

    The outcome of an ended scope follows the core rules (exception -> error,
    status >= 500 -> error, cancellation -> cancelled, else ok); this only
    supplies the HTTP status those rules read.

    Args:
        scope: The request scope, not yet exited.
        exc: The exception that ended the request, if any.
        status: The status sent, ``None`` if no response started.
        started: Whether response headers were sent.
    """
    if exc is not None and not isinstance(exc, Exception):
        mark_cancelled(scope, status if started else None)
    elif exc is not None and not started:
        scope.status = 500
    elif status is not None:
        _set_status(scope, status)


def silence_access_logs() -> None:
    """
    Mute the access logs of uvicorn, gunicorn, aiohttp, Django's dev server and werkzeug.

    With an obslog integration each request already ends with one canonical
    ``request`` line; the servers' own access lines would double it.  Each
    logger in :data:`ACCESS_LOGGERS` gets a level above anything it writes
    for a request.  werkzeug's logger gets a filter that drops only the
    access lines: its startup line (``Running on http://...``) and its
    errors stay.  Calling it again adds nothing.  Prefer the servers' own switch
    where there is one (``uvicorn.run(..., access_log=False)``,
    ``AppRunner(app, access_log=None)``, no ``--access-logfile`` for
    gunicorn): it also saves formatting the line.
    """
    for name, level in ACCESS_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    werkzeug = logging.getLogger("werkzeug")
    if not any(isinstance(f, _WerkzeugAccessFilter) for f in werkzeug.filters):
        werkzeug.addFilter(_WerkzeugAccessFilter())
