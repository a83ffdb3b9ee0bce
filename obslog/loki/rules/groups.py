"""
The rule groups obslog ships: requests, latency, tasks, runtime, timers and alerts.

Conventions shared by every rule:

* Each rule reads the canonical stream of its event (see :func:`~.logql.stream_selector`), then
  a line filter on the exact event (``|= `"event":"request"```) runs before ``| json``, and a
  label filter on the parsed ``event`` keeps only canonical lines, so no request is counted
  twice, even when a line reached the wrong stream.  Every result keeps ``service_name`` and
  ``env``.
* Counts, rates and sums are weighted by ``sample_rate`` (``rate`` over ``unwrap sample_rate`` is
  the sum of the weights divided by the range); quantiles and maxima cannot be re-weighted.
* Every metric pipeline ends with ``| __error__=""``; ``by`` sits on an outer ``sum`` for the range
  functions that forbid grouping; durations are recorded in seconds; record names follow
  ``level:metric:operations``.

.. versionadded:: 0.2.0
   Split out of ``obslog.loki._rules``.
"""

from __future__ import annotations

import re

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..._schema import DURATION_MS, OUTCOME, PID, STATUS, TIMINGS
from .logql import (
    INTERVAL,
    RATE_RANGE,
    RUNTIME_RANGE,
    SLOW_RANGE,
    by,
    canonical,
    ratio,
    stream_selector,
    sum_by,
    unwrapped,
    weighted_rate,
    weighted_sum_rate,
)


__all__ = [
    "DEFAULT_TIMERS",
    "TIMER_NAME",
    "Group",
    "Rule",
    "Streams",
    "alert_group",
    "as_streams",
    "check_timers",
    "latency_group",
    "request_group",
    "runtime_group",
    "task_group",
    "timer_group",
]

#: Timers of ``obslog demo``; the shipped ``obslog-timers.yaml`` is built for these.
DEFAULT_TIMERS: tuple[str, ...] = ("db_query", "cache_get", "remote_call")

#: Valid timer names (the same rule as :func:`obslog.timed`).
TIMER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")

_QUANTILES: tuple[tuple[str, str], ...] = (("0.5", "p50"), ("0.9", "p90"), ("0.99", "p99"))

Rule = dict[str, Any]
Group = dict[str, Any]


@dataclass(frozen=True)
class Streams:
    """
    Which streams the rules read: a service (or all), its label, canonical stream or not.

    Calling it with an event (or several) returns that event's selector, through
    :func:`~.logql.stream_selector`.

    .. versionadded:: 0.2.0
    """

    service: str | None = None
    label: str = "service_name"
    canonical_stream: bool = True

    def __post_init__(self) -> None:
        stream_selector(None, self.service, label=self.label)  # validate once, here

    def __call__(self, event: str | Sequence[str]) -> str:
        return stream_selector(
            event, self.service, label=self.label, canonical_stream=self.canonical_stream
        )


def as_streams(sel: Streams | str) -> Callable[[str | Sequence[str]], str]:
    """Return *sel* as a function of the event; a plain selector string is used for every event."""
    if isinstance(sel, str):
        return lambda _event: sel
    return sel


def _record(name: str, expr: str, labels: Mapping[str, str] | None = None) -> Rule:
    rule: Rule = {"record": name, "expr": expr}
    if labels:
        rule["labels"] = dict(labels)
    return rule


def _alert(name: str, expr: str, for_: str, severity: str, summary: str, description: str) -> Rule:
    return {
        "alert": name,
        "expr": expr,
        "for": for_,
        "labels": {"severity": severity},
        "annotations": {"summary": summary, "description": description},
    }


def check_timers(timers: Sequence[str]) -> list[str]:
    """
    Return the timer names as a list, or raise when one is invalid.

    Raises:
        ValueError: A timer name is invalid or repeated, or there is none.
    """
    names = list(timers)
    if not names:
        msg = "give at least one timer name"
        raise ValueError(msg)
    for name in names:
        if not TIMER_NAME.fullmatch(name):
            msg = f"invalid timer name {name!r}: use [A-Za-z_][A-Za-z0-9_]{{0,63}}"
            raise ValueError(msg)
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        msg = f"timer names given twice: {', '.join(duplicates)}"
        raise ValueError(msg)
    return names


def _status_class() -> str:
    return (
        "| label_format status_class="
        "`{{ if .status }}{{ substr 0 1 .status }}xx{{ else }}none{{ end }}`"
    )


def _error_rate(sel: str, event: str, key: str, window: str = RATE_RANGE) -> str:
    """Weighted rate of *event* lines with ``outcome="error"``, summed by *key*."""
    errors = weighted_rate(sel, event, [key, OUTCOME], f'| {OUTCOME}="error"', window=window)
    return sum_by(by(key), errors)


def _error_records(name: str, sel: str, event: str, key: str) -> list[Rule]:
    """
    Records ``<name>:rate1m`` and ``<name>:ratio_rate5m``: the error rate of *event* lines and
    its share of all of them over 5 minutes, by *key*.
    """
    all_5m = sum_by(by(key), weighted_rate(sel, event, [key], window=SLOW_RANGE))
    return [
        _record(f"{name}:rate1m", _error_rate(sel, event, key)),
        _record(f"{name}:ratio_rate5m", ratio(_error_rate(sel, event, key, SLOW_RANGE), all_5m)),
    ]


def _quantile_records(name: str, pipeline: str, grouping: str) -> list[Rule]:
    """Records ``<name>:p50_5m`` (p90, p99): quantiles of ``duration_ms`` in seconds."""
    return [
        _record(
            f"{name}:{label}_{SLOW_RANGE}",
            f"quantile_over_time({phi}, {unwrapped(pipeline, 'duration_ms', SLOW_RANGE)}) "
            f"{grouping} / 1000",
        )
        for phi, label in _QUANTILES
    ]


def request_group(sel: Streams | str) -> Group:
    """
    Return the group of request rates, errors and weighted request time.

    Args:
        sel: Which streams to read: a :class:`Streams`, or one selector string used for
            every event (obslog 0.1's form).

    Returns:
        A Loki rule group.
    """
    streams = as_streams(sel)
    req = streams("request")
    requests_1m = weighted_rate(req, "request", ["route", "method", STATUS], _status_class())
    return {
        "name": "obslog-requests",
        "interval": INTERVAL,
        "rules": [
            _record(
                "service_route_method_status:obslog_requests:rate1m",
                sum_by(by("route", "method", "status_class"), requests_1m),
            ),
            *_error_records("service_route:obslog_request_errors", req, "request", "route"),
            _record(
                "service_route:obslog_request_duration_seconds_sum:rate1m",
                sum_by(
                    by("route"),
                    weighted_sum_rate(req, "request", ["route", DURATION_MS], DURATION_MS),
                )
                + " / 1000",
            ),
        ],
    }


def latency_group(sel: Streams | str) -> Group:
    """
    Return the group of request latency quantiles (p50, p90, p99 over 5 minutes, in seconds).

    Quantiles cannot be weighted by ``sample_rate``: under sampling they describe the kept lines.

    Args:
        sel: Which streams to read: a :class:`Streams`, or one selector string used for
            every event (obslog 0.1's form).

    Returns:
        A Loki rule group.
    """
    streams = as_streams(sel)
    req = streams("request")
    pipeline = canonical(req, "request", ["route", DURATION_MS])
    rules = _quantile_records(
        "service_route:obslog_request_duration_seconds", pipeline, by("route")
    )
    return {"name": "obslog-request-latency", "interval": INTERVAL, "rules": rules}


def task_group(sel: Streams | str) -> Group:
    """
    Return the group of Celery task rates, failure ratio and duration quantiles.

    A failure is a ``task`` line with ``outcome="error"`` (Celery state FAILURE or REJECTED, or an
    exception); a retried run has ``outcome="retry"`` and is not a failure.

    Args:
        sel: Which streams to read: a :class:`Streams`, or one selector string used for
            every event (obslog 0.1's form).

    Returns:
        A Loki rule group.
    """
    streams = as_streams(sel)
    task = streams("task")
    tasks_1m = weighted_rate(task, "task", ["task_name", "state"])
    duration = canonical(task, "task", ["task_name", DURATION_MS])
    rules = [
        _record(
            "service_task_state:obslog_tasks:rate1m", sum_by(by("task_name", "state"), tasks_1m)
        ),
        *_error_records("service_task:obslog_task_failures", task, "task", "task_name"),
        *_quantile_records("service_task:obslog_task_duration_seconds", duration, by("task_name")),
    ]
    return {"name": "obslog-tasks", "interval": INTERVAL, "rules": rules}


def runtime_group(sel: Streams | str) -> Group:
    """
    Return the group of runtime figures by service and pid, from ``runtime`` lines.

    Args:
        sel: Which streams to read: a :class:`Streams`, or one selector string used for
            every event (obslog 0.1's form).

    Returns:
        A Loki rule group.
    """
    streams = as_streams(sel)
    runtime = streams("runtime")
    by_pid = by(PID)

    def reading(function: str, field: str) -> str:
        pipeline = canonical(runtime, "runtime", [PID, field])
        return f"{function}({unwrapped(pipeline, field, RUNTIME_RANGE)}) {by_pid}"

    w = RUNTIME_RANGE
    rules = [
        _record(f"service_pid:obslog_rss_bytes:max{w}", reading("max_over_time", "rss_bytes")),
        _record(f"service_pid:obslog_cpu_percent:avg{w}", reading("avg_over_time", "cpu_percent")),
        _record(f"service_pid:obslog_threads:max{w}", reading("max_over_time", "threads")),
        _record(f"service_pid:obslog_open_fds:max{w}", reading("max_over_time", "fds")),
        _record(
            f"service_pid:obslog_gc_collections:last{w}",
            reading("last_over_time", "gc_collections"),
        ),
    ]
    return {"name": "obslog-runtime", "interval": INTERVAL, "rules": rules}


def _timer_rules(sel: str, event: str, key: str, level: str, timers: Sequence[str]) -> list[Rule]:
    """
    Records of each timer on *event* lines: total time, calls and longest call, by *key*.

    Every rule carries a ``timer`` label; record names start with *level*.

    Raises:
        ValueError: A timer name is invalid or repeated, or there is none.
    """
    grouping = by(key)
    rules: list[Rule] = []
    for timer in check_timers(timers):
        present = f'"{timer}":'
        labels = {"timer": timer}
        total = weighted_sum_rate(
            sel, event, [key, f'timer_ms="{TIMINGS}.{timer}.ms"'], "timer_ms", present
        )
        calls = weighted_sum_rate(
            sel, event, [key, f'timer_calls="{TIMINGS}.{timer}.count"'], "timer_calls", present
        )
        longest = canonical(
            sel, event, [key, f'timer_max_ms="{TIMINGS}.{timer}.max_ms"'], contains=present
        )
        rules += [
            _record(
                f"{level}:obslog_timer_seconds:rate1m", sum_by(grouping, total) + " / 1000", labels
            ),
            _record(f"{level}:obslog_timer_calls:rate1m", sum_by(grouping, calls), labels),
            _record(
                f"{level}:obslog_timer_max_seconds:max1m",
                f"max_over_time({unwrapped(longest, 'timer_max_ms', RATE_RANGE)}) {grouping}"
                " / 1000",
                labels,
            ),
        ]
    return rules


def timer_group(sel: Streams | str, timers: Sequence[str], name: str = "obslog-timers") -> Group:
    """
    Return the per-timer group: total time, calls and longest call per route, for each timer.

    Every rule carries a ``timer`` label with the timer's name, so one metric holds all timers.

    Args:
        sel: Which streams to read: a :class:`Streams`, or one selector string used for
            every event (obslog 0.1's form).
        timers: Timer names as given to :func:`obslog.timed`.
        name: The group's name.

    Returns:
        A Loki rule group.

    Raises:
        ValueError: A timer name is invalid or repeated, or there is none.
    """
    rules = _timer_rules(as_streams(sel)("request"), "request", "route", "service_route", timers)
    return {"name": name, "interval": INTERVAL, "rules": rules}


def alert_group(sel: Streams | str) -> Group:
    """
    Return the alerting rules: error ratio, p99 latency, RSS growth, silence.

    Args:
        sel: Which streams to read: a :class:`Streams`, or one selector string used for
            every event (obslog 0.1's form).

    Returns:
        A Loki rule group.
    """
    streams = as_streams(sel)
    req = streams("request")
    runtime = streams("runtime")
    by_route = by("route")
    errors = _error_rate(req, "request", "route", SLOW_RANGE)
    total = sum_by(by_route, weighted_rate(req, "request", ["route"], window=SLOW_RANGE))
    latency = canonical(req, "request", ["route", DURATION_MS])
    rss = canonical(runtime, "runtime", [PID, "rss_bytes"])
    by_pid = by(PID)
    # Peak of the last 15 minutes against the lowest reading of the last hour.  (`offset` after
    # a parsed pipeline is valid LogQL but @grafana/lezer-logql 0.4.2 rejects it.)
    rss_now = f"max_over_time({unwrapped(rss, 'rss_bytes', '15m')}) {by_pid}"
    rss_low = f"min_over_time({unwrapped(rss, 'rss_bytes', '1h')}) {by_pid}"
    lines = f'{streams(("request", "task"))} |~ `"event":"(request|task)"`'
    by_service = by()
    return {
        "name": "obslog-alerts",
        "interval": INTERVAL,
        "rules": [
            _alert(
                "ObslogHighErrorRatio",
                f"(\n{errors}\n/\n{total}\n) > 0.05\nand\n{total} > 0.1",
                "10m",
                "warning",
                "{{ $labels.service_name }} {{ $labels.route }}: "
                "{{ $value | humanizePercentage }} of requests fail",
                "More than 5% of the requests of route {{ $labels.route }} "
                "({{ $labels.service_name }}, env {{ $labels.env }}) ended with outcome=error "
                "over 5 minutes, for 10 minutes, at more than 0.1 request/s.",
            ),
            _alert(
                "ObslogHighLatencyP99",
                f"quantile_over_time(0.99, {unwrapped(latency, 'duration_ms', SLOW_RANGE)}) "
                f"{by_route} / 1000 > 1",
                "10m",
                "warning",
                "{{ $labels.service_name }} {{ $labels.route }}: p99 latency "
                "{{ $value | humanizeDuration }}",
                "The 99th percentile of duration_ms of route {{ $labels.route }} "
                "({{ $labels.service_name }}, env {{ $labels.env }}) has been above 1 s over "
                "5 minutes for 10 minutes (sampled lines: quantiles are not re-weighted).",
            ),
            _alert(
                "ObslogRSSGrowth",
                f"(\n{rss_now}\n/\n{rss_low}\n) > 1.5\nand\n{rss_now} > 104857600",
                "30m",
                "warning",
                "{{ $labels.service_name }} pid {{ $labels.pid }}: RSS grew "
                "{{ $value | humanize }}x within an hour",
                "The peak RSS of pid {{ $labels.pid }} ({{ $labels.service_name }}, env "
                "{{ $labels.env }}) over the last 15 minutes is more than 1.5 times its lowest "
                "reading of the last hour and above 100 MiB, for 30 minutes: a leak or an "
                "unbounded cache.",
            ),
            _alert(
                "ObslogNoCanonicalLines",
                f"{sum_by(by_service, f'count_over_time({lines} [1h] offset 10m)')}\n"
                f"unless\n{sum_by(by_service, f'count_over_time({lines} [10m])')}",
                "5m",
                "critical",
                "{{ $labels.service_name }} wrote no request or task line for 15 minutes",
                "{{ $labels.service_name }} (env {{ $labels.env }}) wrote canonical lines in the "
                "hour before but none in the last 10 minutes, for 5 minutes: the service, its "
                "shipping or its traffic is down.  The alert resolves itself about 70 minutes "
                "into the silence, when the hour before is silent too.",
            ),
        ],
    }
