"""
Push log lines to Loki's HTTP push API from a background thread.

:class:`LokiHandler` is a :class:`logging.Handler`.  ``emit()`` formats the record and appends it
to a bounded in-memory buffer, nothing more, so a slow or unreachable Loki never blocks the
logging call.  A daemon thread drains the buffer in batches (by size and by age), sends each batch
as a gzip-compressed JSON push request and retries 429, 5xx and connection errors with capped
exponential backoff and jitter.  Whatever cannot be delivered is counted, never raised, and never
logged through :mod:`logging`: a record about this handler would come back into this handler.

Process life cycle: an ``atexit`` hook closes every live handler (bounded by *flush_timeout*),
a ``SIGTERM`` handler flushes before passing the signal on to the handler that was installed
before, and a forked child starts with an empty buffer and its own worker thread.
"""

from __future__ import annotations

import atexit
import base64
import collections
import contextlib
import gzip
import http.client
import json
import logging
import os
import random
import re
import signal
import ssl
import sys
import threading
import time
import weakref

from collections.abc import Mapping
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from .._render import epoch_micros


__all__ = ["PUSH_PATH", "LokiHandler"]

PUSH_PATH = "/loki/api/v1/push"

# Loki's default max_label_names_per_series is 15; the level label takes one.
_MAX_STATIC_LABELS = 14
_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Per-record fields of the obslog schema: as stream labels they would create a stream per value.
_PER_RECORD_FIELDS = frozenset(
    {
        "trace_id",
        "span_id",
        "request_id",
        "task_id",
        "pid",
        "timestamp",
        "duration_ms",
        "event",
        "logger",
        "message",
    }
)
_RETRY_AFTER_CAP = 300.0
_ERROR_DETAIL_CHARS = 300

# (record.created, level label, formatted line, trace_id or None)
_Item = tuple[float, str, str, "str | None"]


def _redact(url: str) -> str:
    """Return *url* with any ``user:password@`` replaced, without parsing the rest."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, tail = rest.partition("/")
    if not sep or "@" not in netloc:
        return url
    return f"{scheme}://***@{netloc.rpartition('@')[2]}{slash}{tail}"


def _parse_url(url: Any) -> tuple[str, str, int | None, str, str | None, str | None]:
    example = f"'http://loki:3100{PUSH_PATH}'"
    if not isinstance(url, str) or not url.strip():
        msg = f"LokiHandler needs the URL of Loki's push API, such as {example}; got {url!r}"
        raise ValueError(msg)
    url = url.strip()
    shown = _redact(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        msg = f"LokiHandler url {shown!r} is not a valid URL ({exc}); expected such as {example}"
        raise ValueError(msg) from None
    if parts.scheme not in ("http", "https"):
        msg = (
            f"LokiHandler url must start with http:// or https://, such as {example}; "
            f"got {shown!r}"
        )
        raise ValueError(msg)
    host = parts.hostname
    if not host or any(c.isspace() for c in host):
        msg = f"LokiHandler url {shown!r} has no valid host; expected such as {example}"
        raise ValueError(msg)
    path = parts.path if parts.path not in ("", "/") else PUSH_PATH
    if parts.query:
        path = f"{path}?{parts.query}"
    return parts.scheme, host, port, path, parts.username, parts.password


def _validate_labels(labels: Mapping[str, Any], level_label: bool) -> dict[str, str]:
    if not isinstance(labels, Mapping):
        msg = f"labels must be a mapping of label name to value, not {type(labels).__name__}"
        raise TypeError(msg)
    result: dict[str, str] = {}
    for name, value in labels.items():
        if not isinstance(name, str) or not _LABEL_NAME.match(name) or name.startswith("__"):
            msg = (
                f"invalid Loki label name {name!r}: use letters, digits and underscores, "
                "not starting with a digit or '__'"
            )
            raise ValueError(msg)
        if name in _PER_RECORD_FIELDS:
            msg = (
                f"{name!r} changes with every record and must not be a stream label (it would "
                "create one stream per value); keep it in the log line"
            )
            raise ValueError(msg)
        if name == "level" and level_label:
            msg = "the 'level' label is taken from each record; pass level_label=False to set it"
            raise ValueError(msg)
        if not isinstance(value, str) or not value:
            msg = f"label {name!r} needs a non-empty str value, not {value!r}"
            raise ValueError(msg)
        result[name] = value
    if len(result) > _MAX_STATIC_LABELS:
        msg = f"at most {_MAX_STATIC_LABELS} static labels (Loki's per-stream limit is 15)"
        raise ValueError(msg)
    return result


def _positive(name: str, value: Any, *, integer: bool = False, zero: bool = False) -> Any:
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    valid = not isinstance(value, bool) and isinstance(value, kinds)
    if not valid:
        kind = "an int" if integer else "a number"
        msg = f"{name} must be {kind}, not {value!r}"
        raise TypeError(msg)
    if value < 0 or (value == 0 and not zero):
        msg = f"{name} must be {'>= 0' if zero else '> 0'}, not {value!r}"
        raise ValueError(msg)
    return value


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: rare from Loki, fall back to our own backoff
    return min(max(seconds, 0.0), _RETRY_AFTER_CAP)


def _trace_id(record: logging.LogRecord) -> str | None:
    """Return the trace id obslog's ``ContextFilter`` captured, else a ``trace_id`` attribute."""
    captured = record.__dict__.get("_obslog")
    if captured:
        try:
            trace_id = captured[0].get("trace_id") if captured[0] else None
        except (TypeError, AttributeError, IndexError):
            trace_id = None
        if trace_id:
            return str(trace_id)
    trace_id = getattr(record, "trace_id", None)
    return str(trace_id) if trace_id else None


def _timestamp_ns(created: float) -> str:
    # The same microsecond as the JSON line's "timestamp".
    return str(epoch_micros(created) * 1000)


def _default_formatter() -> logging.Formatter:
    try:
        from obslog import JsonFormatter
    except ImportError:
        return logging.Formatter()
    formatter: logging.Formatter = JsonFormatter()
    return formatter


def _context_filter() -> logging.Filter | None:
    """Return obslog's ``ContextFilter``: it puts the scope (and its trace_id) on each record."""
    try:
        from obslog import ContextFilter
    except ImportError:
        return None
    return ContextFilter()


def _default_labels() -> dict[str, str]:
    try:
        from obslog._config import CONFIG
    except ImportError:
        service = env = None
    else:
        service, env = CONFIG.service, CONFIG.env
    labels = {"service": service or "unknown_service"}
    if env:
        labels["env"] = env
    return labels


_stats_incr: Any = None


def _count_in_obslog_stats(n: int) -> None:
    global _stats_incr
    if _stats_incr is None:
        try:
            from obslog._stats import incr as found
        except ImportError:
            found = False  # type: ignore[assignment]
        _stats_incr = found
    if _stats_incr:
        with contextlib.suppress(Exception):  # counting must never break logging
            _stats_incr("loki_dropped", n)


class _Transport:
    """One keep-alive HTTP connection to Loki, used by a single thread."""

    __slots__ = ("_conn", "_factory", "_headers", "_path")

    def __init__(self, factory: Any, path: str, headers: dict[str, str]) -> None:
        self._factory = factory
        self._path = path
        self._headers = headers
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # closing a broken socket may fail
                conn.close()

    def post(self, body: bytes) -> tuple[int, str, float | None]:
        """Send one push request; return (status, start of the response body, Retry-After)."""
        while True:
            reused = self._conn is not None
            if self._conn is None:
                self._conn = self._factory()
            conn = self._conn
            try:
                conn.request("POST", self._path, body=body, headers=self._headers)
                response = conn.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if reused:
                    # The server closed an idle keep-alive connection: retry once on a new one.
                    continue
                raise
            except BaseException:
                self.close()
                raise
            if response.will_close:
                self.close()
            detail = data[:_ERROR_DETAIL_CHARS].decode("utf-8", "replace").strip()
            return response.status, detail, _parse_retry_after(response.getheader("Retry-After"))


class LokiHandler(logging.Handler):
    """
    Send formatted records to Loki's push API in batches, from a background thread.

    Each record becomes one entry ``[timestamp_ns, line]`` of the stream whose labels are the
    static *labels* plus ``level`` (the record's level name in lower case).  A ``trace_id``
    attribute on the record (set by obslog's filter) travels as structured metadata, never as a
    label; the handler carries obslog's ``ContextFilter``, which captures the current scope (and
    its trace_id) onto each record.  The line is the handler's formatter output: obslog's JSON
    line by default.

    ``emit()`` never touches the network: when the buffer holds *queue_size* entries, new records
    are dropped and counted in :attr:`dropped`.  Delivery runs on a daemon thread that starts on
    the first record (and again, separately, in a forked child).  Counters: :attr:`sent`,
    :attr:`dropped`, :attr:`failed`, :attr:`retried`, :attr:`pending`, or all at once via
    :meth:`stats`.

    Usable from :func:`logging.config.dictConfig`::

        "loki": {
            "class": "obslog.loki.LokiHandler",
            "url": "http://loki:3100/loki/api/v1/push",
            "labels": {"service": "shop", "env": "prod"},
        }

    Args:
        url: Push endpoint; a URL with no path gets ``/loki/api/v1/push``.  ``user:password@``
            in the URL is used for basic auth.
        labels: Static stream labels.  Must be low-cardinality: per-record fields such as
            ``request_id`` or ``trace_id`` are refused.  ``None`` takes ``service`` and ``env``
            from :func:`obslog.configure` when a batch is sent.
        tenant_id: Sent as ``X-Scope-OrgID`` for multi-tenant Loki.
        username: Basic-auth user (with *password*).
        password: Basic-auth password.
        bearer_token: Sent as ``Authorization: Bearer ...``; excludes basic auth.
        headers: Extra HTTP headers for every push.
        batch_size: Send a batch once its lines reach this many characters (about bytes).
        batch_wait: Send a batch at the latest this many seconds after its first record.
        queue_size: Most records buffered; beyond it records are dropped and counted.
        timeout: Socket timeout in seconds for connecting and for each read.
        max_retries: Retries of one batch on 429, 5xx or connection errors before it is
            counted as failed.
        backoff: First retry delay in seconds; doubles per retry, with jitter.
        max_backoff: Longest retry delay in seconds (a ``Retry-After`` header may ask for more,
            up to 300 s).
        compress: Gzip the request body.
        structured_metadata: Send ``trace_id`` as structured metadata (Loki 3.x).  Disable for
            Loki 2.x.
        level_label: Add the ``level`` stream label.
        flush_timeout: Longest wait of :meth:`flush`, :meth:`close`, the ``atexit`` hook and the
            ``SIGTERM`` flush, in seconds.
        flush_on_sigterm: Install a ``SIGTERM`` handler that flushes, then calls the handler that
            was installed before (or re-raises the default action).  Only from the main thread.
        verify: For https: ``True`` checks the certificate, ``False`` does not, a string is the
            path of a CA bundle.
        level: The handler's level.

    Raises:
        ValueError: *url* is not an http(s) URL with a host, a label is invalid or per-record,
            or a number is out of range.
        TypeError: Conflicting authentication options or a value of the wrong type.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        url: str,
        labels: Mapping[str, str] | None = None,
        *,
        tenant_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        bearer_token: str | None = None,
        headers: Mapping[str, str] | None = None,
        batch_size: int = 1 << 20,
        batch_wait: float = 1.0,
        queue_size: int = 10_000,
        timeout: float = 5.0,
        max_retries: int = 10,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        compress: bool = True,
        structured_metadata: bool = True,
        level_label: bool = True,
        flush_timeout: float = 5.0,
        flush_on_sigterm: bool = True,
        verify: bool | str = True,
        level: int | str = logging.NOTSET,
    ) -> None:
        scheme, host, port, path, url_user, url_password = _parse_url(url)
        self._labels = None if labels is None else _validate_labels(labels, level_label)
        self._batch_size: int = _positive("batch_size", batch_size, integer=True)
        self._batch_wait: float = _positive("batch_wait", batch_wait)
        self._queue_size: int = _positive("queue_size", queue_size, integer=True)
        self._timeout: float = _positive("timeout", timeout)
        self._max_retries: int = _positive("max_retries", max_retries, integer=True, zero=True)
        self._backoff: float = _positive("backoff", backoff)
        self._max_backoff: float = max(_positive("max_backoff", max_backoff), self._backoff)
        self._flush_timeout: float = _positive("flush_timeout", flush_timeout, zero=True)
        self._compress = bool(compress)
        self._structured_metadata = bool(structured_metadata)
        self._level_label = bool(level_label)
        self.url = f"{scheme}://{host if ':' not in host else f'[{host}]'}" + (
            f":{port}" if port is not None else ""
        ) + path

        request_headers = {"Content-Type": "application/json", "User-Agent": "obslog-loki"}
        if self._compress:
            request_headers["Content-Encoding"] = "gzip"
        if url_user is not None and username is not None:
            msg = "give the basic-auth user either in the url or as username, not both"
            raise TypeError(msg)
        if url_user is not None:
            username, password = url_user, url_password or ""
        if bearer_token is not None and username is not None:
            msg = "bearer_token and username/password are mutually exclusive"
            raise TypeError(msg)
        if password is not None and username is None:
            msg = "password needs a username"
            raise TypeError(msg)
        if username is not None:
            token = base64.b64encode(f"{username}:{password or ''}".encode()).decode("ascii")
            request_headers["Authorization"] = f"Basic {token}"
        elif bearer_token is not None:
            if not isinstance(bearer_token, str) or not bearer_token:
                msg = "bearer_token must be a non-empty str"
                raise TypeError(msg)
            request_headers["Authorization"] = f"Bearer {bearer_token}"
        if tenant_id is not None:
            if not isinstance(tenant_id, str) or not tenant_id:
                msg = "tenant_id must be a non-empty str"
                raise TypeError(msg)
            request_headers["X-Scope-OrgID"] = tenant_id
        request_headers.update({str(k): str(v) for k, v in (headers or {}).items()})
        self._headers = request_headers

        if scheme == "https":
            context = ssl.create_default_context(
                cafile=verify if isinstance(verify, str) else None
            )
            if verify is False:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._connect: Any = lambda: http.client.HTTPSConnection(
                host, port, timeout=self._timeout, context=context
            )
        else:
            self._connect = lambda: http.client.HTTPConnection(host, port, timeout=self._timeout)
        self._path = path

        super().__init__(level)
        self.formatter = _default_formatter()
        context_filter = _context_filter()
        if context_filter is not None:
            self.addFilter(context_filter)
        self._closed = False
        self._reset_state()
        _register(self)
        if flush_on_sigterm:
            _install_sigterm_flush()

    # -- state ---------------------------------------------------------------------------------

    def _reset_state(self) -> None:
        """Start with an empty buffer, zero counters and no worker (also after a fork)."""
        self._lock = threading.RLock()  # re-entrant: a SIGTERM flush may interrupt emit()
        self._work_cond = threading.Condition(self._lock)
        self._done_cond = threading.Condition(self._lock)
        self._buf: collections.deque[_Item] = collections.deque()
        self._buf_chars = 0
        self._batch_started = 0.0
        self._seq_in = 0
        self._seq_done = 0
        self._flush_target = 0
        self._stopping = False
        self._deadline: float | None = None
        self._worker: threading.Thread | None = None
        self._worker_ident: int | None = None
        self._reported: set[str] = set()
        self._overflowed = False
        self.sent = 0
        """Entries Loki accepted."""
        self.dropped = 0
        """Entries dropped before sending: buffer full, or still buffered at close."""
        self.failed = 0
        """Entries Loki rejected (4xx other than 429) or that ran out of retries."""
        self.retried = 0
        """Push requests repeated after a 429, a 5xx or a connection error."""
        self.batches = 0
        """Push requests Loki accepted."""
        self.last_error: str | None = None
        """The latest delivery error, for diagnostics."""

    @property
    def pending(self) -> int:
        """Entries buffered and not yet taken by the worker."""
        return len(self._buf)

    def stats(self) -> dict[str, int]:
        """
        Return the counters.

        Returns:
            ``sent``, ``dropped``, ``failed``, ``retried``, ``batches`` and ``pending``.
        """
        return {
            "sent": self.sent,
            "dropped": self.dropped,
            "failed": self.failed,
            "retried": self.retried,
            "batches": self.batches,
            "pending": self.pending,
        }

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url} ({logging.getLevelName(self.level)})>"

    # -- caller side ---------------------------------------------------------------------------

    def emit(self, record: logging.LogRecord) -> None:
        """
        Format *record* and buffer it for the worker; never waits for the network.

        Args:
            record: The record to send.
        """
        try:
            if threading.get_ident() == self._worker_ident:
                return  # something logged from inside the worker: never feed it back
            line = self.format(record)
            trace_id = _trace_id(record) if self._structured_metadata else None
            item = (
                record.created,
                record.levelname.lower(),
                line,
                trace_id,
            )
            with self._lock:
                buf = self._buf
                if self._closed or len(buf) >= self._queue_size:
                    self.dropped += 1
                    if not self._closed:
                        self._overflowed = True
                    dropped = True
                else:
                    dropped = False
                    wake = not buf
                    if wake:
                        self._batch_started = time.monotonic()
                    buf.append(item)
                    self._seq_in += 1
                    self._buf_chars += len(line)
                    if self._buf_chars >= self._batch_size:
                        wake = True
                    if self._worker is None:
                        self._start_worker()
                    if wake:
                        self._work_cond.notify()
            if dropped:
                _count_in_obslog_stats(1)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def _start_worker(self) -> None:
        worker = threading.Thread(target=self._run, name="obslog-loki-push", daemon=True)
        try:
            worker.start()
        except RuntimeError:
            return  # interpreter shutting down: close() sends from the calling thread
        self._worker = worker

    def flush(self, timeout: float | None = None) -> bool:  # type: ignore[override]
        """
        Wait until every record emitted before this call is sent or given up.

        Args:
            timeout: Longest wait in seconds; default *flush_timeout*.

        Returns:
            ``True`` when everything was handled, ``False`` on timeout (the worker keeps
            trying in the background).
        """
        wait = self._flush_timeout if timeout is None else max(float(timeout), 0.0)
        with self._lock:
            target = self._seq_in
            if self._seq_done >= target:
                return True
            worker = self._worker
            if worker is None or not worker.is_alive():
                return False
            self._flush_target = max(self._flush_target, target)
            self._work_cond.notify_all()
            deadline = time.monotonic() + wait
            if self._deadline is not None:
                # Closed: the worker stops trying at close()'s deadline, so stop waiting too.
                deadline = min(deadline, self._deadline)
            while self._seq_done < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._done_cond.wait(remaining)
        return True

    def close(self) -> None:
        """Send what is buffered (for at most *flush_timeout*), stop the worker and close."""
        try:
            self._shutdown()
        finally:
            _unregister(self)
            super().close()

    def _shutdown(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stopping = True
            self._deadline = time.monotonic() + self._flush_timeout
            worker = self._worker
            self._work_cond.notify_all()
        if worker is not None and worker.is_alive():
            if worker is not threading.current_thread():
                # A little past the deadline, so the worker can account for its last batch.
                worker.join(self._flush_timeout + 0.1)
        elif self._buf:
            self._run()  # no worker could be started (interpreter shutdown): send from here
        with self._lock:
            left = len(self._buf)
            if left:
                self._buf.clear()
                self._buf_chars = 0
                self.dropped += left
                self._seq_done += left
                self._done_cond.notify_all()
        if left:
            _count_in_obslog_stats(left)
            self._report_once(
                "close",
                f"{left} buffered lines were not sent before close (flush_timeout="
                f"{self._flush_timeout}s); counted in LokiHandler.dropped",
            )

    # -- worker side ---------------------------------------------------------------------------

    def _run(self) -> None:
        self._worker_ident = threading.get_ident()
        transport = _Transport(self._connect, self._path, self._headers)
        try:
            while True:
                batch = self._take_batch()
                if batch is None:
                    return
                try:
                    self._deliver(transport, batch)
                except Exception as exc:
                    with self._lock:
                        self.failed += len(batch)
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    self._report_once("bug", f"could not send a batch: {self.last_error}")
                finally:
                    with self._lock:
                        self._seq_done += len(batch)
                        self._done_cond.notify_all()
                if self._overflowed:
                    self._report_once(
                        "dropped",
                        f"the buffer of {self._queue_size} lines was full and lines were "
                        "dropped; see LokiHandler.dropped",
                    )
        finally:
            transport.close()

    def _take_batch(self) -> list[_Item] | None:
        """Block until a batch is due; return it, or ``None`` when the worker should exit."""
        with self._lock:
            while True:
                now = time.monotonic()
                if self._stopping and self._deadline is not None and now >= self._deadline:
                    return None
                if self._buf:
                    due = self._batch_started + self._batch_wait
                    if (
                        now >= due
                        or self._stopping
                        or self._flush_target > self._seq_done
                        or self._buf_chars >= self._batch_size
                    ):
                        return self._pop_batch(now)
                    self._work_cond.wait(due - now)
                elif self._stopping:
                    return None
                else:
                    self._work_cond.wait()

    def _pop_batch(self, now: float) -> list[_Item]:
        buf, limit = self._buf, self._batch_size
        batch = [buf.popleft()]
        chars = len(batch[0][2])
        while buf and chars + len(buf[0][2]) <= limit:
            item = buf.popleft()
            chars += len(item[2])
            batch.append(item)
        self._buf_chars -= chars
        if buf:
            self._batch_started = now
        return batch

    def _encode(self, batch: list[_Item]) -> bytes:
        labels = self._labels if self._labels is not None else _default_labels()
        streams: dict[str, list[list[Any]]] = {}
        for created, level, line, trace_id in batch:
            value: list[Any] = [_timestamp_ns(created), line]
            if trace_id:
                value.append({"trace_id": trace_id})
            streams.setdefault(level if self._level_label else "", []).append(value)
        payload: dict[str, list[dict[str, Any]]] = {"streams": []}
        for level, values in streams.items():
            stream = dict(labels)
            if level:
                stream["level"] = level
            payload["streams"].append({"stream": stream, "values": values})
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        data = body.encode("utf-8", "backslashreplace")
        return gzip.compress(data, compresslevel=6) if self._compress else data

    def _deliver(self, transport: _Transport, batch: list[_Item]) -> None:
        body = self._encode(batch)
        count = len(batch)
        attempt = 0
        while True:
            retry_after = None
            try:
                status, detail, retry_after = transport.post(body)
            except (OSError, http.client.HTTPException) as exc:
                status, detail = None, f"{type(exc).__name__}: {exc}"
            if status is not None and 200 <= status < 300:
                with self._lock:
                    self.sent += count
                    self.batches += 1
                return
            self.last_error = f"HTTP {status}: {detail}" if status is not None else detail
            if status is not None and status != 429 and status < 500:
                with self._lock:
                    self.failed += count
                self._report_once(
                    "rejected",
                    f"Loki rejected a batch of {count} lines with {self.last_error}; such "
                    "batches are not retried and are counted in LokiHandler.failed",
                )
                return
            if attempt >= self._max_retries or not self._backoff_wait(attempt, retry_after):
                with self._lock:
                    self.failed += count
                self._report_once(
                    "gave_up",
                    f"gave up on a batch of {count} lines after {attempt + 1} attempts "
                    f"({self.last_error}); counted in LokiHandler.failed",
                )
                return
            attempt += 1
            with self._lock:
                self.retried += 1

    def _backoff_wait(self, attempt: int, retry_after: float | None) -> bool:
        """Sleep before retry *attempt* + 1; ``False`` when closing ran out of time."""
        ceiling = min(self._max_backoff, self._backoff * (2**attempt))
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)
        if retry_after is not None:
            delay = max(delay, retry_after)
        end = time.monotonic() + delay
        with self._lock:
            while True:
                now = time.monotonic()
                if self._stopping and self._deadline is not None:
                    if now >= self._deadline:
                        return False
                    limit = min(end, self._deadline)
                else:
                    limit = end
                if now >= end:
                    return True
                self._work_cond.wait(limit - now)

    def _report_once(self, key: str, message: str) -> None:
        """Tell a human once per kind of problem; counters carry the rest."""
        with self._lock:
            if key in self._reported:
                return
            self._reported.add(key)
        stream = sys.stderr
        if stream is None:
            return
        with contextlib.suppress(Exception):  # nowhere left to report to
            stream.write(f"obslog LokiHandler({_redact(self.url)}): {message}\n")
            stream.flush()

    def _after_fork_in_child(self) -> None:
        closed = self._closed
        self._reset_state()
        self._closed = closed


# -- process hooks ------------------------------------------------------------------------------

_live: weakref.WeakSet[LokiHandler] = weakref.WeakSet()
_hooks_lock = threading.Lock()
_hooks_installed = False


def _register(handler: LokiHandler) -> None:
    global _hooks_installed
    with _hooks_lock:
        _live.add(handler)
        if _hooks_installed:
            return
        _hooks_installed = True
    atexit.register(_close_all)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_in_child)


def _unregister(handler: LokiHandler) -> None:
    with _hooks_lock:
        _live.discard(handler)


def _close_all() -> None:
    for handler in list(_live):
        with contextlib.suppress(Exception):  # exiting anyway
            handler.close()


def _after_fork_in_child() -> None:
    global _hooks_lock
    _hooks_lock = threading.Lock()
    for handler in list(_live):
        handler._after_fork_in_child()


def _flush_all() -> None:
    for handler in list(_live):
        with contextlib.suppress(Exception):  # the signal must still reach the application
            handler.flush()


def _install_sigterm_flush() -> bool:
    """Chain a flush in front of the current ``SIGTERM`` handler; main thread only."""
    sigterm = getattr(signal, "SIGTERM", None)
    if sigterm is None or threading.current_thread() is not threading.main_thread():
        return False
    try:
        previous = signal.getsignal(sigterm)
    except (ValueError, OSError):
        return False
    if getattr(previous, "_obslog_loki_flush", False):
        return True
    if previous is None:
        return False  # installed outside Python: we could not call it, so leave it alone

    def _flush_then_previous(signum: int, frame: FrameType | None) -> None:
        _flush_all()
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            # What SIGTERM would have done without us: terminate by the signal.
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    _flush_then_previous._obslog_loki_flush = True  # type: ignore[attr-defined]
    try:
        signal.signal(sigterm, _flush_then_previous)
    except (ValueError, OSError):
        return False
    return True
