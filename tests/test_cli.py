"""
The command line, run as a real subprocess: ``python -m obslog demo|pretty|version``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from collections import Counter
from importlib.metadata import version
from pathlib import Path

import pytest


def run(*args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBSLOG_")}
    return subprocess.run(
        [sys.executable, "-m", "obslog", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


@pytest.fixture(name="demo", scope="module")
def _demo() -> list[dict]:
    """The JSON lines of ``obslog demo --requests 20 --seed 1``."""
    result = run("demo", "--requests", "20", "--seed", "1")
    assert 0 == result.returncode, result.stderr
    return [json.loads(raw) for raw in result.stdout.splitlines()]


ROUTES = {"/orders/{id}", "/orders", "/search", "/checkout", "<unmatched>"}
TIMERS = {"db_query", "cache_get", "remote_call"}


def canonical(lines: list[dict]) -> list[dict]:
    return [line for line in lines if line["logger"] == "obslog" and line["event"] == "request"]


class TestDemo:
    def test_exactly_20_canonical_lines(self, demo):
        """--requests 20 gives exactly 20 canonical request lines, plus other lines."""
        assert 20 == len(canonical(demo))
        assert len(demo) > 20

    def test_every_line_valid_json_with_schema(self, demo):
        """Every stdout line is a JSON object with the base schema and the demo's static fields."""
        for line in demo:
            assert {"timestamp", "level", "logger", "event", "service", "env", "version", "pid"} <= set(line)
            assert ("shop", "demo") == (line["service"], line["env"])

    def test_canonical_line_fields(self, demo):
        """Canonical lines carry method, route template, status, duration, outcome, sample_rate."""
        for line in canonical(demo):
            assert line["route"] in ROUTES
            assert line["method"] in {"GET", "POST"}
            assert isinstance(line["status"], int)
            assert isinstance(line["duration_ms"], float)
            assert line["outcome"] in {"ok", "error"}
            assert 1 == line["sample_rate"]
            assert set(line.get("timings", {})) <= TIMERS
        assert len({line["request_id"] for line in canonical(demo)}) == 20

    def test_ids_consistent(self, demo):
        """Each request's lines share request_id, method, route and trace ids with its canonical line."""
        by_id = {line["request_id"]: line for line in canonical(demo)}
        inner = [line for line in demo if "request_id" in line and line not in canonical(demo)]
        assert inner, "the demo logs inside requests"
        for line in inner:
            request = by_id[line["request_id"]]
            for key in ("method", "route", "trace_id", "span_id"):
                assert request.get(key) == line.get(key)

    def test_errors_and_500s(self):
        """A demo run shows error outcomes with status 500 and exception fields, and 4xx answers."""
        # One client at a time makes the run repeatable: this seed includes a declined payment.
        result = run("demo", "--requests", "20", "--seed", "2", "--concurrency", "1")
        lines = canonical([json.loads(raw) for raw in result.stdout.splitlines()])
        errors = [line for line in lines if line["outcome"] == "error"]
        assert 20 == len(lines)
        assert errors
        for line in errors:
            assert (500, "error") == (line["status"], line["level"])
            assert {"exc_type", "exc_message", "stack"} <= set(line)
        assert Counter(line["status"] for line in lines)[500] == len(errors)

    def test_console_format(self):
        """--format console prints readable lines, not JSON, with the same fields."""
        result = run("demo", "--requests", "5", "--seed", "1", "--format", "console")
        assert 0 == result.returncode, result.stderr
        text = result.stdout
        assert 5 == sum(1 for row in text.splitlines() if " request " in row and "[obslog]" in row)
        for key in ("service=shop", "request_id=", "route=", "duration_ms=", "outcome=", "sample_rate=1"):
            assert key in text, key
        with pytest.raises(ValueError):
            json.loads(text.splitlines()[0])

    def test_negative_requests_rejected(self):
        """--requests -1 exits with status 2 and a message."""
        result = run("demo", "--requests", "-1")
        assert 2 == result.returncode
        assert "--requests" in result.stderr


class TestPretty:
    def test_json_lines_rendered(self):
        """obslog pretty renders JSON lines readably and passes other lines through."""
        lines = [
            {"timestamp": "2026-11-26T15:20:01.123456Z", "level": "info", "logger": "shop",
             "event": "order listed", "request_id": "r1", "order_count": 3,
             "timings": {"db_query": {"ms": 12.3, "count": 2, "max_ms": 8.0}}},
            {"timestamp": "2026-11-26T15:20:02.000000Z", "level": "error", "logger": "obslog",
             "event": "request", "status": 500, "exc_type": "ValueError",
             "stack": "Traceback (most recent call last):\nValueError: bad"},
        ]
        stdin = "\n".join(json.dumps(line) for line in lines) + "\nnot json at all\n"
        result = run("pretty", stdin=stdin)
        assert 0 == result.returncode, result.stderr
        out = result.stdout
        for text in ("order listed", "request_id=r1", "order_count=3", "db_query=12.3ms", "status=500",
                     "ValueError: bad", "not json at all"):
            assert text in out, text
        assert "\x1b[" not in out  # not a terminal: no colours

    def test_demo_output_through_pretty(self, demo):
        """The demo's own lines go through obslog pretty, one rendering per line."""
        stdin = "\n".join(json.dumps(line) for line in demo) + "\n"
        result = run("pretty", stdin=stdin)
        assert 0 == result.returncode, result.stderr
        assert len(demo) <= len(result.stdout.splitlines())
        assert not result.stdout.startswith("{")

    def test_file_argument(self, tmp_path: Path):
        """obslog pretty FILE reads the file instead of stdin."""
        path = tmp_path / "lines.jsonl"
        path.write_text(json.dumps({"level": "warning", "event": "from file", "logger": "x"}) + "\n")
        result = run("pretty", str(path))
        assert "from file" in result.stdout


class TestVersion:
    def test_version(self):
        """obslog version prints the installed package version."""
        result = run("version")
        assert (0, version("obslog")) == (result.returncode, result.stdout.strip())

    def test_no_command_is_usage_error(self):
        """Running obslog without a command is a usage error (exit status 2)."""
        result = run()
        assert 2 == result.returncode
        assert "usage" in result.stderr.lower()
