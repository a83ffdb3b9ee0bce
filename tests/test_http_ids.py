"""Request ids and trace ids from untrusted headers: obslog._http and every server over the wire."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time

import pytest

from _servers import UvicornThread, WerkzeugThread
from aiohttp import web
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import TracerProvider
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import obslog
import obslog.aiohttp

from obslog._http import (
    ACCESS_LOGGERS,
    CLIENT_CLOSED_STATUS,
    check_header_name,
    resolve_ids,
    silence_access_logs,
    wsgi_environ_key,
)
from obslog._ids import current_otel_ids
from obslog.asgi import ObslogMiddleware as ASGIMiddleware
from obslog.testing import CapturedLines
from obslog.wsgi import ObslogMiddleware as WSGIMiddleware


TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
MARK = "EVILMARK"

BAD_REQUEST_IDS = {
    "oversized": (MARK + "a" * 200).encode(),
    "oversized_8k": (MARK + "b" * 8000).encode(),
    "non_ascii": (MARK + "-café-€").encode("utf-8"),
    "latin1": MARK.encode() + b"\xe9\xff",
    "inner_space": (MARK + " x").encode(),
    "tab": (MARK + "\tx").encode(),
    "empty": b"",
}

MALFORMED_TRACEPARENTS = [
    "00-xyz",
    f"00-{'0' * 32}-{SPAN}-01",  # all-zero trace id
    f"00-{TRACE}-{'0' * 16}-01",  # all-zero span id
    f"ff-{TRACE}-{SPAN}-01",  # forbidden version
    f"00-{TRACE.upper()}-{SPAN}-01",  # upper-case hex
    f"00-{TRACE}-{SPAN}-01-extra",  # version 00 with extra fields
    "x" * 600,
]


class TestResolveIds:
    """resolve_ids: the decision taken on every request."""

    def test_valid_id_kept(self):
        """A UUID, nginx's 32-hex id and a 128-character token are kept as given."""
        for value in ("0b5e7c1e-8f5d-4f4e-9a31-7d9c2f0a1b2c", "a" * 32, "t" * 128):
            ids = resolve_ids(value, None)
            assert (value, False) == (ids.request_id, ids.rejected)

    @pytest.mark.parametrize(
        "value",
        ["a" * 129, "abc\r\nX-Evil: 1", "abc\n", "café", b"\xff\xfe", "", " ", "a b", "\x00"],
    )
    def test_invalid_id_replaced(self, value):
        """Oversized, CRLF-laden, non-ASCII, empty and spaced values give a new 32-hex id."""
        ids = resolve_ids(value, None)
        assert True is ids.rejected
        assert 32 == len(ids.request_id)
        assert set(ids.request_id) <= set("0123456789abcdef")
        assert {"request_id_rejected": True} == {
            k: v for k, v in ids.scope_fields().items() if k == "request_id_rejected"
        }

    def test_absent_id_is_not_rejected(self):
        """No header: a new id, not flagged as rejected."""
        ids = resolve_ids(None, None)
        assert (False, 32) == (ids.rejected, len(ids.request_id))
        assert "request_id_rejected" not in ids.scope_fields()

    def test_traceparent(self):
        """A valid traceparent gives trace and span ids (bytes or str)."""
        assert (TRACE, SPAN) == (
            resolve_ids(None, f"00-{TRACE}-{SPAN}-01").trace_id,
            resolve_ids(None, f"00-{TRACE}-{SPAN}-01".encode()).span_id,
        )

    @pytest.mark.parametrize("value", MALFORMED_TRACEPARENTS)
    def test_malformed_traceparent_ignored(self, value):
        """A malformed traceparent is ignored: no trace ids."""
        ids = resolve_ids(None, value)
        assert (None, None) == (ids.trace_id, ids.span_id)

    def test_active_opentelemetry_span_wins(self):
        """With an OpenTelemetry SDK installed and a span active, its ids win over the header's."""
        if isinstance(otel_trace.get_tracer_provider(), otel_trace.ProxyTracerProvider):
            otel_trace.set_tracer_provider(TracerProvider())  # once per process, as in a service
        tracer = otel_trace.get_tracer("obslog-tests")
        with tracer.start_as_current_span("request") as span:
            deadline = time.monotonic() + 2  # obslog looks for a new SDK at most once a second
            while current_otel_ids() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            ids = resolve_ids(None, f"00-{TRACE}-{SPAN}-01")
            context = span.get_span_context()
        assert (format(context.trace_id, "032x"), format(context.span_id, "016x")) == (
            ids.trace_id,
            ids.span_id,
        )


class TestHelpers:
    """The small shared helpers."""

    def test_header_names(self):
        """Token header names pass; spaces, colons and empty names raise ValueError."""
        assert "X-Correlation-ID" == check_header_name("X-Correlation-ID")
        for bad in ("", "X Request", "X-Id:", "é", "a" * 65):
            with pytest.raises(ValueError, match="invalid header name"):
                check_header_name(bad)

    def test_environ_key(self):
        """Header names map to CGI environ keys."""
        assert "HTTP_X_REQUEST_ID" == wsgi_environ_key("X-Request-ID")

    def test_silence_access_logs(self):
        """Access loggers get levels above their access lines; werkzeug gets a filter, once."""
        saved = {name: logging.getLogger(name).level for name in ACCESS_LOGGERS}
        werkzeug = logging.getLogger("werkzeug")
        saved_filters = werkzeug.filters[:]
        try:
            silence_access_logs()
            silence_access_logs()
            assert not logging.getLogger("uvicorn.access").isEnabledFor(logging.CRITICAL)
            assert not logging.getLogger("django.server").isEnabledFor(logging.ERROR)
            assert 1 == len(werkzeug.filters) - len(saved_filters)
            access = logging.LogRecord(
                "werkzeug", logging.INFO, __file__, 1,
                '127.0.0.1 - - [01/Dec/2026 10:00:00] "%s" %s %s',
                ("GET / HTTP/1.1", "200", "-"), None,
            )
            startup = logging.LogRecord(
                "werkzeug", logging.INFO, __file__, 1, "Running on %s", ("http://x",), None
            )
            assert not werkzeug.filter(access)
            assert werkzeug.filter(startup)
        finally:
            for name, level in saved.items():
                logging.getLogger(name).setLevel(level)
            werkzeug.filters[:] = saved_filters

    def test_client_closed_status(self):
        """The status logged for a client gone before any response is nginx's 499."""
        assert 499 == CLIENT_CLOSED_STATUS


def raw_get(port: int, headers: list[tuple[bytes, bytes]]) -> tuple[int, dict[str, str]]:
    """Send a GET with raw header bytes over a socket; return status and response headers."""
    head = b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    head += b"".join(name + b": " + value + b"\r\n" for name, value in headers) + b"\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    header_block = rest.split(b"\r\n\r\n", 1)[0]
    parsed = {}
    for raw in header_block.split(b"\r\n"):
        name, _, value = raw.partition(b":")
        parsed[name.decode("latin-1").strip().lower()] = value.decode("latin-1").strip()
    return int(status_line.split()[1]), parsed


class _Uvicorn(UvicornThread):
    def __init__(self) -> None:
        async def ping(request):
            return PlainTextResponse("pong")

        super().__init__(ASGIMiddleware(Starlette(routes=[Route("/ping", ping)])), lifespan="off")

    def __enter__(self) -> int:
        super().__enter__()
        return self.port


class _Werkzeug(WerkzeugThread):
    def __init__(self) -> None:
        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"pong"]

        super().__init__(WSGIMiddleware(app, route=lambda environ: "/ping"))

    def __enter__(self) -> int:
        super().__enter__()
        return self.port


class _Aiohttp:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _start(self) -> int:
        async def ping(request):
            return web.Response(text="pong")

        app = web.Application()
        app.router.add_get("/ping", ping)
        obslog.aiohttp.setup(app)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        return self.runner.addresses[0][1]

    def __enter__(self) -> int:
        self.thread.start()
        return asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    def __exit__(self, *exc_info) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


SERVERS = {"uvicorn": _Uvicorn, "werkzeug": _Werkzeug, "aiohttp": _Aiohttp}


def wait_lines(lines: CapturedLines, count: int) -> CapturedLines:
    """Wait until *count* canonical lines are written."""
    return lines.wait_for(lambda ls: len(ls.find(event="request")) >= count)


@pytest.mark.parametrize("server", sorted(SERVERS))
class TestOverTheWire:
    """Bad headers sent as raw bytes to real servers."""

    def test_bad_request_ids_are_replaced_and_never_logged(self, lines, server):
        """Each bad X-Request-ID gives a fresh 32-hex id, echoed and logged, flagged rejected;
        the bad value appears nowhere in the output."""
        results = {}
        with SERVERS[server]() as port:
            for name, value in BAD_REQUEST_IDS.items():
                results[name] = raw_get(port, [(b"X-Request-ID", value)])
        records = wait_lines(lines, len(BAD_REQUEST_IDS))
        canon = [r for r in records if r["event"] == "request"]
        answered = {name: r for name, r in results.items() if r[0] == 200}
        assert MARK not in lines.text
        assert len(answered) == len(canon)
        for (_status, headers), line in zip(answered.values(), canon, strict=True):
            assert headers["x-request-id"] == line["request_id"]
            assert 32 == len(line["request_id"])
            assert True is line["request_id_rejected"]
        # Servers may refuse some of these themselves (431/400); every server takes these:
        assert {"inner_space", "tab", "empty", "non_ascii"} <= set(answered)

    def test_bare_cr_cannot_smuggle_into_the_id(self, lines, server):
        """A bare CR in the value is refused by the server, or the server ends the header
        there: the id never holds a CR or what follows it, and no header is injected."""
        with SERVERS[server]() as port:
            status, headers = raw_get(port, [(b"X-Request-ID", b"abc\rX-Evil: 1")])
        records = wait_lines(lines, 1) if status == 200 else lines.snapshot()
        canon = [r for r in records if r["event"] == "request"]
        assert "x-evil" not in headers
        assert [] == [r for r in canon if "\r" in r["request_id"] or "Evil" in r["request_id"]]
        if status == 200:
            assert headers["x-request-id"] == canon[0]["request_id"]

    def test_malformed_traceparent_ignored(self, lines, server):
        """Malformed traceparent headers leave no trace ids; a valid one is used."""
        with SERVERS[server]() as port:
            for value in MALFORMED_TRACEPARENTS:
                raw_get(port, [(b"traceparent", value.encode())])
            raw_get(port, [(b"traceparent", f"00-{TRACE}-{SPAN}-01".encode())])
        records = wait_lines(lines, len(MALFORMED_TRACEPARENTS) + 1)
        canon = [r for r in records if r["event"] == "request"]
        assert [False] * len(MALFORMED_TRACEPARENTS) == ["trace_id" in r for r in canon[:-1]]
        assert (TRACE, SPAN) == (canon[-1]["trace_id"], canon[-1]["span_id"])

    def test_valid_ids_pass(self, lines, server):
        """nginx-style hex and UUID ids are kept and echoed."""
        ids = ["0123456789abcdef0123456789abcdef", "0b5e7c1e-8f5d-4f4e-9a31-7d9c2f0a1b2c"]
        with SERVERS[server]() as port:
            echoed = [
                raw_get(port, [(b"X-Request-ID", i.encode())])[1]["x-request-id"] for i in ids
            ]
        canon = [r for r in wait_lines(lines, 2) if r["event"] == "request"]
        assert ids == echoed == [r["request_id"] for r in canon]
        assert [False, False] == ["request_id_rejected" in r for r in canon]
