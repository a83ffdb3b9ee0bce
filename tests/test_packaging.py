"""
Packaging and docs: the built wheel holds what users import, and the README's examples run.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile

from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)


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


class TestReadme:
    def test_every_python_block_compiles(self):
        """Every ```python block in the README is valid Python."""
        blocks = _python_blocks()
        assert len(blocks) >= 10
        for block in blocks:
            compile(block, "README.md", "exec")

    def test_stdlib_quickstart_writes_the_documented_lines(self):
        """The stdlib quickstart, run as written, prints one line and one canonical request line."""
        (quickstart,) = [b for b in _python_blocks() if 'extra={"order_count": 3}' in b]
        result = subprocess.run(
            [sys.executable, "-c", quickstart], capture_output=True, text=True, check=True
        )
        lines = [json.loads(raw) for raw in result.stdout.splitlines()]
        assert ["order listed", "request"] == [line["event"] for line in lines]
        assert lines[0]["request_id"] == lines[1]["request_id"]
        assert (2, 3) == (lines[1]["timings"]["db_query"]["count"], lines[0]["order_count"])

    def test_structlog_quickstart_writes_the_same_schema(self):
        """The structlog quickstart prints the event with the scope's ids and timings."""
        (quickstart,) = [b for b in _python_blocks() if "structlog.get_logger" in b]
        result = subprocess.run(
            [sys.executable, "-c", quickstart], capture_output=True, text=True, check=True
        )
        first = json.loads(result.stdout.splitlines()[0])
        assert ("order listed", 3, 1) == (
            first["event"],
            first["order_count"],
            first["timings"]["db_query"]["count"],
        )
