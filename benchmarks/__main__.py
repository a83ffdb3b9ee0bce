"""Run every benchmark in one process: ``python -m benchmarks``."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import benchmarks


def main() -> int:
    """Import and run each ``benchmarks/bench_*.py`` module's ``main()`` in turn."""
    for info in sorted(pkgutil.iter_modules(benchmarks.__path__), key=lambda m: m.name):
        if info.name.startswith("bench_"):
            module = importlib.import_module(f"benchmarks.{info.name}")
            print()
            module.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
