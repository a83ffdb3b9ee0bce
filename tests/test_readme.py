"""
Every example in README.md runs as written.

Each ```python block is written to a file and run, in a fresh process, in a temporary directory.
Blocks that are applications run under the server they name and answer real requests:

- FastAPI blocks run under uvicorn with the command in their own comment (``uvicorn main:...``).
- Flask blocks run under ``flask --app app run`` (werkzeug's server).
- The aiohttp block runs as a file: ``web.run_app`` serves on its default port 8080.
- The worker without an HTTP server runs as a file with a ``handle_next_job`` of ours (the one
  name the reader supplies) and is stopped with SIGTERM, as the example says.
- The Celery worker module is run as a file, then imported by a task that runs in it.
- ``gunicorn.conf.py`` is run as a file and its ``child_exit`` hook is called with a stand-in worker
  (a real gunicorn master is not started here).
- A block that is a test module (``# test_orders.py``) runs under pytest, and its tests pass.
- The ``LOGGING`` dict is run as a file, then given to ``dictConfig`` and used to log a line.

Every shell command shown (```sh blocks, and inline commands in the prose) is run here, run by the
named test elsewhere, or listed in :data:`NOT_RUN` with the reason.  Blocks and commands are found
by content, never by position: a new example gets the generic treatment (run as a file; for an
``obslog`` command line, its options are checked against the command's ``--help``) or fails with a
message saying where to add it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import types
import urllib.error
import urllib.request

from collections.abc import Callable
from pathlib import Path

import pytest

from _commands import Running
from _readme import ROOT, inline_commands, python_block, python_blocks, shell_lines
from _require import missing, require_binary, require_free_port, require_port
from _servers import free_port


TIMEOUT = 120  # seconds for one example to finish; none is meant to come near it


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBSLOG_")}
    env.update(extra)
    return env


def run_file(path: Path, *, timeout: float = TIMEOUT) -> str:
    """Run *path* with this interpreter in its own directory; return its stdout, check exit 0."""
    result = subprocess.run(
        [sys.executable, path.name],
        cwd=path.parent,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(),
        check=False,
    )
    assert (0, "") == (result.returncode, _tracebacks(result.stderr)), result.stderr
    return result.stdout


def _tracebacks(stderr: str) -> str:
    return stderr if "Traceback (most recent call last)" in stderr else ""


def json_lines(text: str) -> list[dict]:
    out = []
    for raw in text.splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if isinstance(line, dict):
            out.append(line)
    return out


def get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    """GET *url*; return status and body (error statuses too)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_listening(port: int, command: Running, timeout: float = 60) -> None:
    """Wait until something accepts on 127.0.0.1:*port*; fail if *command* exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if command.proc.poll() is not None:
            command.stop()
            raise AssertionError(f"{command.argv} exited: {command.stderr}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port} after {timeout} s: {command.stderr}")


def request_line(lines: list[dict], route: str) -> dict:
    (line,) = [
        line for line in lines
        if line.get("event") == "request" and line.get("route") == route
    ]
    return line


# ------------------------------------------------------------------------- python blocks


def _slug(block: str) -> str:
    first = next((line for line in block.splitlines() if line.strip()), "")
    words = re.sub(r"[^A-Za-z0-9]+", "-", first).strip("-")[:40]
    return f"{words}-{hashlib.sha1(block.encode()).hexdigest()[:6]}"


def _serve_asgi(block: str, tmp_path: Path) -> None:
    """Run the block under uvicorn as its comment says; requests get canonical lines."""
    match = re.search(r"#\s*uvicorn (\w+):(\w+)([^\n]*)", block)
    assert match, "a FastAPI example says how to serve it: # uvicorn module:app"
    module, attribute, flags = match.groups()
    (tmp_path / f"{module}.py").write_text(block)
    port = free_port()
    _serve(
        block,
        tmp_path,
        port,
        [sys.executable, "-m", "uvicorn", f"{module}:{attribute}", *shlex.split(flags),
         "--host", "127.0.0.1", "--port", str(port)],
    )


def _serve_flask(block: str, tmp_path: Path) -> None:
    """Run the block under ``flask --app app run``; requests get canonical lines."""
    (tmp_path / "app.py").write_text(block)
    port = free_port()
    _serve(
        block,
        tmp_path,
        port,
        [sys.executable, "-m", "flask", "--app", "app", "run", "--port", str(port)],
    )


def _serve(block: str, tmp_path: Path, port: int, command: list[str]) -> None:
    """Start *command* serving the block on *port*, exercise it, stop it: no traceback, lines."""
    server = Running(command, cwd=tmp_path, env=clean_env())
    try:
        wait_listening(port, server)
        _exercise_http(block, f"http://127.0.0.1:{port}", server)
    finally:
        code = server.stop(signal.SIGINT)
    assert (0, "") == (code, _tracebacks(server.stderr)), server.stderr
    _check_request_lines(block, server.lines())


def _exercise_http(block: str, base: str, server: Running) -> None:
    """A request the app does not route, and the health tiers where the block mounts them."""
    assert 404 == get(f"{base}/no/such/page")[0]
    server.wait_for(lambda line: line.get("event") == "request")
    if "make_health_app(readiness" in block or "add_health(app, readiness" in block:
        require_port("127.0.0.1", 6379, "Redis")
        status, body = get(f"{base}/health")
        assert (200, "ok") == (status, json.loads(body)["status"])
        status, body = get(f"{base}/ready", timeout=15)
        checks = json.loads(body)["checks"]
        assert {"redis", "postgres", "not_shutting_down"} == set(checks)
        # Redis answers; PostgreSQL at host "db" does not exist here: 503, the reason in the body.
        assert (503, "ok", "ok") == (
            status, checks["redis"]["status"], checks["not_shutting_down"]["status"]
        )
        assert "ok" != checks["postgres"]["status"] and checks["postgres"]["error"]
        status, body = get(f"{base}/metrics")
        assert 200 == status and b"process_cpu_seconds_total" in body


def _check_request_lines(block: str, lines: list[dict]) -> None:
    line = request_line(lines, "<unmatched>")
    assert ("GET", 404, "ok", "shop") == (
        line["method"], line["status"], line["outcome"], line["service"]
    )
    if "make_health_app(readiness" in block or "add_health(app, readiness" in block:
        # The tiers answer first: probes never reach the app or its request log.
        assert [] == [
            line for line in lines if line.get("route") in {"/health", "/ready", "/metrics"}
        ]


def _serve_aiohttp(block: str, tmp_path: Path) -> None:
    """Run the aiohttp block as a file: ``web.run_app`` serves on port 8080 as written."""
    require_free_port(8080, "the aiohttp example serves on aiohttp's default port")
    path = tmp_path / "app.py"
    path.write_text(block)
    server = Running([sys.executable, path.name], cwd=tmp_path, env=clean_env())
    try:
        wait_listening(8080, server)
        assert 404 == get("http://127.0.0.1:8080/no/such/page")[0]
        server.wait_for(lambda line: line.get("event") == "request")
    finally:
        code = server.stop(signal.SIGINT)
    assert (0, "") == (code, _tracebacks(server.stderr)), server.stderr
    _check_request_lines(block, server.lines())


def _run_worker_loop(block: str, tmp_path: Path) -> None:
    """Serve the side port, answer the tiers, end the loop on SIGTERM (exit 0)."""
    require_port("127.0.0.1", 6379, "Redis")
    port = int(re.search(r"port=(\d+)", block).group(1))
    require_free_port(port, "the worker example serves its tiers there")
    path = tmp_path / "worker.py"
    # handle_next_job is the reader's own function; ours takes a job from nowhere.
    path.write_text("import time\n\ndef handle_next_job():\n    time.sleep(0.05)\n\n\n" + block)
    worker = Running([sys.executable, path.name], cwd=tmp_path, env=clean_env())
    try:
        wait_listening(port, worker)
        base = f"http://127.0.0.1:{port}"
        assert 200 == get(f"{base}/health")[0]
        status, body = get(f"{base}/ready", timeout=15)
        assert (200, "ok") == (status, json.loads(body)["status"]), body
        assert b"process_cpu_seconds_total" in get(f"{base}/metrics")[1]
        runtime = worker.wait_for(lambda line: line.get("event") == "runtime")
    finally:
        code = worker.stop(signal.SIGTERM)
    assert (0, "") == (code, _tracebacks(worker.stderr)), worker.stderr
    assert isinstance(runtime["rss_bytes"], int)


def _celery_worker_module(block: str, tmp_path: Path) -> None:
    """Run worker.py as a file, then run a task of that app: one ``task`` line."""
    (tmp_path / "worker.py").write_text(block)
    run_file(tmp_path / "worker.py")
    task = tmp_path / "run_task.py"
    task.write_text(
        "import worker\n\n"
        "@worker.app.task(name='shop.charge')\n"
        "def charge(order_id):\n"
        "    return order_id\n\n"
        "assert 7 == charge.apply(args=[7]).get()\n"
    )
    (line,) = [line for line in json_lines(run_file(task)) if line["event"] == "task"]
    assert ("shop-worker", "shop.charge", "SUCCESS", "ok") == (
        line["service"], line["task_name"], line["state"], line["outcome"]
    )


def _gunicorn_conf(block: str, tmp_path: Path) -> None:
    """Run gunicorn.conf.py as a file, then call its child_exit hook for a dead worker."""
    (tmp_path / "gunicorn_conf.py").write_text(block)
    run_file(tmp_path / "gunicorn_conf.py")
    namespace: dict = {}
    exec(compile(block, "gunicorn.conf.py", "exec"), namespace)
    multiproc = tmp_path / "multiproc"
    multiproc.mkdir()
    live = multiproc / "gauge_livesum_4242.db"
    live.write_bytes(b"")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(multiproc)
    try:
        namespace["child_exit"](None, types.SimpleNamespace(pid=4242))
    finally:
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]
    assert not live.exists()


def _logging_dict(block: str, tmp_path: Path) -> None:
    """Run the LOGGING dict as a file, then pass it to dictConfig and log one line."""
    (tmp_path / "settings.py").write_text(block)
    run_file(tmp_path / "settings.py")
    use = tmp_path / "use.py"
    use.write_text(
        "import logging, logging.config, settings\n"
        "logging.config.dictConfig(settings.LOGGING)\n"
        "logging.getLogger('shop').info('hello', extra={'order_count': 3})\n"
    )
    (line,) = json_lines(run_file(use))
    assert ("hello", 3, "info") == (line["event"], line["order_count"], line["level"])


def _pytest_file(block: str, tmp_path: Path) -> None:
    """A block that is a test module (``# test_x.py``) runs under pytest, and its tests pass."""
    name = re.match(r"# (test_\w+\.py)\n", block).group(1)
    (tmp_path / name).write_text(block)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
         "--rootdir", str(tmp_path), "-c", os.devnull, name],
        cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT, env=clean_env(),
        check=False,
    )
    assert 0 == result.returncode, result.stdout[-3000:] + result.stderr[-2000:]
    assert re.search(r"\b[1-9]\d* passed\b", result.stdout), result.stdout[-2000:]
    assert not re.search(r"\b(failed|skipped|error)", result.stdout), result.stdout[-2000:]


def _as_file(block: str, tmp_path: Path) -> None:
    path = tmp_path / "example.py"
    path.write_text(block)
    run_file(path)


#: How a block runs, chosen by what it contains (first match); anything else runs as a file.
RUNNERS: list[tuple[Callable[[str], bool], Callable[[str, Path], None]]] = [
    (lambda b: re.match(r"# (test_\w+\.py)\n", b) is not None, _pytest_file),
    (lambda b: "FastAPI()" in b, _serve_asgi),
    (lambda b: "Flask(__name__)" in b, _serve_flask),
    (lambda b: "web.run_app(" in b, _serve_aiohttp),
    (lambda b: "handle_next_job()" in b, _run_worker_loop),
    (lambda b: b.startswith("# worker.py"), _celery_worker_module),
    (lambda b: b.startswith("# gunicorn.conf.py"), _gunicorn_conf),
    (lambda b: b.lstrip().startswith("LOGGING = {"), _logging_dict),
]


def _runner(block: str) -> Callable[[str, Path], None]:
    return next((run for matches, run in RUNNERS if matches(block)), _as_file)


_BLOCKS = python_blocks()


class TestPythonExamples:
    def test_there_are_examples(self):
        """The README has python examples (the extraction finds them)."""
        assert len(_BLOCKS) >= 10

    @pytest.mark.parametrize("block", _BLOCKS, ids=[_slug(b) for b in _BLOCKS])
    def test_example_runs(self, block, tmp_path):
        """The example runs as written: as a file, or under the server it names, answering."""
        _runner(block)(block, tmp_path)

    def test_health_examples_configure_obslog(self):
        """The FastAPI and Flask health examples call obslog.configure(), or lose request lines."""
        for marker in ("make_health_app(readiness", "add_health(app, readiness"):
            assert "obslog.configure(" in python_block(marker)

    def test_stdlib_quickstart_writes_the_documented_lines(self, tmp_path):
        """The stdlib quickstart prints one line and one canonical request line."""
        path = tmp_path / "quickstart.py"
        path.write_text(python_block('extra={"order_count": 3}'))
        lines = json_lines(run_file(path))
        assert ["order listed", "request"] == [line["event"] for line in lines]
        assert lines[0]["request_id"] == lines[1]["request_id"]
        assert (2, 3) == (lines[1]["timings"]["db_query"]["count"], lines[0]["order_count"])

    def test_structlog_quickstart_writes_the_same_schema(self, tmp_path):
        """The structlog quickstart prints the event with the scope's ids and timings."""
        path = tmp_path / "quickstart.py"
        path.write_text(python_block("structlog.get_logger"))
        first = json_lines(run_file(path))[0]
        assert ("order listed", 3, 1) == (
            first["event"],
            first["order_count"],
            first["timings"]["db_query"]["count"],
        )


# -------------------------------------------------------------------------- shell commands

COMMAND_WORDS = (
    "obslog", ".venv/bin/obslog", "python", "python3", "pip", "curl", "cd", "bash", "uvicorn",
    "gunicorn", "celery", "flask", "docker", "docker-compose", "npm", "pytest", ".venv/bin/pytest",
)

#: Commands shown in the README that these tests do not run, with the reason.
NOT_RUN = {
    "bash .ci/run": "needs root (apt-get, services under /var/lib) and runs this whole suite; CI "
    "runs it",
    "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/pytest":
        "runs this whole suite (the tests would run themselves)",
    "cd loki && docker compose up -d": "needs a Docker engine; test_loki_rules checks the compose "
    "file with `docker compose config`",
    "python -m benchmarks": "a measurement: about 30 s of full load on both cores; run by hand",
    "npm ci": "installs Grafana's LogQL grammar from npm into loki/tools (.ci/run does it); the "
    "rule tests that use it skip with this command as the reason when it is missing",
}

#: Commands run by a test elsewhere (the test must exist).
RUN_ELSEWHERE = {
    "obslog celery-events --broker redis://127.0.0.1:6379/0 --snapshot-interval 30":
        "test_cli.py::TestCeleryEventsCommand::test_readme_broker_command",
    "obslog celery-events --app shop.worker:app --limit 100 --timeout 60":
        "test_cli.py::TestCeleryEventsCommand::test_readme_app_command",
    "obslog loki rules --service shop --timer db_query --timer render -o shop-timers.yaml":
        "test_cli.py::TestEntryPoints::test_loki_rules_readme_command",
    "obslog loki rules push --url http://127.0.0.1:3100 --no-shipped --slo-config slos.yaml "
    "--dry-run": "test_loki_ruler.py::TestReadmeQuickstart::test_quickstart",
    "obslog loki rules push --url http://127.0.0.1:3100 --no-shipped --slo-config slos.yaml":
        "test_loki_ruler.py::TestReadmeQuickstart::test_quickstart",
    "python -m benchmarks --instructions":
        "test_benchmarks.py::TestInstructions::test_counts_instructions_per_call_with_ratios",
    "python -m obslog.logconfig uvicorn --service shop > log.json":
        "test_logconfig.py::TestUvicorn::test_uvicorn_cli_with_generated_log_config_file",
    "uvicorn main:application --log-config log.json":
        "test_logconfig.py::TestUvicorn::test_uvicorn_cli_with_generated_log_config_file",
    "gunicorn -c python:obslog.logconfig main:app":
        "test_logconfig.py::TestGunicorn::test_gunicorn_python_module_config",
}


def _venv_link(tmp_path: Path) -> Path:
    """A directory whose ``.venv`` is the environment running these tests."""
    venv = Path(sys.executable).parent.parent
    if not (venv / "bin" / "obslog").exists():
        missing("the tests do not run from a virtual environment with the obslog script")
    (tmp_path / ".venv").symlink_to(venv)
    return tmp_path


def _fresh_venv_demo(command: str, tmp_path: Path) -> None:
    """The set-up command, in a copy of the source tree: a new .venv, then 50 requests."""
    source = tmp_path / "obslog"
    shutil.copytree(
        ROOT, source,
        ignore=shutil.ignore_patterns(".venv", ".git", "node_modules", "__pycache__", "*.egg-info",
                                      ".mypy_cache", ".ruff_cache", ".pytest_cache", "build",
                                      "dist"),
    )
    result = subprocess.run(
        ["bash", "-c", command], cwd=source, capture_output=True, text=True, timeout=600,
        env=clean_env(), check=False,
    )
    if result.returncode != 0 and re.search(
        r"Failed to establish a new connection|Temporary failure in name resolution|"
        r"No matching distribution found", result.stdout + result.stderr,
    ):
        missing("the package index is not reachable")
    assert 0 == result.returncode, result.stderr[-3000:]
    requests = [line for line in json_lines(result.stdout) if line["event"] == "request"]
    assert 50 == len(requests)


def _demo_pretty(command: str, tmp_path: Path) -> None:
    """``.venv/bin/obslog demo --requests 50 | .venv/bin/obslog pretty`` prints readable lines."""
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], cwd=_venv_link(tmp_path), capture_output=True,
        text=True, timeout=TIMEOUT, env=clean_env(), check=False,
    )
    assert (0, "") == (result.returncode, result.stderr)
    rows = result.stdout.splitlines()
    assert 50 == sum(1 for row in rows if " request " in row and "[obslog]" in row)
    assert [] == json_lines(result.stdout)


def _demo_hold_curl(command: str, tmp_path: Path) -> None:
    """``obslog demo --port 8080 --hold``, then ``curl localhost:8080/ready`` answers 200."""
    curl = require_binary("curl")
    require_free_port(8080, "the README's demo command listens there")
    script = Path(sys.executable).with_name("obslog")
    demo = Running([str(script), "demo", "--port", "8080", "--hold"], env=clean_env())
    try:
        demo.wait_for(lambda line: line.get("event") == "demo serving")
        result = subprocess.run(
            [curl, "-sS", "localhost:8080/ready"], capture_output=True, text=True,
            timeout=30, check=False,
        )
    finally:
        code = demo.stop(signal.SIGINT)
    assert (0, "") == (result.returncode, result.stderr)
    assert "ok" == json.loads(result.stdout)["status"]
    assert (0, "") == (code, _tracebacks(demo.stderr))


def _extra_exists(command: str, tmp_path: Path) -> None:
    """``pip install 'obslog[X]'``: the extra exists (installing from the index is not done)."""
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    (names,) = re.findall(r"obslog\[([\w,-]+)\]", command)
    for name in names.split(","):
        assert name in extras, f"{command}: no extra {name!r} in pyproject.toml"


def _obslog_form(command: str, tmp_path: Path) -> None:
    """An ``obslog`` command line: its command answers --help, which names each option shown."""
    words = shlex.split(command.replace("...", ""))
    if words[0] in ("python", "python3") and words[1:3] == ["-m", "obslog"]:
        words = ["obslog", *words[3:]]
    path = []  # the command words before the first option or value: `loki rules push`
    for word in words[1:]:
        if not re.fullmatch(r"[a-z][a-z-]*", word):
            break
        path.append(word)
    options = [
        option
        for option in re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", " ".join(words[1:]))
        if option not in ("-h", "--help")
    ]
    script = str(Path(sys.executable).with_name("obslog"))
    for entry in ([script], [sys.executable, "-m", "obslog"]):
        result = subprocess.run(
            [*entry, *path, "--help"],
            capture_output=True, text=True, timeout=60, env=clean_env(), check=False,
        )
        assert (0, "") == (result.returncode, result.stderr), (entry, command)
        for option in options:
            assert option in result.stdout, f"{command}: {option} is not an option of {path}"


def _commands() -> list[str]:
    found = shell_lines() + [
        span for span in inline_commands(COMMAND_WORDS) if " " in span
    ]
    return list(dict.fromkeys(found))


#: Commands run here: exact text -> runner.
RUN_HERE: dict[str, Callable[[str, Path], None]] = {
    "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/obslog demo --requests 50":
        _fresh_venv_demo,
    ".venv/bin/obslog demo --requests 50 | .venv/bin/obslog pretty": _demo_pretty,
    "obslog demo --port 8080 --hold": _demo_hold_curl,
}

#: Commands shown as the follow-up of another: run by that command's test.
RUN_WITH = {"curl localhost:8080/ready": "obslog demo --port 8080 --hold"}


def _command_runner(command: str) -> Callable[[str, Path], None] | None:
    if command in RUN_HERE:
        return RUN_HERE[command]
    if re.fullmatch(r"pip install '?obslog\[[\w,-]+\]'?", command):
        return _extra_exists
    if command.split(" ", 1)[0] == "obslog" or re.match(r"python3? -m obslog( |$)", command):
        return _obslog_form
    return None


_COMMANDS = _commands()


class TestShellCommands:
    def test_there_are_commands(self):
        """The extraction finds the README's commands, the set-up commands among them."""
        assert {"bash .ci/run", ".venv/bin/obslog demo --requests 50 | .venv/bin/obslog pretty"} \
            <= set(_COMMANDS)

    @pytest.mark.parametrize("command", _COMMANDS, ids=_COMMANDS)
    def test_command(self, command, tmp_path):
        """The command runs as shown, is run by a named test, or is listed as not run with why."""
        if command in NOT_RUN:
            return  # listed with its reason; test_not_run_reasons checks the list
        if command in RUN_WITH:
            assert RUN_WITH[command] in RUN_HERE and RUN_WITH[command] in _COMMANDS
            return
        if command in RUN_ELSEWHERE:
            module, cls, name = RUN_ELSEWHERE[command].split("::")
            test_module = __import__(module.removesuffix(".py"))
            assert callable(getattr(getattr(test_module, cls), name))
            return
        runner = _command_runner(command)
        if runner is None:
            pytest.fail(
                f"README command {command!r} is not run by any test: add it to RUN_HERE, "
                "RUN_ELSEWHERE or NOT_RUN in tests/test_readme.py",
                pytrace=False,
            )
        runner(command, tmp_path)

    def test_not_run_list_is_current(self):
        """Every command listed as not run is still in the README (no stale excuses)."""
        assert [] == [command for command in NOT_RUN if command not in _COMMANDS]
