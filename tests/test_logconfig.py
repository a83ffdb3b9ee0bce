"""obslog.logconfig: uvicorn's and gunicorn's own lines as obslog JSON, on the real servers."""

from __future__ import annotations

import json
import logging
import logging.config
import os
import subprocess
import sys
import textwrap
import time

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from _servers import free_port

import obslog
import obslog.logconfig


ASGI_APP = textwrap.dedent(
    """
    import logging
    import obslog
    from obslog.asgi import ObslogMiddleware
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    obslog.configure(service="shop")

    async def ok(request):
        logging.getLogger("shop").info("ok handler")
        return PlainTextResponse("ok")

    async def boom(request):
        raise RuntimeError("kaboom")

    # reraise: uvicorn sees the exception and logs "Exception in ASGI application" itself.
    application = ObslogMiddleware(
        Starlette(routes=[Route("/ok", ok), Route("/boom", boom)]), reraise=True
    )
    """
)

UVICORN_RUN = textwrap.dedent(
    """
    import sys
    import uvicorn
    import obslog.logconfig

    uvicorn.run(
        "main:application",
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_config=obslog.logconfig.uvicorn(service="shop"),
    )
    """
)

WSGI_APP = textwrap.dedent(
    """
    import flask
    import obslog, obslog.flask

    obslog.configure(service="shop")
    app = flask.Flask("gapp")

    @app.get("/ok")
    def ok():
        return "ok"

    @app.get("/boom")
    def boom():
        raise RuntimeError("kaboom")

    obslog.flask.init_app(app)
    """
)

GUNICORN_CONF = textwrap.dedent(
    """
    import obslog.logconfig

    logconfig_dict = obslog.logconfig.gunicorn(service="shop")
    """
)


def run_server(
    argv: list[str], cwd: Path, port: int, requests: Callable[[str], None]
) -> tuple[list[str], int]:
    """Start a server, wait until it answers on *port*, run *requests*, stop it with SIGTERM.

    Returns every non-empty line it wrote to stdout and stderr, and its exit code.
    """
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OBSLOG_")},
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join([str(cwd), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/ok")
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    proc.kill()
                    out, err = proc.communicate(timeout=20)
                    pytest.fail(f"server did not start:\n{out}\n{err}")
                time.sleep(0.1)
        requests(base)
    finally:
        proc.terminate()
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    return [line for line in (out + err).splitlines() if line.strip()], proc.returncode


def parse_all(lines: list[str]) -> list[dict]:
    """Parse every line as JSON; fail naming the first line that is not an obslog line."""
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}")
        assert {"timestamp", "level", "logger", "event"} <= record.keys(), line
        records.append(record)
    return records


def _boom(base: str) -> None:
    assert 500 == httpx.get(f"{base}/boom").status_code


class TestUvicorn:
    """uvicorn's startup, error and shutdown lines go through obslog's formatter."""

    def _check(self, lines: list[str]) -> None:
        records = parse_all(lines)
        server = [r for r in records if r["logger"].startswith("uvicorn")]
        events = " | ".join(r["event"] for r in server)
        for expected in (
            "Started server process",
            "Application startup complete.",
            "Uvicorn running on http://127.0.0.1:",
            "Exception in ASGI application",
            "Shutting down",
            "Finished server process",
        ):
            assert expected in events
        assert {"shop"} == {r.get("service") for r in server}
        assert [] == [r for r in records if "color_message" in r]
        assert [] == [r for r in records if r["logger"] == "uvicorn.access"]
        (error,) = [r for r in server if r["event"].startswith("Exception in ASGI")]
        assert ("RuntimeError", "kaboom") == (error["exc_type"], error["exc_message"])
        requests = [r for r in records if r["event"] == "request"]
        assert [("/ok", 200), ("/ok", 200), ("/boom", 500)] == [
            (r["route"], r["status"]) for r in requests
        ]

    def test_uvicorn_run_with_log_config_dict(self, tmp_path):
        """uvicorn.run(log_config=obslog.logconfig.uvicorn()): every line written is obslog JSON."""
        (tmp_path / "main.py").write_text(ASGI_APP)
        (tmp_path / "serve.py").write_text(UVICORN_RUN)
        port = free_port()

        def requests(base: str) -> None:
            httpx.get(f"{base}/ok")
            _boom(base)

        lines, _ = run_server([sys.executable, "serve.py", str(port)], tmp_path, port, requests)
        self._check(lines)

    def test_uvicorn_cli_with_generated_log_config_file(self, tmp_path):
        """`python -m obslog.logconfig uvicorn > log.json; uvicorn --log-config log.json`."""
        (tmp_path / "main.py").write_text(ASGI_APP)
        generated = subprocess.run(
            [sys.executable, "-m", "obslog.logconfig", "uvicorn", "--service", "shop"],
            capture_output=True,
            text=True,
            check=True,
        )
        (tmp_path / "log.json").write_text(generated.stdout)
        port = free_port()

        def requests(base: str) -> None:
            httpx.get(f"{base}/ok")
            _boom(base)

        argv = [
            sys.executable, "-m", "uvicorn", "main:application",
            "--host", "127.0.0.1", "--port", str(port), "--log-config", "log.json",
        ]  # fmt: skip
        lines, _ = run_server(argv, tmp_path, port, requests)
        self._check(lines)


class TestGunicorn:
    """gunicorn's master and worker lines go through obslog's formatter."""

    def _check(self, lines: list[str]) -> None:
        records = parse_all(lines)
        server = [r for r in records if r["logger"].startswith("gunicorn")]
        events = " | ".join(r["event"] for r in server)
        for expected in (
            "Starting gunicorn",
            "Listening at: http://127.0.0.1:",
            "Booting worker with pid",
            "Handling signal: term",
            "Worker exiting",
            "Shutting down: Master",
        ):
            assert expected in events
        requests = [r for r in records if r["event"] == "request"]
        assert [("/ok", 200), ("/ok", 200), ("/boom", 500)] == [
            (r["route"], r["status"]) for r in requests
        ]
        (flask_error,) = [r for r in records if r["event"].startswith("Exception on /boom")]
        assert "RuntimeError" == flask_error["exc_type"]

    def _requests(self, base: str) -> None:
        httpx.get(f"{base}/ok")
        _boom(base)

    def test_gunicorn_conf_py_logconfig_dict(self, tmp_path):
        """gunicorn.conf.py with logconfig_dict = obslog.logconfig.gunicorn(): only JSON lines."""
        (tmp_path / "gapp.py").write_text(WSGI_APP)
        (tmp_path / "gunicorn.conf.py").write_text(GUNICORN_CONF)
        port = free_port()
        argv = [
            sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
            "--workers", "1", "gapp:app",
        ]  # fmt: skip
        lines, _ = run_server(argv, tmp_path, port, self._requests)
        self._check(lines)
        assert {"shop"} == {r.get("service") for r in parse_all(lines)}

    def test_gunicorn_python_module_config(self, tmp_path):
        """`gunicorn -c python:obslog.logconfig`: the defaults, every line obslog JSON."""
        (tmp_path / "gapp.py").write_text(WSGI_APP)
        port = free_port()
        argv = [
            sys.executable, "-m", "gunicorn", "-c", "python:obslog.logconfig",
            "--bind", f"127.0.0.1:{port}", "--workers", "1", "gapp:app",
        ]  # fmt: skip
        lines, _ = run_server(argv, tmp_path, port, self._requests)
        self._check(lines)


class TestConfigDicts:
    """The dicts themselves: replaceable handler, JSON-serialisable, clear errors."""

    def test_configure_replaces_the_server_handler(self, sio):
        """After dictConfig(uvicorn()), obslog.configure() replaces its handler: no double lines."""
        names = ("uvicorn", "uvicorn.error", "uvicorn.access")
        saved = {n: (lg.level, lg.filters[:]) for n in names for lg in [logging.getLogger(n)]}
        try:
            logging.config.dictConfig(obslog.logconfig.uvicorn())
            obslog.configure(stream=sio)
            logging.getLogger("uvicorn.error").info("started")
        finally:
            for name, (level, filters) in saved.items():
                logging.getLogger(name).setLevel(level)
                logging.getLogger(name).filters[:] = filters
        root = logging.getLogger()
        marked = [h for h in root.handlers if getattr(h, "_obslog_handler", False)]
        assert 1 == len(marked)
        assert ["started"] == [json.loads(line)["event"] for line in sio.getvalue().splitlines()]

    def test_dicts_are_json_serialisable(self):
        """Both dicts survive a JSON round trip (uvicorn --log-config reads JSON files)."""
        for config in (obslog.logconfig.uvicorn(service="s"), obslog.logconfig.gunicorn()):
            assert config == json.loads(json.dumps(config))

    def test_access_log_true_keeps_access_lines(self):
        """access_log=True leaves uvicorn.access at the level, default mutes it."""
        assert "WARNING" == obslog.logconfig.uvicorn()["loggers"]["uvicorn.access"]["level"]
        kept = obslog.logconfig.uvicorn(access_log=True)["loggers"]["uvicorn.access"]["level"]
        assert "INFO" == kept

    def test_bad_level_is_one_clear_line(self):
        """`python -m obslog.logconfig uvicorn --level bogus` exits 2 with one error line."""
        result = subprocess.run(
            [sys.executable, "-m", "obslog.logconfig", "uvicorn", "--level", "bogus"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert 2 == result.returncode
        assert "unknown log level 'bogus'" in result.stderr
        assert "Traceback" not in result.stderr
