"""
Per-request context: scopes and scope listeners (timers: :mod:`obslog._timers`; the canonical line
a scope ends with: :mod:`obslog._canonical`).

A :class:`Scope` is the unit of work a service is asked about afterwards: an HTTP request, a task,
a job.  It lives in a :class:`contextvars.ContextVar`, so every thread and every asyncio task sees
its own scope, and ends with exactly one wide *canonical line* that holds its duration, outcome and
every timer recorded inside it.
"""

from __future__ import annotations

import contextvars
import os
import threading

from collections import defaultdict
from collections.abc import Callable
from time import perf_counter
from types import TracebackType
from typing import Any

from . import _canonical, _ids, _stats, _validation
from ._config import REDACTED, is_secret
from ._redact import scrub_value
from ._render import redact
from ._schema import BOUND_RESERVED


__all__ = [
    "Scope",
    "bind",
    "capture",
    "current_scope",
    "in_context",
    "on_scope_end",
    "on_scope_start",
    "request_scope",
    "scope",
]

_CURRENT: contextvars.ContextVar[Scope | None] = contextvars.ContextVar(
    "obslog_scope", default=None
)
# Timers of one scope can be recorded from several threads (work handed to an executor with
# in_context shares the scope).  A timer only appends its elapsed seconds to the list of its name,
# which is atomic, as is adding a name (defaultdict's __missing__ runs in C); folding the lists
# into the per-name totals takes this lock and iterates a snapshot of the names.
_FOLD_LOCK = threading.Lock()
_MAX_PENDING = 256  # samples of one name kept before they are folded


# Keys a bound field may not take: the line's own schema.  A clash is kept under ``extra_<key>``.
RESERVED_FIELDS = BOUND_RESERVED

_NO_CTX: dict[str, Any] = {}  # the context of a scope not yet entered; never mutated

Listener = Callable[["Scope"], None]
_start_listeners: tuple[Listener, ...] = ()
_end_listeners: tuple[Listener, ...] = ()
_listeners_lock = threading.Lock()


def _renew_locks() -> None:
    # A thread of the parent may have held a lock at fork time; the child would wait forever.
    global _FOLD_LOCK, _listeners_lock
    _FOLD_LOCK = threading.Lock()
    _listeners_lock = threading.Lock()


os.register_at_fork(after_in_child=_renew_locks)


def _clean_fields(fields: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if key in RESERVED_FIELDS:
            key = f"extra_{key}"
        if is_secret(key):
            out[key] = REDACTED
        else:  # redact() of a str is scrub_value(): called directly for the common case
            out[key] = scrub_value(value) if value.__class__ is str else redact(value)
    return out


def _check_ids(**ids: object) -> None:
    for name, value in ids.items():
        if value is not None and not isinstance(value, str):
            msg = f"{name} must be a str or None, not {type(value).__name__}"
            raise TypeError(msg)


class _AsyncWith:
    """``async with`` for a context manager whose enter and exit never wait."""

    __slots__ = ()

    def __enter__(self) -> Any:
        raise NotImplementedError

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Any:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


class Scope(_AsyncWith):
    """
    One unit of work (request, task, job) and everything measured inside it.

    Use :func:`scope` or :func:`request_scope` to make one.  A scope is entered once, with ``with``
    or ``async with``; on exit it emits its canonical line and restores the enclosing scope.

    Attributes:
        kind: What this scope is; also the ``event`` of its canonical line.
        request_id: Correlation id shared by every line of the scope.
        trace_id: W3C trace id, or ``None``.
        span_id: W3C span id, or ``None``.
        fields: Bound fields, on every line of the scope.
        status: HTTP status to report, an ``int`` from 100 to 599 or ``None``; checked when set.
        outcome: ``None`` until exit; set it before exit to force ``"cancelled"`` or ``"error"``.
        duration_ms: Wall time of the scope, set on exit.
        timers: ``name -> [count, total_ms, max_ms]``.
        exc: The exception that ended the scope, if any.
        emit: Set to ``False`` before exit to suppress the canonical line.
        end: ``perf_counter()`` value at which ``duration_ms`` stops; ``None`` (default) means exit.
        level: Level of the canonical line (an ``int``; a level name is converted when set);
            ``None`` picks it from the outcome.

    .. versionadded:: 0.1.0
    """

    __slots__ = (
        "_ctx",
        "_dirty",
        "_entered",
        "_level",
        "_pending",
        "_status",
        "_timers",
        "_timings",
        "_token",
        "duration_ms",
        "emit",
        "end",
        "exc",
        "fields",
        "kind",
        "outcome",
        "parent",
        "request_id",
        "span_id",
        "start",
        "trace_id",
    )

    def __init__(
        self,
        kind: str,
        *,
        request_id: str | None = None,
        trace_id: str | None = None,
        span_id: str | None = None,
        level: int | str | None = None,
        fields: dict[str, Any] | None = None,
    ) -> None:
        self.kind = _validation.check_name(kind, "scope kind")
        self._level = None if level is None else _validation.check_level(level)
        if (
            (request_id is not None and request_id.__class__ is not str)
            or (trace_id is not None and trace_id.__class__ is not str)
            or (span_id is not None and span_id.__class__ is not str)
        ):
            _check_ids(request_id=request_id, trace_id=trace_id, span_id=span_id)
        self.request_id: str = request_id or ""
        self.trace_id = trace_id
        self.span_id = span_id
        self.fields: dict[str, Any] = _clean_fields(fields) if fields else {}
        self._status: int | None = None
        self.outcome: str | None = None
        self.duration_ms: float | None = None
        self._timers: dict[str, list[Any]] = {}
        # name -> elapsed seconds not yet folded into _timers; _dirty when any list may be
        # non-empty (set by a timer after its append, cleared by a fold before it drains).
        self._pending: defaultdict[str, list[float]] = defaultdict(list)
        self._dirty = False
        self.exc: BaseException | None = None
        self.emit = True
        self.parent: Scope | None = None
        self.start = 0.0
        # perf_counter() at which duration_ms stops, when the work the scope times ended before
        # the scope exits (an HTTP response's last byte, before background tasks).
        self.end: float | None = None
        self._entered = False
        self._token: contextvars.Token[Scope | None] | None = None
        self._ctx: dict[str, Any] = _NO_CTX  # built when entered or bound
        self._timings: dict[str, dict[str, Any]] | None = None

    def __repr__(self) -> str:
        return f"<Scope {self.kind} request_id={self.request_id!r} fields={self.fields!r}>"

    @property
    def status(self) -> int | None:
        """The HTTP status to report: an ``int`` from 100 to 599, or ``None``."""
        return self._status

    @status.setter
    def status(self, value: int | None) -> None:
        if value.__class__ is int and 100 <= value <= 599:  # the common case, checked inline
            self._status = value
        else:
            self._status = _validation.check_status(value)

    @property
    def level(self) -> int | None:
        """Level of the canonical line; ``None`` picks it from the outcome."""
        return self._level

    @level.setter
    def level(self, value: int | str | None) -> None:
        self._level = _validation.check_level(value)

    # -- context -------------------------------------------------------------------------------

    def bind(self, **fields: Any) -> None:
        """Add *fields* to every later line of this scope, its canonical line included."""
        self.fields.update(_clean_fields(fields))
        self._rebuild_ctx()

    def _rebuild_ctx(self) -> None:
        ctx: dict[str, Any] = {"request_id": self.request_id}
        if self.trace_id is not None:
            ctx["trace_id"] = self.trace_id
        if self.span_id is not None:
            ctx["span_id"] = self.span_id
        ctx.update(self.fields)
        self._ctx = ctx  # replaced, never mutated: records may hold the old one

    @property
    def timers(self) -> dict[str, list[Any]]:
        """``name -> [count, total_ms, max_ms]`` of every timer so far."""
        if self._dirty:
            self._fold()
        return self._timers

    def _fold(self) -> None:
        with _FOLD_LOCK:
            self._dirty = False
            timers = self._timers
            # A copy made in one C call: a timer of another thread may add a name meanwhile.
            for name, samples in dict(self._pending).items():
                n = len(samples)
                if not n:
                    continue
                # Time can go backwards on some platforms: never below zero.
                if n == 1:  # one call of this name since the last fold: the common case
                    total = longest = max(samples[0], 0.0) * 1000.0
                else:  # sum and max in C, not per sample in Python
                    batch = samples[:n]
                    total = max(sum(batch), 0.0) * 1000.0
                    longest = max(max(batch), 0.0) * 1000.0
                del samples[:n]  # appends made meanwhile sit after index n and stay
                entry = timers.get(name)
                if entry is None:
                    timers[name] = [n, total, longest]
                else:
                    entry[0] += n
                    entry[1] += total
                    if longest > entry[2]:
                        entry[2] = longest
            self._timings = None

    def _merge_into(self, parent: Scope) -> None:
        timers = self.timers
        parent._fold()
        with _FOLD_LOCK:
            for name, (count, total, longest) in timers.items():
                entry = parent._timers.get(name)
                if entry is None:
                    parent._timers[name] = [count, total, longest]
                else:
                    entry[0] += count
                    entry[1] += total
                    if longest > entry[2]:
                        entry[2] = longest
            parent._timings = None

    def timings(self) -> dict[str, dict[str, Any]]:
        """
        Return ``{name: {"ms": total, "count": n, "max_ms": longest}}`` for every timer so far.
        """
        if self._dirty:
            self._fold()
        cached = self._timings
        if cached is None:
            with _FOLD_LOCK:
                cached = {
                    name: {"ms": round(total, 3), "count": count, "max_ms": round(longest, 3)}
                    for name, (count, total, longest) in self._timers.items()
                }
                self._timings = cached
        return cached

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> Scope:
        if self._entered:
            msg = "a Scope can be entered only once; create a new one for each unit of work"
            raise RuntimeError(msg)
        self._entered = True
        parent = _CURRENT.get()
        self.parent = parent
        if parent is not None:
            if not self.request_id:
                self.request_id = parent.request_id
            if self.trace_id is None:
                self.trace_id, self.span_id = parent.trace_id, parent.span_id
            if parent.fields:
                self.fields = {**parent.fields, **self.fields}
        if not self.request_id:
            self.request_id = _ids.new_request_id()
        if self.trace_id is None:
            otel = _ids.current_otel_ids()
            if otel is not None:
                self.trace_id, self.span_id = otel
        self._rebuild_ctx()
        self._token = _CURRENT.set(self)
        self.start = perf_counter()
        if _start_listeners:
            _notify(_start_listeners, self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        current = _CURRENT.get()
        try:
            end = self.end if self.end is not None else perf_counter()
            self.duration_ms = max(end - self.start, 0.0) * 1000.0
            self.exc = exc
            if self.outcome is None:
                status = self._status
                if exc is None and (status is None or status < 500):
                    self.outcome = "ok"  # the common case of _canonical.outcome()
                else:
                    self.outcome = _canonical.outcome(exc, status)
            if self.emit:
                if current is self:
                    _canonical.emit(self, exc_type, exc, tb)
                else:
                    # The canonical line carries this scope's ids and timers, whatever is
                    # current where it ends.
                    token = _CURRENT.set(self)
                    try:
                        _canonical.emit(self, exc_type, exc, tb)
                    finally:
                        _CURRENT.reset(token)
        finally:
            self._leave(current)

    def _leave(self, current: Scope | None) -> None:
        token, self._token = self._token, None
        if current is self or _encloses(self, current):
            # Restore what was current before this scope.  When inner scopes are still current
            # (a generator suspended inside one), they end here too, for this thread or task.
            if token is not None:
                try:
                    _CURRENT.reset(token)
                except ValueError:
                    # Exited in a copy of the context it was entered in (a callback-style
                    # integration): restore the enclosing scope explicitly.
                    _CURRENT.set(self.parent)
        else:
            # Ended where it is not current (a generator holding it, closed by another request
            # or task): what is current here belongs to someone else and stays.
            _stats.incr("scope_foreign_exits")
        if self.parent is not None and (self._timers or self._dirty):
            self._merge_into(self.parent)
        if _end_listeners:
            _notify(_end_listeners, self)


def _encloses(s: Scope, inner: Scope | None) -> bool:
    while inner is not None:
        inner = inner.parent
        if inner is s:
            return True
    return False


def _notify(listeners: tuple[Listener, ...], s: Scope) -> None:
    for listener in listeners:
        try:
            listener(s)
        except Exception:  # a broken listener must not break the request
            _stats.incr("listener_errors")


def _add_listener(which: str, fn: Listener) -> Callable[[], None]:
    global _start_listeners, _end_listeners
    if not callable(fn):
        msg = f"listener must be callable, not {type(fn).__name__}"
        raise TypeError(msg)
    with _listeners_lock:
        if which == "start":
            _start_listeners = (*_start_listeners, fn)
        else:
            _end_listeners = (*_end_listeners, fn)

    def remove() -> None:
        global _start_listeners, _end_listeners
        with _listeners_lock:
            if which == "start":
                _start_listeners = tuple(f for f in _start_listeners if f is not fn)
            else:
                _end_listeners = tuple(f for f in _end_listeners if f is not fn)

    return remove


def on_scope_start(fn: Listener) -> Callable[[], None]:
    """
    Call *fn(scope)* when any scope is entered; returns a function that unregisters it.

    .. versionadded:: 0.2.0 as ``obslog.on_scope_start`` (``obslog._context`` before).
    """
    return _add_listener("start", fn)


def on_scope_end(fn: Listener) -> Callable[[], None]:
    """
    Call *fn(scope)* after any scope has ended, its canonical line sampled out or not.

    Returns a function that unregisters it.  Exceptions from *fn* are counted in
    ``obslog.stats()["listener_errors"]`` and otherwise ignored.  :mod:`obslog.metrics` feeds
    its request metrics this way.

    .. versionadded:: 0.2.0 as ``obslog.on_scope_end`` (``obslog._context`` before).
    """
    return _add_listener("end", fn)


# -- public constructors -------------------------------------------------------------------------


def scope(
    kind: str,
    *,
    request_id: str | None = None,
    trace_id: str | None = None,
    span_id: str | None = None,
    level: int | str | None = None,
    **fields: Any,
) -> Scope:
    """
    Return a new :class:`Scope` of *kind* (``"task"``, ``"job"``, ...) binding *fields*.

    Inside an enclosing scope, the new one inherits its request id, trace ids and fields unless
    given.  *level* is the canonical line's level, an int or a name (``"INFO"``); ``None`` picks
    it from the outcome.

    >>> import obslog
    >>> with obslog.scope("job", job="nightly-report") as s:
    ...     s.kind
    'job'

    Raises:
        TypeError: *kind* or an id is not a ``str``, or *level* is not an int or a name.
        ValueError: *kind* is not a valid name, or *level* an unknown name.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0 *level* may be a level name; it is checked here, not at exit.
    """
    return Scope(
        kind, request_id=request_id, trace_id=trace_id, span_id=span_id, level=level, fields=fields
    )


def request_scope(
    method: str | None = None,
    route: str | None = None,
    *,
    request_id: str | None = None,
    trace_id: str | None = None,
    span_id: str | None = None,
    level: int | str | None = None,
    **fields: Any,
) -> Scope:
    """
    Return a ``request`` scope; *route* is the route template (``/orders/{id}``), never a raw path.

    .. versionadded:: 0.1.0
    """
    if method is not None:
        fields["method"] = method
    if route is not None:
        fields["route"] = route
    return Scope(
        "request",
        request_id=request_id,
        trace_id=trace_id,
        span_id=span_id,
        level=level,
        fields=fields,
    )


def current_scope() -> Scope | None:
    """Return the innermost active scope of this thread or task, or ``None``."""
    return _CURRENT.get()


def bind(**fields: Any) -> None:
    """Bind *fields* on the current scope; outside any scope this does nothing."""
    s = _CURRENT.get()
    if s is not None:
        s.bind(**fields)


def capture() -> tuple[dict[str, Any] | None, dict[str, dict[str, Any]] | None]:
    """
    Return ``(context fields, timings)`` to put on a record made now.

    The dicts are snapshots (replaced, not mutated, by later changes), so a record formatted later
    in another thread (a ``QueueHandler``) still shows the context of the moment it was made.  An
    active OpenTelemetry span overrides the scope's trace and span ids.
    """
    s = _CURRENT.get()
    otel = _ids.current_otel_ids() if _ids.otel_available else None
    if s is None:
        if otel is None:
            return None, None
        return {"trace_id": otel[0], "span_id": otel[1]}, None
    ctx = s._ctx
    if otel is not None and otel[1] != ctx.get("span_id"):
        ctx = {**ctx, "trace_id": otel[0], "span_id": otel[1]}
    return ctx, (s.timings() if s._timers or s._dirty else None)


# -- carrying context across threads ----------------------------------------------------------


def in_context(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Callable[[], Any]:
    """
    Return a no-argument callable that runs ``fn(*args, **kwargs)`` in a copy of the current
    context.

    ``ThreadPoolExecutor`` and ``loop.run_in_executor`` do not copy context variables; wrap the
    work:

    .. code-block:: python

        pool.submit(obslog.in_context(fetch, order_id))
        await loop.run_in_executor(None, obslog.in_context(fetch, order_id))

    Timers recorded by the work land in the caller's scope.  ``asyncio.to_thread`` copies the
    context by itself and needs no wrapper.

    .. versionadded:: 0.1.0
    """
    ctx = contextvars.copy_context()

    def run() -> Any:
        # A copy per call: one Context cannot be entered by two threads at once.
        return ctx.copy().run(fn, *args, **kwargs)

    return run


def __getattr__(name: str) -> Any:
    # ``timed`` lived here before it got its own module.
    if name == "timed":
        from ._timers import timed

        return timed
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
