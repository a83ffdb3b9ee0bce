"""
Memory: what one line allocates, beside the peers, and what a million request scopes leave behind.

- *peak bytes per line*: the most memory (tracemalloc) alive at once while one line is written,
  above what was alive before it: the line's transient footprint, dicts, strings and buffers;
- *retained per line*: bytes and blocks still allocated after 10,000 lines, divided by 10,000
  (zero means nothing accumulates);
- *RSS growth*: 1,000,000 request scopes with 3 timers and a canonical line each through the stdlib
  path to a null stream, after a warm-up of 10,000 (the promise: under 5 MB).

    python -m benchmarks.bench_memory
"""

from __future__ import annotations

import gc
import logging
import platform
import sys
import tracemalloc

from collections.abc import Callable

import psutil

from obslog._config import reset_defaults

from .cases import LINE_CASES, request_scope


__all__ = ["main"]

LINES = ("plain", "pjl", "pjl_orjson", "obslog_stdlib", "structlog_alone", "obslog_structlog")
RETAIN_CALLS = 10_000
SCOPES = 1_000_000


def _peak(fn: Callable[[], object], repeat: int = 200) -> int:
    """The smallest peak over *repeat* calls: the call's own footprint, not a gc pause."""
    best = sys.maxsize
    for _ in range(repeat):
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        fn()
        best = min(best, tracemalloc.get_traced_memory()[1] - before)
    return best


def _retained(fn: Callable[[], object]) -> tuple[float, float]:
    gc.collect()
    snap = tracemalloc.take_snapshot()
    for _ in range(RETAIN_CALLS):
        fn()
    gc.collect()
    stats = tracemalloc.take_snapshot().compare_to(snap, "filename")
    size = sum(s.size_diff for s in stats)
    blocks = sum(s.count_diff for s in stats)
    return size / RETAIN_CALLS, blocks / RETAIN_CALLS


def allocations() -> list[tuple[str, int, float, float]]:
    """Return (label, peak bytes, retained bytes, retained blocks) per line for each case."""
    built = [(LINE_CASES[key][0], LINE_CASES[key][1]()) for key in LINES]
    for _, fn in built:
        fn()  # first-use caches out of the way
    tracemalloc.start()
    try:
        rows = [(label, _peak(fn), *_retained(fn)) for label, fn in built]
    finally:
        tracemalloc.stop()
        reset_defaults()
    return rows


def rss_growth(scopes: int = SCOPES) -> tuple[float, float]:
    """Return (MB before, MB growth) of RSS over *scopes* request scopes after a warm-up."""
    request = request_scope()
    for _ in range(10_000):
        request()
    gc.collect()
    process = psutil.Process()
    before = process.memory_info().rss
    for _ in range(scopes):
        request()
    gc.collect()
    after = process.memory_info().rss
    logging.getLogger("obslog").handlers.clear()
    reset_defaults()
    return before / 2**20, (after - before) / 2**20


def main() -> int:
    """Print the allocation table and the RSS growth of a million request scopes."""
    print(f"obslog memory benchmark — CPython {platform.python_version()} on {platform.machine()}")
    rows = allocations()
    unit = rows[0][1]
    width = max(len(label) for label, *_ in rows)
    print("allocations per line (tracemalloc), peak ratio to the plain stdlib line")
    print(f"  {'case'.ljust(width)}  {'peak B':>7}  {'ratio':>6}  {'kept B':>7}  {'kept blk':>8}")
    for label, peak, kept, blocks in rows:
        print(f"  {label.ljust(width)}  {peak:7d}  {peak / unit:5.2f}x  {kept:7.2f}  {blocks:8.3f}")
    before, growth = rss_growth()
    print(
        f"RSS over {SCOPES:,} request scopes (3 timers, canonical line each): "
        f"{before:.1f} MB before, {growth:+.2f} MB after (promise: < 5 MB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
