"""
Tests for obslog.checks against real services: Redis and PostgreSQL on loopback, local TCP and
HTTP servers, real signals.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request

from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from _servers import free_port

from obslog.checks import (
    ShutdownCheck,
    async_postgres_check,
    async_redis_check,
    http_check,
    postgres_check,
    redis_check,
    sqlalchemy_check,
    tcp_check,
)
from obslog.health import DEFAULT_BUDGET, Readiness, serve


LOADED_SLACK = 0.5
"""Seconds a loaded 2-core machine may add to a latency promise; bench_health.py measures it."""


# --------------------------------------------------------------------------- helpers


@pytest.fixture(name="closed_port")
def _closed_port() -> int:
    """A loopback port nothing listens on."""
    return free_port()


class _StatusHandler(BaseHTTPRequestHandler):
    """Answers GET /<code> with that status code."""

    def do_GET(self) -> None:
        code = int(self.path.strip("/") or 200)
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.send_header("Location", "/200")
        self.end_headers()

    def log_message(self, format, *args) -> None:
        """Quiet."""


@pytest.fixture(name="http_base")
def _http_base() -> Iterator[str]:
    """A local HTTP server answering /<code> with that status."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StatusHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def _run(check, **options) -> dict:
    """Evaluate *check* alone in a fresh registry and return its entry plus the status code."""
    readiness = Readiness(**options)
    readiness.add("c", check)
    report = readiness.check()
    entry = json.loads(report.body)["checks"]["c"]
    entry["code"] = report.status_code
    return entry


# --------------------------------------------------------------------------- Redis


class TestRedisCheck:
    def test_sync_ping(self, redis_url):
        """PING against the real Redis passes."""
        assert {"code": 200, "status": "ok"} == _pick(_run(redis_check(redis_url)))

    def test_sync_ping_with_client(self, redis_url):
        """An existing redis.Redis client can be passed instead of a URL."""
        import redis

        client = redis.Redis.from_url(redis_url)
        try:
            assert "ok" == _run(redis_check(client=client))["status"]
        finally:
            client.close()

    def test_async_ping(self, redis_url):
        """The redis.asyncio check passes against the real Redis (from a sync caller too)."""
        assert {"code": 200, "status": "ok"} == _pick(_run(async_redis_check(redis_url)))

    async def test_async_ping_with_client(self, redis_url):
        """An existing redis.asyncio client is used on the caller's event loop."""
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(redis_url)
        readiness = Readiness()
        readiness.add("redis", async_redis_check(client=client))
        try:
            report = await readiness.check_async()
        finally:
            await client.aclose()

        assert 200 == report.status_code

    @pytest.mark.parametrize("factory", [redis_check, async_redis_check])
    def test_closed_port_fails_fast(self, factory, closed_port):
        """A Redis that is down gives 503 with the connection error, well within the budget."""
        check = factory(f"redis://127.0.0.1:{closed_port}/0")

        start = time.monotonic()
        entry = _run(check)
        elapsed = time.monotonic() - start

        assert (503, "fail") == (entry["code"], entry["status"])
        assert "Connection refused" in entry["error"] or "111" in entry["error"]
        assert elapsed < DEFAULT_BUDGET  # "fail", not "timeout": it ended on its own

    def test_hanging_redis_503_within_budget(self, hanging_port):
        """A server that accepts and never answers PING gives 503 within the default budget (plus
        the slack of a loaded machine)."""
        check = redis_check(f"redis://127.0.0.1:{hanging_port}/0", timeout=5)

        start = time.monotonic()
        entry = _run(check)
        elapsed = time.monotonic() - start

        assert (503, "timeout") == (entry["code"], entry["status"])
        assert elapsed < DEFAULT_BUDGET + LOADED_SLACK

    @pytest.mark.parametrize("factory", [redis_check, async_redis_check])
    def test_missing_redis_names_the_extra(self, factory, monkeypatch):
        """Without redis-py, building the check raises ImportError naming the extra to install."""
        monkeypatch.setitem(sys.modules, "redis", None)
        monkeypatch.setitem(sys.modules, "redis.asyncio", None)

        with pytest.raises(ImportError, match=r"pip install 'obslog\[redis\]'"):
            factory("redis://127.0.0.1:6379/0")

    def test_url_or_client(self):
        """Exactly one of url and client must be given."""
        with pytest.raises(TypeError, match="exactly one of url= or client="):
            redis_check()


def _pick(entry: dict) -> dict:
    return {"code": entry["code"], "status": entry["status"]}


# --------------------------------------------------------------------------- PostgreSQL


class TestPostgresCheck:
    def test_sync_select_1(self, postgres_dsn):
        """psycopg SELECT 1 against the real PostgreSQL passes."""
        assert {"code": 200, "status": "ok"} == _pick(_run(postgres_check(postgres_dsn)))

    async def test_async_select_1(self, postgres_dsn):
        """psycopg's AsyncConnection SELECT 1 passes on the caller's loop."""
        readiness = Readiness()
        readiness.add("pg", async_postgres_check(postgres_dsn))

        assert 200 == (await readiness.check_async()).status_code

    @pytest.mark.parametrize("factory", [postgres_check, async_postgres_check])
    def test_closed_port_fails(self, factory, closed_port):
        """A PostgreSQL that is down gives 503 with the connection error."""
        entry = _run(factory(f"postgresql://postgres@127.0.0.1:{closed_port}/postgres"))

        assert (503, "fail") == (entry["code"], entry["status"])
        assert "OperationalError" in entry["error"]

    def test_bad_query_fails_with_server_error(self, postgres_dsn):
        """A query the server rejects fails the check with the server's message."""
        entry = _run(postgres_check(postgres_dsn, query="SELECT * FROM no_such_table"))

        assert 503 == entry["code"]
        assert "no_such_table" in entry["error"]

    @pytest.mark.parametrize("factory", [postgres_check, async_postgres_check])
    def test_missing_psycopg_names_the_extra(self, factory, monkeypatch):
        """Without psycopg, building the check raises ImportError naming the extra to install."""
        monkeypatch.setitem(sys.modules, "psycopg", None)

        with pytest.raises(ImportError, match=r"pip install 'obslog\[postgres\]'"):
            factory("postgresql://postgres@127.0.0.1/postgres")


# --------------------------------------------------------------------------- SQLAlchemy


def _sqlalchemy_url(dsn: str) -> str:
    return dsn.replace("postgresql://", "postgresql+psycopg://", 1)


class TestSqlalchemyCheck:
    def test_engine_pool_hands_out_connection(self, postgres_dsn):
        """A sync engine's pool hands out a connection and SELECT 1 passes."""
        import sqlalchemy

        engine = sqlalchemy.create_engine(_sqlalchemy_url(postgres_dsn))
        try:
            assert {"code": 200, "status": "ok"} == _pick(_run(sqlalchemy_check(engine)))
        finally:
            engine.dispose()

    def test_exhausted_pool_fails(self, postgres_dsn):
        """When the pool cannot hand out a connection, the check fails with the pool's error."""
        import sqlalchemy

        engine = sqlalchemy.create_engine(
            _sqlalchemy_url(postgres_dsn), pool_size=1, max_overflow=0, pool_timeout=0.2
        )
        held = engine.connect()
        try:
            entry = _run(sqlalchemy_check(engine))
        finally:
            held.close()
            engine.dispose()

        assert (503, "fail") == (entry["code"], entry["status"])
        assert "TimeoutError" in entry["error"]

    async def test_async_engine(self, postgres_dsn):
        """An AsyncEngine gives an async check that passes on the engine's loop."""
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine(_sqlalchemy_url(postgres_dsn))
        readiness = Readiness()
        readiness.add("db", sqlalchemy_check(engine))
        try:
            report = await readiness.check_async()
        finally:
            await engine.dispose()

        assert 200 == report.status_code

    def test_not_an_engine(self):
        """Anything but an engine is rejected with TypeError."""
        with pytest.raises(TypeError, match="needs an Engine or AsyncEngine"):
            sqlalchemy_check("postgresql://")

    def test_missing_sqlalchemy_names_the_extra(self, monkeypatch):
        """Without SQLAlchemy, building the check raises ImportError naming the extra."""
        monkeypatch.setitem(sys.modules, "sqlalchemy", None)

        with pytest.raises(ImportError, match=r"pip install 'obslog\[sqlalchemy\]'"):
            sqlalchemy_check(object())


# --------------------------------------------------------------------------- TCP and HTTP


class TestTcpCheck:
    def test_open_port_passes(self, redis_url):
        """Connecting to a listening port (Redis) passes."""
        assert "ok" == _run(tcp_check("127.0.0.1", 6379))["status"]

    def test_closed_port_fails_fast(self, closed_port):
        """A closed port gives 503 naming host, port and the reason, well within the budget."""
        check = tcp_check("127.0.0.1", closed_port)

        start = time.monotonic()
        entry = _run(check)
        elapsed = time.monotonic() - start

        assert 503 == entry["code"]
        assert f"cannot connect to 127.0.0.1:{closed_port}" in entry["error"]
        assert elapsed < DEFAULT_BUDGET  # "fail", not "timeout": it ended on its own


class TestHttpCheck:
    @pytest.mark.parametrize("without_httpx", [False, True])
    def test_status_decides(self, http_base, without_httpx, monkeypatch):
        """2xx and 3xx pass, other statuses fail naming the status, with httpx or urllib."""
        if without_httpx:
            monkeypatch.setitem(sys.modules, "httpx", None)

        ok = _run(http_check(f"{http_base}/204"))
        redirect = _run(http_check(f"{http_base}/302"))
        down = _run(http_check(f"{http_base}/503"))

        assert ("ok", "ok") == (ok["status"], redirect["status"])
        assert (503, f"RuntimeError: GET {http_base}/503 answered HTTP 503") == (
            down["code"],
            down["error"],
        )

    def test_expect_narrows_statuses(self, http_base):
        """expect= lists the statuses that pass."""
        assert "fail" == _run(http_check(f"{http_base}/302", expect={200}))["status"]

    def test_hanging_server_times_out(self, hanging_port):
        """A server that never answers is reported as timed out within the budget."""
        check = http_check(f"http://127.0.0.1:{hanging_port}/", timeout=5)

        start = time.monotonic()
        entry = _run(check, budget=0.3)
        elapsed = time.monotonic() - start

        assert (503, "timeout") == (entry["code"], entry["status"])
        assert elapsed < 0.3 + LOADED_SLACK


# --------------------------------------------------------------------------- shutdown


@pytest.fixture(name="restore_sigterm")
def _restore_sigterm() -> Iterator[None]:
    before = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, before)


class TestShutdownCheck:
    def test_sigterm_flips_and_chains(self, restore_sigterm):
        """SIGTERM makes the check fail and is handed on to the handler that was there before."""
        received: list[int] = []
        signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
        check = ShutdownCheck()
        readiness = Readiness(ttl=0)
        readiness.add("not_shutting_down", check)
        before = readiness.check().status_code

        signal.raise_signal(signal.SIGTERM)
        after = readiness.check()

        assert (200, 503) == (before, after.status_code)
        assert [signal.SIGTERM] == received
        assert check.shutting_down
        assert (
            "RuntimeError: shutting down (received SIGTERM)"
            == (json.loads(after.body)["checks"]["not_shutting_down"]["error"])
        )

    def test_uninstall_restores_prior_handler(self, restore_sigterm):
        """uninstall() puts back the handler that was replaced."""

        def prior(signum, frame):
            """Prior handler."""

        signal.signal(signal.SIGTERM, prior)
        check = ShutdownCheck()
        assert signal.getsignal(signal.SIGTERM) == check._on_signal

        check.uninstall()

        assert prior is signal.getsignal(signal.SIGTERM)

    def test_close_restores_prior_handler(self, restore_sigterm):
        """close() puts back the handler that was there before, and a second close() is a no-op."""

        def prior(signum, frame):
            """Prior handler."""

        signal.signal(signal.SIGTERM, prior)
        check = ShutdownCheck()
        installed = signal.getsignal(signal.SIGTERM)

        check.close()
        check.close()

        assert check._on_signal == installed
        assert prior is signal.getsignal(signal.SIGTERM)

    def test_with_block_restores_default_action(self, restore_sigterm):
        """Leaving a with block restores the default action when no handler was there before."""
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

        with ShutdownCheck() as check:
            inside = signal.getsignal(signal.SIGTERM)

        assert check._on_signal == inside
        assert signal.SIG_DFL == signal.getsignal(signal.SIGTERM)

    def test_removal_from_readiness_restores_prior_handler(self, restore_sigterm):
        """Removing the check from a Readiness restores the handler it replaced."""

        def prior(signum, frame):
            """Prior handler."""

        signal.signal(signal.SIGTERM, prior)
        readiness = Readiness()
        readiness.add("not_shutting_down", ShutdownCheck())

        readiness.remove("not_shutting_down")

        assert prior is signal.getsignal(signal.SIGTERM)

    def test_close_leaves_a_later_handler_alone(self, restore_sigterm):
        """A handler installed after the check's is not replaced by close()."""

        def later(signum, frame):
            """Installed after the check."""

        check = ShutdownCheck()
        signal.signal(signal.SIGTERM, later)

        check.close()

        assert later is signal.getsignal(signal.SIGTERM)

    def test_ignored_signal_stays_ignored(self, restore_sigterm):
        """With SIGTERM ignored before, the check flips and the process keeps running."""
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        check = ShutdownCheck()

        signal.raise_signal(signal.SIGTERM)

        assert check.shutting_down

    def test_trigger_without_signals(self):
        """With install=False nothing is installed and trigger() flips the check."""
        before = signal.getsignal(signal.SIGTERM)
        check = ShutdownCheck(install=False)
        assert check() is True

        check.trigger("deploy")

        assert before == signal.getsignal(signal.SIGTERM)
        with pytest.raises(RuntimeError, match=r"shutting down \(deploy\)"):
            check()

    def test_main_thread_only(self):
        """Installing from another thread raises a ValueError that says what to do instead."""
        errors: list[BaseException] = []

        def build() -> None:
            try:
                ShutdownCheck()
            except ValueError as exc:
                errors.append(exc)

        thread = threading.Thread(target=build)
        thread.start()
        thread.join()

        assert 1 == len(errors)
        assert "install=False" in str(errors[0])

    def test_drain_then_default_action(self, tmp_path):
        """In a real worker with no SIGTERM handler, SIGTERM turns /ready 503 at once and the
        process still dies of SIGTERM after exit_after."""
        script = tmp_path / "worker.py"
        script.write_text(
            textwrap.dedent(
                """
                import time
                from obslog.checks import ShutdownCheck
                from obslog.health import Readiness, serve

                readiness = Readiness(ttl=0)
                readiness.add("not_shutting_down", ShutdownCheck(exit_after=2))
                server = serve(readiness, port=0)
                print(server.port, flush=True)
                while True:
                    time.sleep(0.05)
                """
            )
        )
        proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
        try:
            port = int(proc.stdout.readline())
            url = f"http://127.0.0.1:{port}/ready"
            before = httpx.get(url).status_code
            os.kill(proc.pid, signal.SIGTERM)
            after = None
            for _ in range(40):
                try:
                    with urllib.request.urlopen(url, timeout=1):
                        pass
                except urllib.error.HTTPError as exc:
                    after = (exc.code, json.loads(exc.read())["checks"]["not_shutting_down"])
                    break
                time.sleep(0.025)
            returncode = proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()

        assert 200 == before
        assert 503 == after[0]
        assert "RuntimeError: shutting down (received SIGTERM)" == after[1]["error"]
        assert -signal.SIGTERM == returncode


# --------------------------------------------------------------------------- all together


class TestAllChecksTogether:
    def test_healthy_ready_over_http(self, redis_url, postgres_dsn, http_base):
        """Every built-in check against healthy real dependencies: /ready is 200, all ok."""
        import sqlalchemy

        engine = sqlalchemy.create_engine(_sqlalchemy_url(postgres_dsn))
        readiness = Readiness()
        readiness.add("redis", redis_check(redis_url))
        readiness.add("redis_async", async_redis_check(redis_url))
        readiness.add("postgres", postgres_check(postgres_dsn))
        readiness.add("postgres_async", async_postgres_check(postgres_dsn))
        readiness.add("sqlalchemy", sqlalchemy_check(engine))
        readiness.add("tcp", tcp_check("127.0.0.1", 5432))
        readiness.add("http", http_check(f"{http_base}/200"))
        readiness.add("not_shutting_down", ShutdownCheck(install=False))
        try:
            with serve(readiness, port=0) as server:
                response = httpx.get(f"{server.url}/ready")
        finally:
            engine.dispose()

        body = response.json()
        assert 200 == response.status_code
        assert {name: "ok" for name in readiness.names()} == {
            name: entry["status"] for name, entry in body["checks"].items()
        }
