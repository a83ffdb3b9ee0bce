"""
CPU instructions per call for every core case, counted by valgrind's callgrind.

Wall-clock figures on a shared machine swing by 30-50% between runs; instruction counts do not.
Each case of :mod:`benchmarks.cases` runs in its own process under ``valgrind --tool=callgrind``
twice, with 0 and with N calls after the same set-up and warm-up call; the difference divided by N
is the cost of one call, set-up, imports and interpreter start-up cancelled out.

    python -m benchmarks --instructions            # every case
    python -m benchmarks --instructions plain timed  # some cases

valgrind comes from Debian's ``valgrind`` package (``.ci/run`` installs it).  Runs are spread over
the machine's cores; expect a few minutes for every case.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .cases import CASES, LINE_CASES, TIMER_CASES


__all__ = ["count", "main"]

# Calls per measured run: enough that one call's cost dominates any per-run jitter (gc timing).
CALLS = {"bare_timer": 20_000, "timed": 20_000, "disabled_stdlib": 20_000}
DEFAULT_CALLS = 4_000
DEFAULT_CALLS_DISABLED = 20_000
_SUMMARY = re.compile(rb"^(?:summary|totals):\s*(\d+)", re.MULTILINE)
_ROOT = Path(__file__).resolve().parent.parent


def _calls(case: str) -> int:
    if case in CALLS:
        return CALLS[case]
    return DEFAULT_CALLS_DISABLED if case.startswith("disabled") else DEFAULT_CALLS


def _run_case(case: str, calls: int) -> None:
    """The measured process: build *case*, call it once to warm up, then *calls* times."""
    fn = CASES[case][1]()
    fn()
    for _ in range(calls):
        fn()


def _instructions(case: str, calls: int, valgrind: str, workdir: Path) -> int:
    out = workdir / f"{case}.{calls}.callgrind"
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    command = [
        valgrind,
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        sys.executable,
        "-m",
        "benchmarks.instructions",
        "--run",
        case,
        str(calls),
    ]
    proc = subprocess.run(command, cwd=_ROOT, env=env, capture_output=True, check=False)
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-5:]
        msg = f"case {case!r} failed under valgrind (exit {proc.returncode}): " + " | ".join(tail)
        raise RuntimeError(msg)
    match = _SUMMARY.search(out.read_bytes())
    if match is None:
        msg = f"no instruction total in {out}"
        raise RuntimeError(msg)
    return int(match.group(1))


def count(cases: list[str], jobs: int | None = None) -> dict[str, float]:
    """Return instructions per call of each case in *cases*."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        msg = "valgrind is not installed (Debian: apt-get install valgrind)"
        raise RuntimeError(msg)
    # Write the bytecode caches first: a run that compiles a module would count the compiler too.
    subprocess.run(
        [sys.executable, "-c", "import benchmarks.cases, obslog.loki"], cwd=_ROOT, check=True
    )
    with tempfile.TemporaryDirectory(prefix="obslog-callgrind-") as tmp:
        runs = [(case, n) for case in cases for n in (0, _calls(case))]
        with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
            totals = dict(
                zip(
                    runs,
                    pool.map(lambda run: _instructions(*run, valgrind, Path(tmp)), runs),
                    strict=True,
                )
            )
    return {case: (totals[case, _calls(case)] - totals[case, 0]) / _calls(case) for case in cases}


def _table(title: str, names: list[str], per_call: dict[str, float], unit: str) -> list[str]:
    rows = [name for name in names if name in per_call]
    if not rows:
        return []
    labels = {name: CASES[name][0] for name in rows}
    width = max(len(label) for label in labels.values())
    lines = [title, f"  {'case'.ljust(width)}  {'instr/call':>11}  {'ratio':>7}"]
    for name in rows:
        ratio = f"{per_call[name] / per_call[unit]:6.3f}x" if unit in per_call else "      -"
        lines.append(f"  {labels[name].ljust(width)}  {per_call[name]:11,.0f}  {ratio}")
    return lines


RATIOS = [
    ("structlog + obslog / structlog alone", "obslog_structlog", "structlog_alone"),
    (
        "structlog + obslog / structlog's ProcessorFormatter recipe",
        "obslog_structlog",
        "structlog_recipe",
    ),
    (
        "disabled structlog + obslog / structlog's own disabled call",
        "disabled_obslog_structlog",
        "disabled_structlog",
    ),
    ("stdlib + obslog / python-json-logger OrjsonFormatter", "obslog_stdlib", "pjl_orjson"),
    ("LokiHandler.emit / StreamHandler.emit", "loki_emit", "stream_emit"),
]


def report(per_call: dict[str, float]) -> str:
    """Format the per-call counts as tables of ratios, and the pairwise ratios the targets name."""
    lines = [
        "obslog instruction counts (callgrind) — "
        f"CPython {platform.python_version()} on {platform.machine()}"
    ]
    lines += _table(
        "one line, unit = plain stdlib logger.info", list(LINE_CASES), per_call, "plain"
    )
    lines += _table(
        "timers, unit = bare perf_counter pair", list(TIMER_CASES), per_call, "bare_timer"
    )
    pairs = [(label, a, b) for label, a, b in RATIOS if a in per_call and b in per_call]
    if pairs:
        lines.append("pairs")
        width = max(len(label) for label, _, _ in pairs)
        lines += [
            f"  {label.ljust(width)}  {per_call[a] / per_call[b]:6.3f}x" for label, a, b in pairs
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Count every case (or those named) and print the tables."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks --instructions")
    parser.add_argument(
        "cases",
        nargs="*",
        metavar="CASE",
        help=f"cases to count (default: all): {', '.join(CASES)}",
    )
    parser.add_argument("--run", nargs=2, metavar=("CASE", "CALLS"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--jobs", type=int, default=None, help="processes at once (default: one per core)"
    )
    args = parser.parse_args(argv)
    if args.run:
        _run_case(args.run[0], int(args.run[1]))
        return 0
    unknown = [case for case in args.cases if case not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    try:
        per_call = count(args.cases or list(CASES), args.jobs)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report(per_call))
    return 0


if __name__ == "__main__":
    sys.exit(main())
