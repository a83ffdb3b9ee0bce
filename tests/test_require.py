"""
tests/_require.py: a missing service or tool skips a test with the reason, and fails it under CI.
"""

from __future__ import annotations

import os
import subprocess
import sys

from pathlib import Path

import pytest


HERE = Path(__file__).resolve().parent

NEEDS_A_CLOSED_PORT = '''
import socket
from _require import require_binary, require_port

def test_service():
    """Needs a service on a closed port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    require_port("127.0.0.1", port, "the test service")

def test_tool():
    """Needs a tool that is not installed."""
    require_binary("obslog-no-such-tool")
'''


def run_pytest(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess:
    (tmp_path / "test_needs.py").write_text(NEEDS_A_CLOSED_PORT)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = str(HERE)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rsf", "-p", "no:cacheprovider", "-c", os.devnull,
         "--rootdir", str(tmp_path), "test_needs.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


class TestRequire:
    def test_skips_with_the_reason_outside_ci(self, tmp_path):
        """Without CI a missing service or tool is a skip that names it."""
        result = run_pytest(tmp_path, None)
        assert 0 == result.returncode, result.stdout
        assert "2 skipped" in result.stdout
        assert "the test service is not listening on 127.0.0.1:" in result.stdout
        assert "obslog-no-such-tool is not installed" in result.stdout

    @pytest.mark.parametrize("ci", ["true", "1"])
    def test_fails_under_ci(self, tmp_path, ci):
        """Under CI=true the same tests fail, naming what is required."""
        result = run_pytest(tmp_path, ci)
        assert 1 == result.returncode, result.stdout
        assert "2 failed" in result.stdout
        assert "required in CI: obslog-no-such-tool is not installed" in result.stdout
