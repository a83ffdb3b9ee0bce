"""
Packaging: the built wheel holds what users import (the README's examples: test_readme.py).
"""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile

from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module", name="wheel")
def _wheel(tmp_path_factory) -> zipfile.ZipFile:
    """Build the wheel the way pip installs obslog (hatchling is in the ``test`` extra)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("obslog-*.whl")
    return zipfile.ZipFile(path)


class TestWheel:
    def test_wheel_ships_package_and_typing_marker(self, wheel):
        """The wheel has py.typed, every integration module and the Loki subpackage."""
        names = set(wheel.namelist())
        for member in (
            "obslog/py.typed",
            "obslog/__init__.py",
            "obslog/asgi.py",
            "obslog/celery.py",
            "obslog/loki/_handler.py",
            "obslog/loki/_rules.py",
        ):
            assert member in names

    def test_wheel_has_no_tests_and_declares_the_command(self, wheel):
        """Tests stay out of the wheel, and the ``obslog`` console script is declared."""
        names = wheel.namelist()
        assert [] == [n for n in names if n.startswith("tests/")]
        (entry_points,) = [n for n in names if n.endswith("entry_points.txt")]
        assert "obslog = obslog._cli:main" in wheel.read(entry_points).decode()


class TestCiScript:
    def test_stops_no_process(self):
        """.ci/run never kills a process (a developer's own Prometheus keeps running)."""
        script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
        commands = [
            line for line in script.splitlines() if not line.lstrip().startswith("#")
        ]
        assert [] == [
            line for line in commands if re.search(r"\b(pkill|killall|kill)\b", line)
        ]

    def test_installs_the_tools_the_tests_and_benchmarks_use(self):
        """.ci/run installs promtool/prometheus, valgrind and node when they are missing."""
        script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
        for tool in ("prometheus", "valgrind", "nodejs"):
            assert re.search(rf"need\+=\([^)]*\b{tool}\b", script), tool
