"""
Tests for obslog.health: the readiness registry, the framework-neutral core and its adapters,
served by real servers (uvicorn, werkzeug, aiohttp, the stdlib side-port server) over loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request

from collections.abc import Iterator

import httpx
import pytest

from _servers import free_port

from obslog.aiohttp import add_health_routes
from obslog.asgi import make_health_app as make_asgi_app
from obslog.health import DEFAULT_BUDGET, HealthEndpoints, Readiness, ReadyReport, serve
from obslog.testing import CapturedLines
from obslog.wsgi import make_health_app as make_wsgi_app


LOADED_SLACK = 0.5
"""Seconds a loaded 2-core machine may add to a latency promise; bench_health.py measures it."""


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _uvicorn(app) -> Iterator[str]:
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="auto", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextlib.contextmanager
def _werkzeug(app) -> Iterator[str]:
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _body(report: ReadyReport) -> dict:
    return json.loads(report.body)


class _Counter:
    """A sync check that counts its calls and sleeps for *delay* seconds."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls = 0
        self.delay = delay
        self._lock = threading.Lock()

    def __call__(self) -> bool:
        with self._lock:
            self.calls += 1
        time.sleep(self.delay)
        return True


# --------------------------------------------------------------------------- Readiness


class TestReadiness:
    def test_no_checks_is_ready(self):
        """A registry without checks answers 200 with an empty check list."""
        report = Readiness().check()

        assert 200 == report.status_code
        assert {"status": "ok", "checks": {}} == {
            k: v for k, v in _body(report).items() if k != "duration_ms"
        }

    def test_passing_sync_and_async_checks(self):
        """Sync and async checks that return True or None pass, each listed with its latency."""
        readiness = Readiness()
        readiness.add("sync", lambda: True)

        async def async_ok() -> None:
            await asyncio.sleep(0)

        readiness.add("async", async_ok)

        body = _body(readiness.check())

        assert "ok" == body["status"]
        assert ["sync", "async"] == list(body["checks"])
        for entry in body["checks"].values():
            assert {"status": "ok", "required": True, "error": None} == {
                k: entry[k] for k in ("status", "required", "error")
            }
            assert isinstance(entry["latency_ms"], float)

    def test_raising_check_is_503_with_error_text(self):
        """A check that raises makes the answer 503 and its error text is reported."""
        readiness = Readiness()

        def broken() -> bool:
            raise RuntimeError("database is on fire")

        readiness.add("db", broken)

        report = readiness.check()

        assert 503 == report.status_code
        assert "RuntimeError: database is on fire" == _body(report)["checks"]["db"]["error"]
        assert "fail" == _body(report)["checks"]["db"]["status"]

    def test_false_fails(self):
        """A check that returns False fails with a message saying so."""
        readiness = Readiness()
        readiness.add("flag", lambda: False)

        report = readiness.check()

        assert 503 == report.status_code
        assert "check returned False" == _body(report)["checks"]["flag"]["error"]

    @pytest.mark.parametrize("garbage", ["ok", 0, 1, {"ok": True}, [], 200])
    def test_garbage_return_fails_clearly(self, garbage):
        """A check returning anything but None/True/False fails, naming the value and its type."""
        readiness = Readiness()
        readiness.add("odd", lambda: garbage)

        error = _body(readiness.check())["checks"]["odd"]["error"]

        assert error.startswith(f"check returned {garbage!r} ({type(garbage).__name__})")
        assert "must return None or True to pass" in error

    def test_non_required_failure_keeps_200(self):
        """A failing check with required=False is reported but does not fail the answer."""
        readiness = Readiness()
        readiness.add("cache", lambda: False, required=False)
        readiness.add("db", lambda: True)

        report = readiness.check()

        assert 200 == report.status_code
        assert {"status": "fail", "required": False} == {
            k: _body(report)["checks"]["cache"][k] for k in ("status", "required")
        }

    def test_hanging_sync_check_times_out_within_budget(self):
        """A sync check that never returns is reported as timed out within the budget."""
        release = threading.Event()
        readiness = Readiness(budget=0.3)
        readiness.add("hang", release.wait)
        readiness.add("fine", lambda: True)
        try:
            start = time.monotonic()
            report = readiness.check()
            elapsed = time.monotonic() - start
        finally:
            release.set()

        assert 503 == report.status_code
        assert "timeout" == _body(report)["checks"]["hang"]["status"]
        assert "ok" == _body(report)["checks"]["fine"]["status"]
        assert _body(report)["checks"]["hang"]["error"].startswith("timed out after")
        assert elapsed < 0.3 + LOADED_SLACK

    def test_own_timeout_is_applied_per_check(self):
        """A check's own timeout cuts it off even when the budget would allow more."""
        readiness = Readiness(budget=1.0)

        async def slow() -> bool:
            await asyncio.sleep(0.5)
            return True

        readiness.add("short", slow, timeout=0.05)
        readiness.add("long", slow)

        body = _body(readiness.check())

        assert "timeout" == body["checks"]["short"]["status"]
        assert "ok" == body["checks"]["long"]["status"]

    def test_timeout_above_budget_is_clamped(self):
        """A per-check timeout larger than the budget never makes the answer exceed the budget."""
        readiness = Readiness(budget=0.2)

        async def forever() -> None:
            await asyncio.sleep(60)

        readiness.add("slow", forever, timeout=30)

        start = time.monotonic()
        report = readiness.check()

        assert 503 == report.status_code
        assert time.monotonic() - start < 0.2 + LOADED_SLACK

    def test_results_are_cached_for_ttl(self):
        """Within the TTL the checks are not run again; after it they are."""
        counter = _Counter()
        readiness = Readiness(ttl=0.2)
        readiness.add("c", counter)

        first = readiness.check()
        second = readiness.check()
        time.sleep(0.25)
        readiness.check()

        assert first is second
        assert 2 == counter.calls

    def test_threads_share_one_evaluation(self):
        """Many threads probing at once trigger one evaluation and get the same report."""
        counter = _Counter(delay=0.2)
        readiness = Readiness(ttl=0)
        readiness.add("c", counter)
        reports: list[ReadyReport] = []
        barrier = threading.Barrier(16)

        def probe() -> None:
            barrier.wait()
            reports.append(readiness.check())

        threads = [threading.Thread(target=probe) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        assert 1 == counter.calls
        assert 1 == len({id(r) for r in reports})

    async def test_coroutines_share_one_evaluation(self):
        """Many concurrent async probes trigger one evaluation."""
        calls = 0

        async def slow() -> bool:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.1)
            return True

        readiness = Readiness(ttl=0)
        readiness.add("c", slow)

        reports = await asyncio.gather(*(readiness.check_async() for _ in range(16)))

        assert 1 == calls
        assert 1 == len({id(r) for r in reports})

    async def test_threads_and_coroutines_share_one_evaluation(self):
        """Sync callers in threads and async callers at the same time share one evaluation."""
        counter = _Counter(delay=0.2)
        readiness = Readiness(ttl=0)
        readiness.add("c", counter)

        first = asyncio.ensure_future(readiness.check_async())
        await asyncio.sleep(0.02)
        in_threads = [asyncio.to_thread(readiness.check) for _ in range(4)]
        reports = await asyncio.gather(first, *in_threads, readiness.check_async())

        assert 1 == counter.calls
        assert 1 == len({id(r) for r in reports})

    async def test_cancelled_caller_does_not_cancel_shared_evaluation(self):
        """Cancelling the probe that started an evaluation leaves it running for the others."""
        readiness = Readiness(ttl=0)

        async def slow() -> bool:
            await asyncio.sleep(0.1)
            return True

        readiness.add("c", slow)
        starter = asyncio.ensure_future(readiness.check_async())
        await asyncio.sleep(0.01)
        waiter = asyncio.ensure_future(readiness.check_async())
        await asyncio.sleep(0.01)
        starter.cancel()

        report = await waiter

        assert 200 == report.status_code

    async def test_sync_check_runs_off_the_event_loop(self):
        """A sync check is run in a thread, never on the event loop that serves the probe."""
        seen: list[bool] = []

        def blocking() -> bool:
            try:
                asyncio.get_running_loop()
                seen.append(True)
            except RuntimeError:
                seen.append(False)
            return True

        readiness = Readiness()
        readiness.add("blocking", blocking)

        await readiness.check_async()

        assert [False] == seen

    def test_hung_sync_check_is_not_started_twice(self):
        """While a timed-out sync call is still running, later evaluations do not start another."""
        release = threading.Event()
        calls = 0

        def hang() -> bool:
            nonlocal calls
            calls += 1
            release.wait()
            return True

        readiness = Readiness(budget=0.1, ttl=0)
        readiness.add("hang", hang)
        try:
            readiness.check()
            report = readiness.check()
        finally:
            release.set()

        assert 1 == calls
        assert _body(report)["checks"]["hang"]["error"].startswith("previous call has not returned")

    def test_async_checks_of_sync_callers_run_on_given_loop(self):
        """With loop=, async checks started by a sync caller run on that loop; calling check()
        from that very loop is refused instead of deadlocking."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        seen: list[bool] = []

        async def on_loop() -> bool:
            seen.append(asyncio.get_running_loop() is loop)
            return True

        readiness = Readiness(loop=loop, ttl=0)
        readiness.add("app_loop", on_loop)

        async def misuse() -> None:
            readiness.check()

        try:
            report = readiness.check()
            with pytest.raises(RuntimeError, match="await check_async"):
                asyncio.run_coroutine_threadsafe(misuse(), loop).result(5)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
            loop.close()

        assert 200 == report.status_code
        assert [True] == seen

    @pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
    def test_works_in_forked_child(self):
        """A registry used before a fork evaluates again in the child (its loop and locks are
        rebuilt there)."""
        readiness = Readiness(ttl=0)

        async def async_ok() -> bool:
            return True

        readiness.add("sync", lambda: True)
        readiness.add("async", async_ok)
        assert 200 == readiness.check().status_code

        pid = os.fork()
        if pid == 0:  # the child: never return into pytest
            code = 1
            try:
                code = 0 if readiness.check().status_code == 200 else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)

        assert 0 == os.waitstatus_to_exitcode(status)

    def test_decorator_registers(self):
        """add() without a function works as a decorator and keeps the function."""
        readiness = Readiness()

        @readiness.add("deco", required=False)
        def deco() -> bool:
            return True

        assert ["deco"] == readiness.names()
        assert deco() is True

    def test_remove(self):
        """remove() unregisters a check and invalidates the cached answer."""
        readiness = Readiness()
        readiness.add("bad", lambda: False)
        assert 503 == readiness.check().status_code

        readiness.remove("bad")

        assert 200 == readiness.check().status_code

    def test_invalid_arguments(self):
        """Bad budgets, TTLs, names, timeouts and non-callables are rejected with clear errors."""
        readiness = Readiness()
        readiness.add("x", lambda: True)

        with pytest.raises(ValueError, match="budget must be a positive"):
            Readiness(budget=0)
        with pytest.raises(ValueError, match="ttl must be zero or a positive"):
            Readiness(ttl=-1)
        with pytest.raises(ValueError, match="already registered"):
            readiness.add("x", lambda: True)
        with pytest.raises(ValueError, match="non-empty string"):
            readiness.add("", lambda: True)
        with pytest.raises(ValueError, match="timeout must be a positive"):
            readiness.add("y", lambda: True, timeout=0)
        with pytest.raises(TypeError, match="must be a callable"):
            readiness.add("z", 42)

    def test_failure_is_logged_once_per_transition(self, caplog):
        """A failing check is logged when it starts failing, not on every probe."""
        state = {"ok": False}
        readiness = Readiness(ttl=0)
        readiness.add("flappy", lambda: state["ok"])

        with caplog.at_level("INFO", logger="obslog.health"):
            readiness.check()
            readiness.check()
            state["ok"] = True
            readiness.check()

        assert ["readiness check failed", "readiness check recovered"] == [
            r.getMessage() for r in caplog.records if r.name == "obslog.health"
        ]


# --------------------------------------------------------------------------- core


class TestHealthEndpoints:
    def test_health_is_200_small_json(self):
        """/health answers 200 with a small JSON body while the main thread is alive."""
        status, headers, body = HealthEndpoints().handle("/health")

        assert 200 == status
        assert ("Content-Type", "application/json") in headers
        assert {"status": "ok"} == json.loads(body)

    def test_health_runs_no_check(self):
        """/health never runs readiness checks (liveness does no I/O)."""
        counter = _Counter()
        readiness = Readiness()
        readiness.add("c", counter)

        HealthEndpoints(readiness).handle("/health")

        assert 0 == counter.calls

    def test_ready_503_with_error(self):
        """/ready answers 503, not 500, when a check raises, with its error text in the body."""
        readiness = Readiness()
        readiness.add("boom", lambda: 1 / 0)

        status, _, body = HealthEndpoints(readiness).handle("/ready")

        assert 503 == status
        assert "ZeroDivisionError: division by zero" == json.loads(body)["checks"]["boom"]["error"]

    def test_head_has_no_body_but_length(self):
        """HEAD answers the same status with an empty body and the GET body's length."""
        status, headers, body = HealthEndpoints().handle("/health", "HEAD")

        assert (200, b"") == (status, body)
        assert ("Content-Length", str(len(b'{"status":"ok"}'))) in headers

    def test_other_methods_are_405(self):
        """Methods other than GET and HEAD get 405 with an Allow header."""
        status, headers, _ = HealthEndpoints().handle("/ready", "POST")

        assert 405 == status
        assert ("Allow", "GET, HEAD") in headers

    def test_unknown_path_is_404(self):
        """A path that is not a tier answers 404."""
        assert 404 == HealthEndpoints().handle("/nope")[0]

    def test_prefix_and_custom_paths(self):
        """Tiers move under a prefix and to custom paths; a disabled tier is 404."""
        endpoints = HealthEndpoints(
            prefix="/ops/", health_path="/livez", ready_path="/readyz", metrics_path=None
        )

        assert {"/ops/livez": "health", "/ops/readyz": "ready"} == endpoints.routes
        assert 200 == endpoints.handle("/ops/livez")[0]
        assert 200 == endpoints.handle("/ops/readyz/")[0]
        assert 404 == endpoints.handle("/health")[0]
        assert 404 == endpoints.handle("/ops/metrics")[0]

    def test_bad_paths_are_rejected(self):
        """Paths without a leading slash and two tiers on one path are configuration errors."""
        with pytest.raises(ValueError, match="must start with '/'"):
            HealthEndpoints(health_path="health")
        with pytest.raises(ValueError, match="already used"):
            HealthEndpoints(health_path="/x", ready_path="/x")

    def test_metrics_prometheus_text(self):
        """/metrics serves the Prometheus text format with the standard collectors."""
        status, headers, body = HealthEndpoints().handle("/metrics")

        assert 200 == status
        assert dict(headers)["Content-Type"].startswith("text/plain")
        assert b"python_info" in body

    def test_metrics_negotiates_openmetrics(self):
        """An OpenMetrics Accept header gets the OpenMetrics format."""
        accept = "application/openmetrics-text; version=1.0.0"

        _, headers, body = HealthEndpoints().handle("/metrics", "GET", accept)

        assert dict(headers)["Content-Type"].startswith("application/openmetrics-text")
        assert body.endswith(b"# EOF\n")

    def test_metrics_failure_is_500_text(self):
        """A metrics renderer that raises gives a plain 500 naming the error."""

        def broken(accept):
            raise RuntimeError("no registry")

        status, _, body = HealthEndpoints(metrics=broken).handle("/metrics")

        assert 500 == status
        assert b"RuntimeError: no registry" in body

    def test_health_503_when_main_thread_has_ended(self, tmp_path):
        """/health answers 503 once the main thread has finished while other threads keep the
        process alive (a real process whose main thread returned)."""
        script = tmp_path / "zombie.py"
        script.write_text(
            textwrap.dedent(
                """
                import sys, threading
                from obslog.health import serve

                server = serve(port=0)
                print(server.port, flush=True)

                def linger():
                    sys.stdin.readline()  # keeps the process alive after the main thread
                    server.close()

                threading.Thread(target=linger).start()
                """
            )
        )
        proc = subprocess.Popen(
            [sys.executable, str(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            port = int(proc.stdout.readline())
            status = None
            for _ in range(100):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                        pass
                except urllib.error.HTTPError as exc:
                    status = exc.code
                    body = json.loads(exc.read())
                    break
                time.sleep(0.05)
        finally:
            proc.stdin.close()
            proc.wait(10)
            proc.stdout.close()

        assert 503 == status
        assert {"status": "fail", "error": "main thread is not alive"} == body


# --------------------------------------------------------------------------- adapters


def _ops_readiness() -> Readiness:
    readiness = Readiness()
    readiness.add("always", lambda: True)
    return readiness


class TestAsgiApp:
    def test_fastapi_mount_under_prefix(self):
        """Mounted in FastAPI under /ops and served by uvicorn, the tiers answer beside the app."""
        from fastapi import FastAPI

        app = FastAPI()

        @app.get("/orders/{order_id}")
        def order(order_id: int) -> dict:
            return {"id": order_id}

        app.mount("/ops", make_asgi_app(_ops_readiness()))

        with _uvicorn(app) as base:
            health = httpx.get(f"{base}/ops/health")
            ready = httpx.get(f"{base}/ops/ready")
            metrics = httpx.get(f"{base}/ops/metrics")
            order_resp = httpx.get(f"{base}/orders/7")

        assert (200, {"status": "ok"}) == (health.status_code, health.json())
        assert (200, "ok") == (ready.status_code, ready.json()["checks"]["always"]["status"])
        assert b"python_info" in metrics.content
        assert {"id": 7} == order_resp.json()

    def test_middleware_passes_other_paths_and_lifespan(self):
        """As middleware, the app answers its paths and hands everything else (and lifespan)
        to the wrapped app."""
        events: list[str] = []

        async def inner(scope, receive, send):
            if scope["type"] == "lifespan":
                while True:
                    message = await receive()
                    events.append(message["type"])
                    await send({"type": message["type"] + ".complete"})
                    if message["type"] == "lifespan.shutdown":
                        return
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"inner"})

        app = make_asgi_app(_ops_readiness(), app=inner, prefix="/_")
        with _uvicorn(app) as base:
            ready = httpx.get(f"{base}/_/ready")
            other = httpx.get(f"{base}/health")

        assert 200 == ready.status_code
        assert "inner" == other.text
        assert ["lifespan.startup", "lifespan.shutdown"] == events

    def test_failing_check_is_503_not_500(self, redis_url):
        """Over uvicorn, a raising check gives 503 with its text, beside a real Redis check."""
        from obslog.checks import async_redis_check

        readiness = Readiness()
        readiness.add("redis", async_redis_check(redis_url))

        async def broken() -> None:
            raise ConnectionError("upstream refused")

        readiness.add("upstream", broken)

        with _uvicorn(make_asgi_app(readiness)) as base:
            response = httpx.get(f"{base}/ready")

        checks = response.json()["checks"]
        assert 503 == response.status_code
        assert "ok" == checks["redis"]["status"]
        assert "ConnectionError: upstream refused" == checks["upstream"]["error"]

    def test_standalone_404(self):
        """Without a wrapped app, other paths get 404."""
        with _uvicorn(make_asgi_app()) as base:
            assert 404 == httpx.get(f"{base}/elsewhere").status_code


class TestWsgiApp:
    def test_flask_add_health(self, lines):
        """obslog.flask.add_health serves the tiers beside a Flask app under werkzeug, ahead of
        init_app's request log: probes write no request line, app requests do."""
        from flask import Flask

        import obslog.flask

        flask_app = Flask("shop")

        @flask_app.get("/orders/<int:order_id>")
        def order(order_id: int):
            return {"id": order_id}

        obslog.flask.init_app(flask_app)
        endpoints = obslog.flask.add_health(flask_app, _ops_readiness())

        with _werkzeug(flask_app) as base:
            health = httpx.get(f"{base}/health")
            ready = httpx.get(f"{base}/ready")
            head = httpx.head(f"{base}/ready")
            metrics = httpx.get(f"{base}/metrics")
            order_resp = httpx.get(f"{base}/orders/3")

        assert ["always"] == endpoints.readiness.names()
        assert (200, {"status": "ok"}) == (health.status_code, health.json())
        assert 200 == ready.status_code
        assert (200, b"") == (head.status_code, head.content)
        assert b"python_info" in metrics.content
        assert {"id": 3} == order_resp.json()
        request_lines = lines.wait_for(CapturedLines.canonical).canonical()
        assert ["/orders/<int:order_id>"] == [line["route"] for line in request_lines]

    def test_dispatcher_mount_under_prefix(self):
        """Mounted under /ops with werkzeug's DispatcherMiddleware, paths resolve below it."""
        from werkzeug.middleware.dispatcher import DispatcherMiddleware

        def root(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"root"]

        app = DispatcherMiddleware(root, {"/ops": make_wsgi_app(_ops_readiness())})
        with _werkzeug(app) as base:
            ready = httpx.get(f"{base}/ops/ready")
            missing = httpx.get(f"{base}/ops/nope")

        assert 200 == ready.status_code
        assert 404 == missing.status_code

    def test_wsgi_compliance(self):
        """The WSGI app passes wsgiref's validator for every tier and a 404."""
        from wsgiref.util import setup_testing_defaults
        from wsgiref.validate import validator

        app = validator(make_wsgi_app(_ops_readiness()))
        statuses = []
        for path in ("/health", "/ready", "/metrics", "/nope"):
            environ: dict = {"PATH_INFO": path, "SCRIPT_NAME": "", "QUERY_STRING": ""}
            setup_testing_defaults(environ)
            captured = []

            def start_response(status, headers, exc_info=None, captured=captured):
                captured.append(status)
                return lambda data: None

            result = app(environ, start_response)
            b"".join(result)
            result.close()
            statuses.append(captured[0])

        assert ["200 OK", "200 OK", "200 OK", "404 Not Found"] == statuses


class TestAiohttpRoutes:
    async def test_routes_on_aiohttp_server(self, hanging_port):
        """Routes added to an aiohttp app and served by aiohttp answer all tiers; a hanging
        dependency gives 503 within the budget."""
        from aiohttp import web

        async def home_page(request: web.Request) -> web.Response:
            return web.Response(text="home")

        app = web.Application()
        app.router.add_get("/", home_page)
        fast = Readiness()
        fast.add("always", lambda: True)
        add_health_routes(app, fast, prefix="/ops")
        stuck = Readiness(budget=0.3)
        stuck.add("hang", self._hang_check(hanging_port))
        sub = web.Application()
        add_health_routes(sub, stuck)
        app.add_subapp("/stuck", sub)

        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                health = await client.get("/ops/health")
                ready = await client.get("/ops/ready")
                metrics = await client.get("/ops/metrics")
                home = await client.get("/")
                start = time.monotonic()
                hanging = await client.get("/stuck/ready")
                elapsed = time.monotonic() - start
        finally:
            await runner.cleanup()

        assert (200, {"status": "ok"}) == (health.status_code, health.json())
        assert 200 == ready.status_code
        assert metrics.headers["content-type"].startswith("text/plain")
        assert "home" == home.text
        assert (503, "timeout") == (hanging.status_code, hanging.json()["checks"]["hang"]["status"])
        assert elapsed < 0.3 + LOADED_SLACK

    @staticmethod
    def _hang_check(port: int):
        async def read_forever() -> bool:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                await reader.read(1)
            finally:
                writer.close()
            return True

        return read_forever


class TestServe:
    def test_standalone_server(self):
        """The side-port server answers the three tiers, HEAD and 405, and ignores query strings."""
        readiness = _ops_readiness()
        with serve(readiness, port=0) as server:
            base = server.url
            health = httpx.get(f"{base}/health?verbose=1")
            ready = httpx.get(f"{base}/ready")
            head = httpx.head(f"{base}/health")
            post = httpx.post(f"{base}/ready")
            metrics = httpx.get(f"{base}/metrics")
            missing = httpx.get(f"{base}/nope")

        assert (200, {"status": "ok"}) == (health.status_code, health.json())
        assert (200, "ok") == (ready.status_code, ready.json()["status"])
        assert (200, b"") == (head.status_code, head.content)
        assert (405, "GET, HEAD") == (post.status_code, post.headers["allow"])
        assert b"python_info" in metrics.content
        assert 404 == missing.status_code

    def test_prefix_and_close_releases_port(self):
        """A prefixed server is reachable under its prefix and close() frees the port."""
        server = serve(port=0, prefix="/ops")
        port = server.port
        assert server.url.endswith("/ops")
        assert 200 == httpx.get(f"{server.url}/health").status_code

        server.close()
        server.close()

        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))

    def test_hanging_dependency_503_within_budget(self, hanging_port):
        """With the default budget, a dependency that accepts and never answers gives 503 within
        the 1 s budget (plus the slack of a loaded machine), while /health keeps answering."""
        from obslog.checks import http_check

        readiness = Readiness()
        readiness.add("hang", http_check(f"http://127.0.0.1:{hanging_port}/", timeout=5))
        with serve(readiness, port=0) as server:
            start = time.monotonic()
            ready = httpx.get(f"{server.url}/ready", timeout=5)
            elapsed = time.monotonic() - start
            health = httpx.get(f"{server.url}/health")

        assert 503 == ready.status_code
        assert "timeout" == ready.json()["checks"]["hang"]["status"]
        assert elapsed < DEFAULT_BUDGET + LOADED_SLACK
        assert 200 == health.status_code

    def test_probe_storm_runs_checks_once(self):
        """Concurrent probes over HTTP share one evaluation and the answer is cached."""
        counter = _Counter(delay=0.1)
        readiness = Readiness(ttl=5)
        readiness.add("c", counter)
        with serve(readiness, port=0) as server:

            def probe(_: int) -> int:
                return httpx.get(f"{server.url}/ready").status_code

            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(8) as pool:
                statuses = list(pool.map(probe, range(32)))

        assert [200] * 32 == statuses
        assert 1 == counter.calls

    def test_port_in_use_raises(self):
        """Binding a port that is taken raises OSError."""
        with serve(port=0) as first, pytest.raises(OSError):
            serve(port=first.port)


class TestDemo:
    def test_demo_serves_tiers_and_logs_runtime(self):
        """`obslog demo --port P --hold` keeps serving /health, /ready and /metrics on
        127.0.0.1:P after its load loop, beside its own routes, and logs a runtime line."""
        port = free_port()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "obslog",
                "demo",
                "--requests",
                "20",
                "--port",
                str(port),
                "--hold",
                "--seed",
                "1",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        lines: list[dict] = []
        try:
            for raw in proc.stdout:
                lines.append(json.loads(raw))
                if lines[-1]["event"] == "demo holding":
                    break
            base = f"http://127.0.0.1:{port}"
            health = httpx.get(f"{base}/health")
            ready = httpx.get(f"{base}/ready")
            metrics = httpx.get(f"{base}/metrics")
            orders = httpx.get(f"{base}/orders")
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(15)
            proc.stdout.close()

        events = [line["event"] for line in lines]
        assert (200, {"status": "ok"}) == (health.status_code, health.json())
        assert (200, {"shop_listening", "not_shutting_down"}) == (
            ready.status_code,
            set(ready.json()["checks"]),
        )
        assert b'obslog_request_duration_seconds_count{method="GET",route="/orders"' in (
            metrics.content
        )
        # /orders times out now and then by design (the demo's simulated database timeout), and
        # the load loop's threads draw from one random stream: either answer is the shop's own.
        assert orders.status_code in (200, 500)
        if orders.status_code == 500:
            assert {"error": "internal"} == orders.json()
        assert "runtime" in events
        assert 20 == events.count("request")
