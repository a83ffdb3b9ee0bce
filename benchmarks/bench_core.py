"""
Core benchmark: obslog side by side with the plain stdlib, python-json-logger and structlog.

All cases (:mod:`benchmarks.cases`) run in one process, interleaved, writing to a null stream; the
unit (1.00x) is a plain ``logger.info`` through ``logging.Formatter``.  Wall-clock figures swing
with the machine's load; ``python -m benchmarks --instructions`` counts CPU instructions instead.

    python -m benchmarks.bench_core
"""

from __future__ import annotations

import platform
import sys

from obslog._config import reset_defaults

from ._util import measure, table
from .cases import LINE_CASES, TIMER_CASES, Builder


def _measure(cases: dict[str, tuple[str, Builder]], number: int) -> list[tuple[str, float]]:
    built = [(label, build()) for label, build in cases.values()]
    rows = measure(built, number=number)
    reset_defaults()
    return rows


def main() -> int:
    """Run every core case and print the tables."""
    print(f"obslog core benchmark — CPython {platform.python_version()} on {platform.machine()}")
    timer_rows = _measure(TIMER_CASES, 100_000)
    print(table("(a) timers, unit = bare perf_counter pair", timer_rows, timer_rows[0][1]))
    rows = _measure(LINE_CASES, 10_000)
    print(table("(b)(c)(d) one line, unit = plain stdlib logger.info", rows, rows[0][1]))
    by_label = dict(rows)
    ours = by_label[LINE_CASES["obslog_structlog"][0]]
    for key in ("structlog_alone", "structlog_recipe"):
        label = LINE_CASES[key][0]
        print(f"  structlog + obslog vs {label.split(':')[0]}: {ours / by_label[label]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
