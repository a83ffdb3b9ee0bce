"""
Run every benchmark in one process: ``python -m benchmarks``.

``python -m benchmarks --instructions [CASE ...]`` counts CPU instructions per call of the core
cases under callgrind instead (see :mod:`benchmarks.instructions`): the stable figure on a shared
machine.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import benchmarks


def main() -> int:
    """Import and run each ``benchmarks/bench_*.py`` module's ``main()`` in turn."""
    if sys.argv[1:2] == ["--instructions"]:
        from benchmarks import instructions

        return instructions.main(sys.argv[2:])
    for info in sorted(pkgutil.iter_modules(benchmarks.__path__), key=lambda m: m.name):
        if info.name.startswith("bench_"):
            module = importlib.import_module(f"benchmarks.{info.name}")
            print()
            module.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
