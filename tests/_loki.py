"""
Helpers shared by the Loki tests: Grafana's LogQL grammar and ``docker compose config``.

Both tools may be missing locally: they go through :mod:`_require` (skip locally, fail in CI).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from pathlib import Path
from typing import Any

import pytest
import yaml

from _require import IN_CI, require_binary


ROOT = Path(__file__).resolve().parents[1]
LOKI = ROOT / "loki"
TOOLS = LOKI / "tools"


def lezer(items: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Run loki/tools/check-logql.js over *items* (``{id, expr}``); return those with errors."""
    node = require_binary("node")
    if not (TOOLS / "node_modules" / "@grafana" / "lezer-logql").is_dir():
        message = "loki/tools/node_modules is missing: run `npm ci` in loki/tools"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    result = subprocess.run(
        [node, str(TOOLS / "check-logql.js")],
        input=json.dumps(items),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # 1 means "some expressions have errors"; anything else means the check itself failed.
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def compose(directory: Path) -> dict[str, Any]:
    """The parsed ``docker-compose.yml`` of *directory*."""
    return yaml.safe_load((directory / "docker-compose.yml").read_text(encoding="utf-8"))


def _compose_command() -> list[str]:
    """``docker compose`` (the plugin) when it answers, else ``docker-compose``."""
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, text=True, check=False
        )
        if probe.returncode == 0:
            return [docker, "compose"]
    return [require_binary("docker-compose")]


def compose_config(directory: Path) -> subprocess.CompletedProcess[str]:
    """Run ``docker compose config -q`` (validation, offline) on *directory*'s compose file."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_VERSION")}
    return subprocess.run(
        [*_compose_command(), "-f", str(directory / "docker-compose.yml"), "config", "-q"],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
