"""
Push log lines to Loki's HTTP push API from a background thread.

:class:`LokiHandler` is a :class:`logging.Handler`.  ``emit()`` formats the record and appends it
to a bounded in-memory buffer, nothing more, so a slow or unreachable Loki never blocks the
logging call.  A daemon thread drains the buffer in batches (by size and by age), sends each batch
as a gzip-compressed JSON push request and retries 429, 5xx and connection errors with capped
exponential backoff and jitter.  Whatever cannot be delivered is counted, never raised, and never
logged through :mod:`logging`: a record about this handler would come back into this handler.

Canonical ``request``, ``task`` and ``runtime`` lines go to their own stream (label
``obslog="<event>"``), so that Loki's rules read only them.

Process life cycle (:mod:`._hooks`): an ``atexit`` hook closes every live handler (bounded by
*flush_timeout*), a forked child starts with an empty buffer and its own worker thread, and, only
when asked for (``flush_on_sigterm=True``), a ``SIGTERM`` handler flushes before passing the
signal on to the handler that was installed before.

.. versionchanged:: 0.2.0
   Split out of ``obslog.loki._handler`` (validation, transport and hooks in their own modules).
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import logging
import random
import sys
import threading
import time

from collections.abc import Mapping

from ._hooks import install_sigterm_flush, register, release_sigterm_flush, unregister
from ._obslog import (
    context_filter,
    count_in_obslog_stats,
    default_formatter,
    default_labels,
    trace_id_of,
)
from ._stream import canonical_stream_of
from ._transport import Item, Transport, encode
from ._validate import (
    PUSH_PATH,
    connection_factory,
    parse_url,
    positive,
    redact,
    request_headers,
    validate_labels,
)


__all__ = ["PUSH_PATH", "LokiHandler"]


class LokiHandler(logging.Handler):
    """
    Send formatted records to Loki's push API in batches, from a background thread.

    Each record becomes one entry ``[timestamp_ns, line]`` of the stream whose labels are the
    static *labels* plus ``level`` (the record's level name in lower case).  obslog's canonical
    lines (a record whose message is exactly ``request``, ``task`` or ``runtime``, the events of
    the scope and runtime lines) also carry ``obslog="<event>"``: the stream obslog's Loki rules
    read.  The label takes only those three values, whatever the record holds.  A ``trace_id``
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
            was installed before (or does the default action).  Off by default: the ``atexit``
            hook already flushes on a clean exit.  Only from the main thread; :meth:`close`
            of the last such handler puts the previous ``SIGTERM`` handler back.
        canonical_stream: Put canonical lines in their own stream (``obslog="<event>"``).  Turn
            it off only with rules generated by ``obslog loki rules --no-canonical-stream``.
        verify: For https: ``True`` checks the certificate, ``False`` does not, a string is the
            path of a CA bundle.
        level: The handler's level.

    Raises:
        ValueError: *url* is not an http(s) URL with a host, a label is invalid, per-record or
            reserved (``level``, ``obslog``), or a number is out of range.
        TypeError: Conflicting authentication options or a value of the wrong type.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       *canonical_stream*; *flush_on_sigterm* is off by default and undone by :meth:`close`.
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
        flush_on_sigterm: bool = False,
        canonical_stream: bool = True,
        verify: bool | str = True,
        level: int | str = logging.NOTSET,
    ) -> None:
        scheme, host, port, path, url_user, url_password = parse_url(url)
        self._canonical_stream = bool(canonical_stream)
        self._labels = (
            None if labels is None else validate_labels(labels, level_label, self._canonical_stream)
        )
        self._batch_size: int = positive("batch_size", batch_size, integer=True)
        self._batch_wait: float = positive("batch_wait", batch_wait)
        self._queue_size: int = positive("queue_size", queue_size, integer=True)
        self._timeout: float = positive("timeout", timeout)
        self._max_retries: int = positive("max_retries", max_retries, integer=True, zero=True)
        self._backoff: float = positive("backoff", backoff)
        self._max_backoff: float = max(positive("max_backoff", max_backoff), self._backoff)
        self._flush_timeout: float = positive("flush_timeout", flush_timeout, zero=True)
        self._compress = bool(compress)
        self._structured_metadata = bool(structured_metadata)
        self._level_label = bool(level_label)
        self.url = (
            f"{scheme}://{host if ':' not in host else f'[{host}]'}"
            + (f":{port}" if port is not None else "")
            + path
        )

        self._headers = request_headers(
            compress=self._compress,
            url_user=url_user,
            url_password=url_password,
            username=username,
            password=password,
            bearer_token=bearer_token,
            tenant_id=tenant_id,
            headers=headers,
        )
        self._connect = connection_factory(scheme, host, port, self._timeout, verify)
        self._path = path

        super().__init__(level)
        self.formatter = default_formatter()
        obslog_filter = context_filter()
        if obslog_filter is not None:
            self.addFilter(obslog_filter)
        self._closed = False
        self._reset_state()
        register(self)
        if flush_on_sigterm:
            install_sigterm_flush(self)

    # -- state ---------------------------------------------------------------------------------

    def _reset_state(self) -> None:
        """Start with an empty buffer, zero counters and no worker (also after a fork)."""
        self._lock = threading.RLock()  # re-entrant: a SIGTERM flush may interrupt emit()
        self._work_cond = threading.Condition(self._lock)
        self._done_cond = threading.Condition(self._lock)
        self._buf: collections.deque[Item] = collections.deque()
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
            trace_id = trace_id_of(record) if self._structured_metadata else None
            item = (
                record.created,
                record.levelname.lower(),
                line,
                trace_id,
                canonical_stream_of(record.msg)
                if self._canonical_stream and not record.args
                else None,
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
                count_in_obslog_stats(1)
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
            unregister(self)
            release_sigterm_flush(self)
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
            count_in_obslog_stats(left)
            self._report_once(
                "close",
                f"{left} buffered lines were not sent before close (flush_timeout="
                f"{self._flush_timeout}s); counted in LokiHandler.dropped",
            )

    # -- worker side ---------------------------------------------------------------------------

    def _run(self) -> None:
        self._worker_ident = threading.get_ident()
        transport = Transport(self._connect, self._path, self._headers)
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

    def _take_batch(self) -> list[Item] | None:
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

    def _pop_batch(self, now: float) -> list[Item]:
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

    def _encode(self, batch: list[Item]) -> bytes:
        labels = self._labels if self._labels is not None else default_labels()
        return encode(batch, labels, level_label=self._level_label, compress=self._compress)

    def _deliver(self, transport: Transport, batch: list[Item]) -> None:
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
            stream.write(f"obslog LokiHandler({redact(self.url)}): {message}\n")
            stream.flush()

    def _after_fork_in_child(self) -> None:
        closed = self._closed
        self._reset_state()
        self._closed = closed
