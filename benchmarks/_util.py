"""Shared helpers for the benchmarks: a null stream and an interleaved best-of-N timer."""

from __future__ import annotations

import timeit

from collections.abc import Callable


class NullStream:
    """A stream that drops everything: the benchmarks time logging, not the terminal."""

    def write(self, _text: str) -> int:
        return 0

    def flush(self) -> None:
        pass


def measure(
    cases: list[tuple[str, Callable[[], object]]], number: int = 20_000, rounds: int = 9
) -> list[tuple[str, float]]:
    """
    Return ``(label, best µs per call)`` for each case.

    The cases are interleaved: every round times each case once, and each case keeps its best round.
    On a busy machine this compares the cases under the same load, which separate runs do not.
    """
    for _, fn in cases:
        fn()  # warm caches (first-use logger caching, imports)
    best = {label: float("inf") for label, _ in cases}
    for _ in range(rounds):
        for label, fn in cases:
            elapsed = timeit.timeit(fn, number=number) / number * 1e6
            best[label] = min(best[label], elapsed)
    return [(label, best[label]) for label, _ in cases]


def table(title: str, rows: list[tuple[str, float]], unit: float) -> str:
    """Format *rows* of ``(label, µs)`` with their ratio to *unit*."""
    width = max(len(label) for label, _ in rows)
    lines = [title, f"  {'case'.ljust(width)}  {'µs/call':>9}  {'ratio':>7}"]
    for label, us in rows:
        lines.append(f"  {label.ljust(width)}  {us:9.3f}  {us / unit:6.2f}x")
    return "\n".join(lines)
