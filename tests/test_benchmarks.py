"""
The benchmark tools the README names keep working (what they measure is reported, not asserted).
"""

from __future__ import annotations

import re
import subprocess
import sys

from pathlib import Path

from _require import require_binary


ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


class TestInstructions:
    def test_counts_instructions_per_call_with_ratios(self):
        """`python -m benchmarks --instructions CASE...` prints each case's count and its ratio."""
        require_binary("valgrind")
        proc = _run("--instructions", "bare_timer", "timed")
        assert 0 == proc.returncode, proc.stderr
        rows = dict(
            re.findall(r"^\s+(.+?)\s{2,}([\d,]+)\s+[\d.]+x$", proc.stdout, flags=re.MULTILINE)
        )
        unit = int(rows["bare perf_counter pair + dict update (unit)"].replace(",", ""))
        timed = int(rows["with obslog.timed(...) in a scope"].replace(",", ""))
        assert 0 < unit < timed

    def test_unknown_case_is_one_error_line(self):
        """An unknown case name is a usage error naming the valid cases, exit 2, no traceback."""
        proc = _run("--instructions", "no_such_case")
        assert 2 == proc.returncode
        assert "unknown case(s) no_such_case" in proc.stderr
        assert "Traceback" not in proc.stderr
