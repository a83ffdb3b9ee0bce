"""
Named timers: ``with timed("db_query"):`` adds one call to the current scope.

A :class:`timed` instance may be made once at module level and shared by every thread and task of
the process (``DB = timed("db_query")``).  Each use has its own start and scope:

* the first use of an instance claims the instance itself (an atomic ``list.pop()`` of the one
  item of ``_free``), keeps its scope and start in the instance's slots, and gives the item back
  on exit.  This is the common case -- ``with timed("db_query"):`` makes a fresh instance per
  use -- and costs no context-variable write;
* a use that starts while another is in progress (the same instance in another thread or task,
  or nested in itself) gets its own :class:`_Use` token, pushed on a per-context stack
  (:data:`_OPEN`).  Its exit finds the token on the stack of the context it runs in, so that each
  exit is paired with the entry made in the same thread or task, whatever the interleaving.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import os
import threading

from collections.abc import Callable
from time import perf_counter
from types import TracebackType
from typing import Any, TypeVar

from ._context import _CURRENT, Scope, _AsyncWith
from ._validation import check_name, valid_names


__all__ = ["timed"]

F = TypeVar("F", bound=Callable[..., Any])


class _Use:
    """One use of a :class:`timed` instance that overlaps another use of the same instance."""

    __slots__ = ("scope", "start", "timer", "token")

    scope: Scope | None
    start: float
    timer: timed
    token: contextvars.Token[_Use | None]


# The innermost overlapping use entered in this thread or task.  A context copied from another
# (a child task, in_context) starts with the parent's stack: a token is popped only by a reset in
# the context that set it, which is how an inherited token is told apart from an own one.
_OPEN: contextvars.ContextVar[_Use | None] = contextvars.ContextVar(
    "obslog_timed_use", default=None
)
_overlap_lock = threading.Lock()


def _renew_lock() -> None:
    # A thread of the parent may have held the lock at fork time; the child would wait forever.
    global _overlap_lock
    _overlap_lock = threading.Lock()


os.register_at_fork(after_in_child=_renew_lock)


class timed(_AsyncWith):  # used like a function: ``with timed("db_query"):``
    """
    Time a block or a function under *name* in the current scope.

    Each use adds one call to the current scope, which keeps count, total and maximum per name;
    when a nested scope ends, its timers are added to the enclosing scope's.  The time is recorded
    even when the block raises; the exception propagates unchanged.  Outside any scope, ``timed``
    records nothing.

    >>> import obslog
    >>> with obslog.scope("job") as s:
    ...     with obslog.timed("db_query"):
    ...         pass
    ...     s.timers["db_query"][0]
    1

    One instance may be shared by every thread and task (``DB = obslog.timed("db_query")`` at
    module level): each use is paired with its own exit in the thread or task that made it, so
    counts, totals and maxima stay exact however the uses interleave.  As a decorator it works on
    sync and async functions; each call is timed separately.

    Raises:
        TypeError: *name* is not a ``str``.
        ValueError: *name* is empty or not ``[A-Za-z_][A-Za-z0-9_]*`` (at most 64 characters).

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       A shared instance is exact under any interleaving of threads and tasks.
    """

    __slots__ = ("_free", "_more", "_scope", "_start", "name")

    def __init__(self, name: str) -> None:
        try:
            known = name in valid_names
        except TypeError:  # unhashable
            known = False
        if not known:
            check_name(name, "timer name")
        self.name = name
        # One item while no use is in progress: ``pop()`` claims the instance atomically.
        self._free: list[None] = [None]
        # _scope and _start are set by the use that claims the instance.
        # Overlapping uses still open, in any thread or task; created on the first overlap.
        self._more: list[_Use] | None = None

    def __repr__(self) -> str:
        return f"<timed {self.name!r}>"

    def __enter__(self) -> timed:
        s = _CURRENT.get()
        try:
            self._free.pop()
        except IndexError:  # another use of this instance is in progress
            self._enter_overlapping(s)
            return self
        self._scope = s
        if s is not None:
            self._start = perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        end = perf_counter()
        if self._more:
            s, start = self._exit_overlapping()
            if s is None:
                return
        else:  # no overlapping use open: this exit is the claiming use's
            s = self._scope
            if s is None:
                self._free.append(None)
                return
            start = self._start
            self._scope = None
            self._free.append(None)
        samples = s._pending[self.name]  # a defaultdict: a new name gets its list atomically
        samples.append(end - start)
        s._dirty = True
        if len(samples) > 256:  # _MAX_PENDING, as a constant: this is the hot path
            s._fold()

    def _enter_overlapping(self, s: Scope | None) -> None:
        use = _Use()
        use.timer = self
        use.scope = s
        use.token = _OPEN.set(use)
        with _overlap_lock:
            if self._more is None:
                self._more = []
            self._more.append(use)
        use.start = perf_counter()

    def _exit_overlapping(self) -> tuple[Scope | None, float]:
        with _overlap_lock:
            more = self._more
            assert more is not None  # only called when there are overlapping uses
            top = _OPEN.get()
            if top is not None and top.timer is self and top in more:
                try:
                    _OPEN.reset(top.token)
                except ValueError:
                    pass  # inherited from the context this one was copied from: not this use's
                else:
                    more.remove(top)
                    return top.scope, top.start
            if not self._free:  # the claiming use exits while overlapping ones are still open
                found = getattr(self, "_scope", None), getattr(self, "_start", 0.0)
                self._scope = None
                self._free.append(None)
                return found
            # Entries and exits out of order within one thread or task (a generator suspended
            # inside ``with``): take the latest open use; count and total stay right.
            if not more:
                return None, 0.0
            use = more.pop()
            return use.scope, use.start

    def __call__(self, fn: F) -> F:
        name = self.name
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with timed(name):
                    return await fn(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with timed(name):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]
