"""
Timer rules over Celery ``task`` lines: time, calls and longest call of each timer, per task.

A task's canonical line carries the same ``timings`` object as a request line
(``{"db_query": {"ms": 12.3, "count": 2, "max_ms": 8.0}}``), so the timers used inside tasks get
the same three series as those of requests, by ``task_name`` instead of ``route``:

* ``service_task:obslog_timer_seconds:rate1m``: seconds spent in the timer per second,
* ``service_task:obslog_timer_calls:rate1m``: calls per second,
* ``service_task:obslog_timer_max_seconds:max1m``: the longest call over the last minute,

each with a ``timer`` label.  Time and calls are weighted by ``sample_rate``; the maximum is not.
``obslog loki rules --timer NAME --task-timers`` prints them beside the request timer rules.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

from collections.abc import Sequence

from .rules.groups import Group, Streams, _timer_rules, as_streams
from .rules.logql import INTERVAL


__all__ = ["TASK_NAME", "task_timer_group"]

#: The field naming the Celery task on ``task`` lines.
TASK_NAME = "task_name"


def task_timer_group(
    sel: Streams | str, timers: Sequence[str], name: str = "obslog-task-timers"
) -> Group:
    """
    Return the per-timer rules over ``task`` lines: total time, calls and longest call per task.

    Args:
        sel: Which streams to read: a :class:`~obslog.loki.rules.Streams` (the canonical
            ``task`` stream by default), or one selector string.
        timers: Timer names as given to :func:`obslog.timed`.
        name: The group's name.

    Returns:
        A Loki rule group.

    Raises:
        ValueError: A timer name is invalid or repeated, or there is none.
    """
    rules = _timer_rules(as_streams(sel)("task"), "task", TASK_NAME, "service_task", timers)
    return {"name": name, "interval": INTERVAL, "rules": rules}
