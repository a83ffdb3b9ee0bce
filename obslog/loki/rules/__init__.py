"""
Loki ruler rules for obslog's canonical lines: the single source of truth.

The recording and alerting rules shipped in ``loki/rules/fake/`` and the rule files printed by
``obslog loki rules`` are built here, from the log schema obslog writes:

* ``request`` lines (``method``, ``route``, ``status``, ``duration_ms``, ``outcome``,
  ``sample_rate``, ``timings.<name>.{ms,count,max_ms}``),
* ``task`` lines (``task_name``, ``state``, ``duration_ms``, ``outcome``, ``sample_rate``),
* ``runtime`` lines (``pid``, ``rss_bytes``, ``cpu_percent``, ``threads``, ``fds``,
  ``gc_collections``).

Modules: :mod:`.logql` (stream selectors and pipelines), :mod:`.groups` (the rule groups),
:mod:`.files` (files and the YAML emitter), :mod:`.lint` (what Loki rejects), :mod:`.cli`.

Regenerate the shipped files with ``python -m obslog.loki.rules --write loki/rules/fake`` and
check them with ``python -m obslog.loki.rules --check loki/rules/fake``.

.. versionadded:: 0.2.0
   The public home of what ``obslog.loki._rules`` held (that path keeps working).
"""

from __future__ import annotations

from .cli import main, module_main
from .files import HEADER, build_files, check, command_header, merge, render, timer_file, write
from .groups import (
    DEFAULT_TIMERS,
    TIMER_NAME,
    Streams,
    alert_group,
    latency_group,
    request_group,
    runtime_group,
    task_group,
    timer_group,
)
from .lint import NO_GROUPING, lint, lint_logql
from .logql import (
    CANONICAL_EVENTS,
    CANONICAL_LABEL,
    INTERVAL,
    RATE_RANGE,
    RUNTIME_RANGE,
    SLOW_RANGE,
    selector,
    stream_selector,
)


__all__ = [
    "CANONICAL_EVENTS",
    "CANONICAL_LABEL",
    "DEFAULT_TIMERS",
    "HEADER",
    "INTERVAL",
    "NO_GROUPING",
    "RATE_RANGE",
    "RUNTIME_RANGE",
    "SLOW_RANGE",
    "TIMER_NAME",
    "Streams",
    "alert_group",
    "build_files",
    "check",
    "command_header",
    "latency_group",
    "lint",
    "lint_logql",
    "main",
    "merge",
    "module_main",
    "render",
    "request_group",
    "runtime_group",
    "selector",
    "stream_selector",
    "task_group",
    "timer_file",
    "timer_group",
    "write",
]
