"""
The command line, run as a real subprocess through both entry points: the ``obslog`` console
script and ``python -m obslog``.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys

from collections import Counter
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

from obslog._demo import ROUTES as SHOP_ROUTES


def _console_script() -> list[str]:
    """The ``obslog`` console script installed beside this interpreter (or on PATH)."""
    script = Path(sys.executable).with_name("obslog")
    if script.exists():
        return [str(script)]
    found = shutil.which("obslog")
    assert found is not None, "the obslog console script is not installed"
    return [found]


ENTRY_POINTS = {
    "script": _console_script,
    "module": lambda: [sys.executable, "-m", "obslog"],
}


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBSLOG_")}
    env.update(extra)
    return env


def run(
    *args: str,
    stdin: str | None = None,
    timeout: float = 60,
    entry: str = "module",
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*ENTRY_POINTS[entry](), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env() if env is None else env,
        cwd=cwd,
        check=False,
    )


@pytest.fixture(name="entry", params=sorted(ENTRY_POINTS))
def _entry(request) -> str:
    """Each entry point in turn: the console script, then ``python -m obslog``."""
    return request.param


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


class TestEntryPoints:
    def test_top_level_help_lists_every_command(self, entry):
        """``obslog --help`` exits 0 and names every command."""
        result = run("--help", entry=entry)
        assert 0 == result.returncode, result.stderr
        for command in ("demo", "pretty", "loki", "celery-events", "version"):
            assert command in result.stdout

    def test_celery_events_help(self, entry):
        """``obslog celery-events --help`` shows the command's own options, exit 0."""
        result = run("celery-events", "--help", entry=entry)
        assert 0 == result.returncode, result.stderr
        assert result.stdout.startswith("usage: obslog celery-events")
        for option in ("--broker", "--app", "--snapshot-interval", "--limit", "--timeout"):
            assert option in result.stdout

    def test_loki_help(self, entry):
        """``obslog loki --help`` exits 0 and names the ``rules`` subcommand."""
        result = run("loki", "--help", entry=entry)
        assert 0 == result.returncode, result.stderr
        assert "rules" in result.stdout

    def test_loki_rules_help(self, entry):
        """``obslog loki rules --help`` reaches the rules generator's own options."""
        result = run("loki", "rules", "--help", entry=entry)
        assert 0 == result.returncode, result.stderr
        for option in ("--service", "--timer", "--output"):
            assert option in result.stdout

    def test_loki_rules_readme_command(self, entry, tmp_path: Path):
        """The README's ``obslog loki rules ... -o shop-timers.yaml`` writes a rule file."""
        yaml = pytest.importorskip("yaml")
        result = run(
            "loki", "rules", "--service", "shop", "--timer", "db_query", "--timer", "render",
            "-o", "shop-timers.yaml", entry=entry, cwd=tmp_path,
        )
        assert (0, "") == (result.returncode, result.stderr)
        document = yaml.safe_load((tmp_path / "shop-timers.yaml").read_text())
        text = json.dumps(document)
        assert document["groups"]
        assert "db_query" in text and "render" in text and "shop" in text

    def test_demo_help_lists_the_routes(self, entry):
        """``obslog demo --help`` lists every route the shop serves."""
        result = run("demo", "--help", entry=entry)
        assert 0 == result.returncode, result.stderr
        for method, template, _ in SHOP_ROUTES:
            assert f"{method:<5} {template}" in result.stdout
        assert "<unmatched>" in result.stdout

    def test_version_through_both(self, entry):
        """``obslog version`` prints the installed version through either entry point."""
        result = run("version", entry=entry)
        assert (0, version("obslog")) == (result.returncode, result.stdout.strip())


@pytest.fixture(name="busy_port")
def _busy_port() -> Iterator[int]:
    """A loopback port something else listens on."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        yield listener.getsockname()[1]


def assert_usage_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit status 2, nothing on stdout, one ``obslog ...: error: ...`` line, no traceback."""
    lines = result.stderr.splitlines()
    assert (2, "", 1) == (result.returncode, result.stdout, len(lines)), result.stderr
    assert lines[0].startswith("obslog ") and ": error: " in lines[0]
    for fragment in fragments:
        assert fragment in lines[0]


class TestUserErrors:
    @pytest.mark.parametrize("port", ["99999", "-5", "65536"])
    def test_demo_port_out_of_range(self, entry, port):
        """A port outside 0-65535 is one error line naming --port and the valid range, exit 2."""
        assert_usage_error(run("demo", "--port", port, entry=entry), "--port", "1-65535", port)

    def test_demo_port_in_use(self, entry, busy_port):
        """A port already in use is one error line naming the address, exit 2."""
        result = run("demo", "--port", str(busy_port), "--requests", "1", entry=entry)
        assert_usage_error(result, f"127.0.0.1:{busy_port}", "in use")

    @pytest.mark.parametrize("value", ["0", "-3"])
    def test_demo_concurrency_below_one(self, entry, value):
        """--concurrency below 1 is an error, not silently 1."""
        result = run("demo", "--concurrency", value, "--requests", "1", entry=entry)
        assert_usage_error(result, "--concurrency", ">= 1")

    def test_demo_negative_requests(self, entry):
        """--requests -1 is one error line, exit 2."""
        assert_usage_error(run("demo", "--requests", "-1", entry=entry), "--requests")

    def test_pretty_missing_file(self, entry):
        """``obslog pretty /nonexistent`` names the file and the reason, exit 2."""
        result = run("pretty", "/nonexistent", entry=entry)
        assert_usage_error(result, "'/nonexistent'", "No such file")

    def test_pretty_directory(self, entry, tmp_path: Path):
        """A directory given to ``obslog pretty`` is one error line, exit 2."""
        assert_usage_error(run("pretty", str(tmp_path), entry=entry), str(tmp_path))

    def test_bad_obslog_level_names_the_variable(self, entry):
        """OBSLOG_LEVEL=bogus names the variable, its value and the valid levels, exit 2."""
        result = run("demo", "--requests", "1", entry=entry, env=clean_env(OBSLOG_LEVEL="bogus"))
        assert_usage_error(result, "OBSLOG_LEVEL", "'bogus'", "INFO")

    def test_bad_obslog_format_names_the_variable(self):
        """OBSLOG_FORMAT=xml names the variable and the valid formats, exit 2."""
        result = run("demo", "--requests", "1", env=clean_env(OBSLOG_FORMAT="xml"))
        assert_usage_error(result, "OBSLOG_FORMAT", "json")

    def test_celery_events_bad_obslog_level(self, entry):
        """``obslog celery-events`` with OBSLOG_LEVEL=bogus: one line naming it, exit 2."""
        pytest.importorskip("celery")
        result = run(
            "celery-events", "--broker", "redis://127.0.0.1:1/0", "--timeout", "0",
            entry=entry, env=clean_env(OBSLOG_LEVEL="bogus"),
        )
        assert_usage_error(result, "OBSLOG_LEVEL", "'bogus'")

    def test_celery_events_bad_level_option(self):
        """``--level bogus`` is one line naming the valid levels, exit 2."""
        pytest.importorskip("celery")
        result = run("celery-events", "--broker", "redis://127.0.0.1:1/0", "--level", "bogus")
        assert_usage_error(result, "'bogus'", "DEBUG, INFO")

    def test_celery_events_negative_snapshot_interval(self):
        """A negative --snapshot-interval is one error line, exit 2."""
        result = run("celery-events", "--broker", "redis://127.0.0.1:1/0",
                     "--snapshot-interval", "-1")
        assert_usage_error(result, "--snapshot-interval")

    def test_celery_events_app_not_found(self, entry, tmp_path: Path):
        """An --app whose module cannot be imported is one line naming the module, exit 2."""
        pytest.importorskip("celery")
        result = run("celery-events", "--app", "no_such_module:app", entry=entry, cwd=tmp_path)
        assert_usage_error(result, "cannot load the app", "no_such_module")

    def test_celery_events_without_broker_or_app(self):
        """``obslog celery-events`` without --broker or --app says which to give, exit 2."""
        result = run("celery-events")
        assert 2 == result.returncode
        assert "give --broker URL or --app module:attr" in result.stderr
        assert "Traceback" not in result.stderr


class TestCeleryEventsCommand:
    def test_readme_broker_command(self, entry, redis_url):
        """The README's ``obslog celery-events --broker ... --snapshot-interval 30`` listens,
        writes a snapshot line at once, and stops cleanly on Ctrl-C."""
        from _commands import Running

        command = Running(
            [*ENTRY_POINTS[entry](), "celery-events", "--broker", redis_url,
             "--snapshot-interval", "30"],
            env=clean_env(),
        )
        try:
            listening = command.wait_for(lambda line: line["event"] == "celery_events_listening")
            snapshot = command.wait_for(lambda line: line["event"] == "celery_active")
        finally:
            code = command.stop(signal.SIGINT)
        assert listening["broker"].endswith("127.0.0.1:6379/0")  # kombu masks any password
        assert "celery-events" == snapshot["service"]
        assert (0, "") == (code, command.stderr)

    def test_readme_app_command(self, entry, redis_url, tmp_path: Path):
        """``obslog celery-events --app shop.worker:app --limit 100 --timeout 60`` loads the
        README's worker module from the current directory and logs a task's events."""
        from _commands import Running
        from _readme import python_block

        worker = python_block("# worker.py")
        (tmp_path / "shop").mkdir()
        (tmp_path / "shop" / "__init__.py").write_text("")
        (tmp_path / "shop" / "worker.py").write_text(worker)
        command = Running(
            [*ENTRY_POINTS[entry](), "celery-events", "--app", "shop.worker:app",
             "--limit", "100", "--timeout", "60"],
            cwd=tmp_path,
            env=clean_env(),
        )
        try:
            command.wait_for(lambda line: line["event"] == "celery_events_listening")
            # A task event as a worker sends it, through the README app's own dispatcher.
            sender = subprocess.run(
                [sys.executable, "-c",
                 "from shop.worker import app\n"
                 "with app.events.default_dispatcher() as dispatcher:\n"
                 "    dispatcher.send('task-received', uuid='t-1', name='shop.charge')\n"],
                cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60,
            )
            assert 0 == sender.returncode, sender.stderr
            event = command.wait_for(lambda line: line["event"] == "celery_event")
        finally:
            code = command.stop(signal.SIGINT)
        assert ("task-received", "t-1", "shop.charge") == (
            event["type"], event["task_id"], event["task_name"]
        )
        assert (0, "") == (code, command.stderr)


class TestInterrupt:
    def test_ctrl_c_in_pretty_exits_130_without_traceback(self):
        """Ctrl-C while ``obslog pretty`` waits for more input ends it with 130, no traceback."""
        from _commands import Running

        pretty = Running(
            [*ENTRY_POINTS["script"](), "pretty"], env=clean_env(), stdin=subprocess.PIPE
        )
        try:
            pretty.proc.stdin.write(json.dumps({"level": "info", "event": "first"}) + "\n")
            pretty.proc.stdin.flush()
            pretty.wait_for_text("first")  # each line is written at once, so it now waits
        finally:
            code = pretty.stop(signal.SIGINT)
        assert (130, "") == (code, pretty.stderr)

    def test_reader_gone_is_quiet(self):
        """``obslog demo | obslog pretty | head -1``: both stop quietly, exit 0, no stderr."""
        script = shlex.join(ENTRY_POINTS["script"]())
        result = subprocess.run(
            ["bash", "-c", f"{script} demo --requests 40 | {script} pretty | head -1;"
             " echo status ${PIPESTATUS[0]} ${PIPESTATUS[1]}"],
            capture_output=True, text=True, timeout=120, env=clean_env(), check=False,
        )
        assert ("", "status 0 0") == (result.stderr, result.stdout.splitlines()[-1])


class TestEnvironmentSettings:
    @pytest.mark.parametrize(
        ("variable", "value", "valid"),
        [("OBSLOG_LEVEL", "bogus", "DEBUG, INFO"), ("OBSLOG_FORMAT", "xml", "json")],
    )
    def test_configure_names_the_variable(self, monkeypatch, variable, value, valid):
        """configure() with an invalid OBSLOG_* value raises ValueError naming the variable."""
        import obslog

        monkeypatch.setenv(variable, value)
        with pytest.raises(ValueError) as info:
            obslog.configure(stream=io.StringIO())
        message = str(info.value)
        assert message.startswith(f"environment variable {variable}={value!r}: ")
        assert valid in message

    def test_bad_argument_is_not_blamed_on_the_environment(self):
        """An invalid level passed in code raises without mentioning any variable."""
        import obslog

        with pytest.raises(ValueError) as info:
            obslog.configure(level="bogus", stream=io.StringIO())
        assert "environment" not in str(info.value)
