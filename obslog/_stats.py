"""
Counters that make obslog's own failures visible.

Logging must never raise into the application, so every failure that obslog swallows (a record
that could not be rendered, a listener that raised, a line dropped by a full queue) is counted
here.  The counters only grow; read them with :func:`obslog.stats` or scrape them through
:mod:`obslog.metrics`.
"""

from __future__ import annotations

import os
import threading


__all__ = ["incr", "snapshot"]

_lock = threading.Lock()


def _renew_lock() -> None:
    # A thread of the parent may have held the lock at fork time; the child would wait forever.
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_renew_lock)
_counters: dict[str, int] = {
    "render_errors": 0,
    "dropped": 0,
    "listener_errors": 0,
    "canonical_lines": 0,
    "sampled_out": 0,
    "runtime_errors": 0,
    "canonical_errors": 0,
    "scope_foreign_exits": 0,
}


def incr(name: str, n: int = 1) -> None:
    """Add *n* to the counter *name*, creating it at zero if needed."""
    with _lock:
        _counters[name] = _counters.get(name, 0) + n


def snapshot() -> dict[str, int]:
    """Return a copy of every counter."""
    with _lock:
        return dict(_counters)
