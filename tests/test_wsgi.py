"""obslog.wsgi and obslog.flask: Flask and plain WSGI apps on real WSGI servers over loopback."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import time

import httpx
import pytest

from _servers import WerkzeugThread, free_port
from flask import Flask, Response, stream_with_context

import obslog
import obslog.flask

from obslog._http import UNMATCHED_ROUTE
from obslog.wsgi import ObslogMiddleware


log = logging.getLogger("shop")


def _first_get(url: str, proc: subprocess.Popen, timeout: float = 20) -> httpx.Response:
    """GET *url* once the server process *proc* listens (it may take a while to start)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(url)
        except httpx.TransportError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise
            time.sleep(0.1)


def make_flask(events: dict) -> Flask:
    app = Flask("shop_app")

    @app.get("/orders/<int:order_id>")
    def get_order(order_id: int):
        with obslog.timed("db_query"):
            time.sleep(0.001)
        log.info("order read")
        return {"id": order_id}

    @app.get("/boom")
    def boom():
        raise RuntimeError("kaboom 7")

    @app.errorhandler(500)
    def on_500(error):
        log.error("500 handler ran")
        return "sorry", 500

    @app.get("/stream")
    def stream():
        def body():
            for i in range(3):
                time.sleep(0.1)
                yield b"chunk%d\n" % i
            log.info("last chunk produced")

        return Response(stream_with_context(body()))

    @app.get("/forever")
    def forever():
        def body():
            try:
                while True:
                    yield b"x" * 16384
                    time.sleep(0.005)
            finally:
                events["forever_closed"] = True

        return Response(body())

    obslog.flask.init_app(app)
    return app


class TestFlask:
    """Flask behind obslog.flask.init_app on werkzeug's server."""

    def test_one_canonical_line_with_url_rule(self, lines):
        """A request gives one `request` line with the url rule, status, timings and echoed id."""
        with WerkzeugThread(make_flask({})) as base:
            response = httpx.get(f"{base}/orders/5")
        records = lines.wait_for(lambda ls: ls.canonical())
        (line,) = records.canonical()
        assert line["request_id"] == response.headers["X-Request-ID"]
        assert ("GET", "/orders/<int:order_id>", 200, "ok") == (
            line["method"],
            line["route"],
            line["status"],
            line["outcome"],
        )
        assert 1 == line["timings"]["db_query"]["count"]
        (app_line,) = [r for r in records if r["event"] == "order read"]
        assert line["request_id"] == app_line["request_id"]

    def test_incoming_id_kept(self, lines):
        """A valid incoming X-Request-ID is used and echoed."""
        with WerkzeugThread(make_flask({})) as base:
            response = httpx.get(f"{base}/orders/5", headers={"X-Request-ID": "nginx-abc"})
        (line,) = lines.wait_for(lambda ls: ls.canonical()).canonical()
        assert "nginx-abc" == line["request_id"] == response.headers["x-request-id"]

    def test_unmatched_paths_share_one_route(self, lines):
        """404s on many distinct paths share the unmatched route value."""
        with WerkzeugThread(make_flask({})) as base, httpx.Client() as client:
            for i in range(30):
                client.get(f"{base}/nope/{i}")
        records = lines.wait_for(lambda ls: len(ls.canonical()) == 30)
        assert {(UNMATCHED_ROUTE, 404)} == {(r["route"], r["status"]) for r in records.canonical()}

    def test_exception_line_and_flask_error_lines_carry_ids(self, lines):
        """A view exception: 500 line with exc fields; Flask's own error lines carry the id."""
        with WerkzeugThread(make_flask({})) as base:
            response = httpx.get(f"{base}/boom")
        records = lines.wait_for(lambda ls: ls.canonical())
        (line,) = records.canonical()
        assert 500 == response.status_code
        assert (500, "error", "/boom") == (line["status"], line["outcome"], line["route"])
        assert ("RuntimeError", "kaboom 7") == (line["exc_type"], line["exc_message"])
        (flask_line,) = [r for r in records if r["event"].startswith("Exception on /boom")]
        (handler_line,) = [r for r in records if r["event"] == "500 handler ran"]
        request_id = response.headers["x-request-id"]
        assert request_id == flask_line["request_id"] == handler_line["request_id"]

    def test_streaming_is_timed_to_the_last_byte(self, lines):
        """The line is written when the body is done; lines written while streaming carry ids."""
        with WerkzeugThread(make_flask({})) as base:
            response = httpx.get(f"{base}/stream")
        records = lines.wait_for(lambda ls: ls.canonical())
        (line,) = records.canonical()
        (last,) = [r for r in records if r["event"] == "last chunk produced"]
        assert b"chunk0\nchunk1\nchunk2\n" == response.content
        assert line["duration_ms"] >= 300.0  # three chunks, 100 ms apart
        assert line["request_id"] == last["request_id"]
        assert records.index(last) < records.index(line)

    def test_disconnect_mid_stream_is_cancelled(self, lines):
        """A client leaving an endless stream: outcome cancelled, status as sent, one line."""
        events: dict = {}
        with WerkzeugThread(make_flask(events)) as base:
            with httpx.stream("GET", f"{base}/forever") as response:
                next(response.iter_bytes())
            records = lines.wait_for(lambda ls: ls.canonical())
        (line,) = records.canonical()
        assert (200, "cancelled", "/forever") == (line["status"], line["outcome"], line["route"])
        assert events.get("forever_closed") is True

    def test_werkzeug_access_log_muted(self, lines):
        """Control, then silence_access_logs(): werkzeug's access line disappears."""
        with WerkzeugThread(make_flask({})) as base:
            httpx.get(f"{base}/orders/1")
            before = lines.wait_for(lambda ls: any(r["logger"] == "werkzeug" for r in ls))
            obslog.flask.silence_access_logs()
            httpx.get(f"{base}/orders/2")
            after = lines.wait_for(lambda ls: len(ls.canonical()) == 2)
        assert 1 == len([r for r in before if r["logger"] == "werkzeug"])
        assert 1 == len([r for r in after if r["logger"] == "werkzeug"])
        assert 2 == len(after.canonical())


WERKZEUG_APP = textwrap.dedent(
    """
    import sys
    import flask
    import obslog, obslog.flask
    from werkzeug.serving import run_simple

    obslog.configure(stream=sys.stdout)
    app = flask.Flask("wapp")

    @app.get("/items/<int:item_id>")
    def item(item_id):
        return {"id": item_id}

    obslog.flask.init_app(app)
    obslog.flask.silence_access_logs()
    run_simple("127.0.0.1", int(sys.argv[1]), app)
    """
)


class TestSilenceKeepsStartup:
    """silence_access_logs() drops werkzeug's per-request lines only."""

    def test_running_on_line_stays_access_lines_go(self, tmp_path):
        """werkzeug's run_simple still logs "Running on http://..."; no access line is written."""
        (tmp_path / "wapp.py").write_text(WERKZEUG_APP)
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, str(tmp_path / "wapp.py"), str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            text=True,
        )
        try:
            response = _first_get(f"http://127.0.0.1:{port}/items/3", proc)
            httpx.get(f"http://127.0.0.1:{port}/nope")
        finally:
            proc.terminate()
            out, err = proc.communicate(timeout=20)
        records = [json.loads(line) for line in out.splitlines() if line]
        werkzeug = [r["event"] for r in records if r["logger"] == "werkzeug"]
        assert 200 == response.status_code
        assert 1 == len([e for e in werkzeug if f"Running on http://127.0.0.1:{port}" in e])
        assert [] == [e for e in werkzeug if "GET /" in e]
        # run_simple serves one request at a time: the first line is written before the second
        # request is read (the last one may be cut short by the SIGTERM).
        requests = [r for r in records if r["event"] == "request" and r["logger"] == "obslog"]
        assert "/items/<int:item_id>" == requests[0]["route"]
        assert "" == err

    def test_filter_drops_only_access_records(self, lines):
        """The filter passes werkzeug's startup and error records, drops its access records."""
        obslog.flask.silence_access_logs()
        obslog.flask.silence_access_logs()
        werkzeug = logging.getLogger("werkzeug")
        (access_filter,) = werkzeug.filters

        def record(msg, *args, level=logging.INFO):
            return logging.LogRecord("werkzeug", level, __file__, 1, msg, args, None)

        line = '127.0.0.1 - - [01/Dec/2026 02:00:00] "%s" %s %s'
        access = record(line, "GET / HTTP/1.1", "200", "-")
        startup = record(" * Running on http://127.0.0.1:5000")
        error = record("Error on request:", level=logging.ERROR)
        assert [False, True, True] == [access_filter.filter(r) for r in (access, startup, error)]


class TestWithoutFlask:
    """obslog.flask names the missing extra when Flask is not installed."""

    def test_import_error_names_the_extra(self, monkeypatch):
        """init_app raises ImportError with the pip command when flask cannot be imported."""
        monkeypatch.setitem(sys.modules, "flask", None)
        with pytest.raises(ImportError, match=r"pip install 'obslog\[flask\]'"):
            obslog.flask.init_app(object())


class TestPlainWSGI:
    """ObslogMiddleware around a bare WSGI callable."""

    def test_route_callable_and_echo(self, lines):
        """A route callable names the route; the id is echoed, replacing an app-set one."""

        def app(environ, start_response):
            start_response("201 Created", [("X-Request-ID", "from-app")])
            return [b"ok"]

        wrapped = ObslogMiddleware(app, route=lambda environ: "/things")
        with WerkzeugThread(wrapped) as base:
            response = httpx.get(f"{base}/things")
        (line,) = lines.wait_for(lambda ls: ls.canonical()).canonical()
        assert (201, "/things") == (line["status"], line["route"])
        assert [line["request_id"]] == response.headers.get_list("x-request-id")

    def test_route_callable_names_the_apps_own_lines(self, lines):
        """A route callable that knows the route from the environ: the app's lines carry it;
        one that answers only later (the app's router sets the key) is asked again at the end."""

        def app(environ, start_response):
            log.info("in plain app")
            environ["app.route"] = "/late"
            start_response("200 OK", [])
            return [b"ok"]

        early = ObslogMiddleware(app, route=lambda environ: "/things/{id}")
        late = ObslogMiddleware(app, route=lambda environ: environ.get("app.route"))
        with WerkzeugThread(early) as base:
            httpx.get(f"{base}/things/3")
            records = lines.wait_for(lambda ls: ls.canonical())
        with WerkzeugThread(late) as base:
            httpx.get(f"{base}/x")
            records = lines.wait_for(lambda ls: len(ls.canonical()) == 2)
        inside = [r.get("route") for r in records if r["event"] == "in plain app"]
        assert ["/things/{id}", None] == inside
        assert ["/things/{id}", "/late"] == [line["route"] for line in records.canonical()]

    def test_exception_before_start_response(self, lines):
        """An app that raises: status 500 and exc fields on the line; the server answers 500."""

        def app(environ, start_response):
            raise ValueError("bad thing")

        with WerkzeugThread(ObslogMiddleware(app)) as base:
            response = httpx.get(f"{base}/x")
        records = lines.wait_for(lambda ls: ls.canonical())
        (line,) = records.canonical()
        assert 500 == response.status_code
        assert (500, "error", "ValueError", UNMATCHED_ROUTE) == (
            line["status"],
            line["outcome"],
            line["exc_type"],
            line["route"],
        )

    def test_error_while_streaming(self, lines):
        """An exception raised by the body iterable is on the line (after the status sent)."""

        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])

            def body():
                yield b"part"
                raise OSError("disk gone")

            return body()

        with WerkzeugThread(ObslogMiddleware(app)) as base:
            with pytest.raises(httpx.HTTPError):
                httpx.get(f"{base}/x")
            records = lines.wait_for(lambda ls: ls.canonical())
        (line,) = records.canonical()
        assert ("error", "OSError", 200) == (line["outcome"], line["exc_type"], line["status"])


GUNICORN_APP = textwrap.dedent(
    """
    import sys
    import flask
    import obslog, obslog.flask

    obslog.configure(stream=sys.stdout)
    app = flask.Flask("gapp")

    @app.get("/items/<int:item_id>")
    def item(item_id):
        return {"id": item_id}

    obslog.flask.init_app(app)
    """
)


class TestGunicorn:
    """gunicorn without --access-logfile: one line per request."""

    def test_no_access_logfile_means_one_line(self, tmp_path):
        """gunicorn started without --access-logfile writes only the canonical line per request."""
        (tmp_path / "gapp.py").write_text(GUNICORN_APP)
        port = free_port()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--chdir",
                str(tmp_path),
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "1",
                "gapp:app",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        try:
            response = _first_get(f"http://127.0.0.1:{port}/items/3", proc)
            httpx.get(f"http://127.0.0.1:{port}/items/4")
        finally:
            proc.terminate()
            out, err = proc.communicate(timeout=20)
        records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        requests = [r for r in records if r["event"] == "request"]
        assert 200 == response.status_code
        assert [("/items/<int:item_id>", 200)] * 2 == [(r["route"], r["status"]) for r in requests]
        assert len(records) == len(requests)
        assert "GET /items" not in out + err
