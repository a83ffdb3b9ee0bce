"""
Old home of the rule generator: a thin re-export of :mod:`obslog.loki.rules`.

``python -m obslog.loki._rules --write DIR | --check DIR`` keeps working; use
``python -m obslog.loki.rules`` and ``import obslog.loki.rules`` instead.
"""

from __future__ import annotations

import sys

from collections.abc import Sequence

from . import cli as _cli
from .rules import (
    DEFAULT_TIMERS,
    HEADER,
    NO_GROUPING,
    TIMER_NAME,
    alert_group,
    build_files,
    check,
    latency_group,
    lint,
    lint_logql,
    render,
    request_group,
    runtime_group,
    selector,
    task_group,
    timer_file,
    timer_group,
    write,
)
from .rules.cli import module_main


__all__ = [
    "DEFAULT_TIMERS",
    "HEADER",
    "NO_GROUPING",
    "TIMER_NAME",
    "alert_group",
    "build_files",
    "check",
    "latency_group",
    "lint",
    "lint_logql",
    "main",
    "render",
    "request_group",
    "runtime_group",
    "selector",
    "task_group",
    "timer_file",
    "timer_group",
    "write",
]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``obslog loki ...`` (*argv* starts with the command, e.g. ``rules``)."""
    return _cli.main(argv)


def _module_main(argv: Sequence[str] | None = None) -> int:
    return module_main(argv, prog="python -m obslog.loki._rules")


if __name__ == "__main__":
    sys.exit(_module_main())
