"""obslog.django: Django on its own threaded WSGI server and on uvicorn (ASGI), over loopback."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import time
import types

import httpx
import pytest

from _django import configure_django
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import include, path


configure_django()

from _servers import UvicornThread, WSGIServerThread
from django.core.asgi import get_asgi_application
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
from django.core.wsgi import get_wsgi_application
from django.test.utils import override_settings

import obslog
import obslog.django

from obslog._http import UNMATCHED_ROUTE


log = logging.getLogger("shop")
EVENTS: dict = {}


def order(request, order_id):
    with obslog.timed("db_query"):
        time.sleep(0.001)
    log.info("order read")
    return JsonResponse({"id": order_id})


async def async_order(request, order_id):
    with obslog.timed("db_query"):
        await asyncio.sleep(0.001)
    log.info("async order read")
    return JsonResponse({"id": order_id})


def boom(request):
    raise RuntimeError("kaboom 9")


def stream(request):
    def body():
        for i in range(3):
            time.sleep(0.1)
            yield b"chunk%d\n" % i
        log.info("last chunk produced")

    return StreamingHttpResponse(body())


async def async_stream(request):
    async def body():
        for i in range(3):
            await asyncio.sleep(0.1)
            yield b"chunk%d\n" % i
        log.info("last async chunk produced")

    return StreamingHttpResponse(body())


def forever(request):
    def body():
        try:
            while True:
                yield b"x" * 16384
                time.sleep(0.005)
        finally:
            EVENTS["forever_closed"] = True

    return StreamingHttpResponse(body())


async def slow(request):
    await asyncio.sleep(10)
    return HttpResponse("late")


def item(request, name):
    return HttpResponse(name)


urls = types.ModuleType("obslog_test_django_urls")
urls.urlpatterns = [
    path("orders/<int:order_id>/", order),
    path("async/<int:order_id>/", async_order),
    path("boom/", boom),
    path("stream/", stream),
    path("astream/", async_stream),
    path("forever/", forever),
    path("slow/", slow),
    path("api/", include([path("items/<slug:name>/", item)])),
]
sys.modules[urls.__name__] = urls


@pytest.fixture(name="django_settings", autouse=True)
def _django_settings():
    """Route to this module's views through obslog's middleware."""
    with override_settings(
        ROOT_URLCONF=urls.__name__,
        MIDDLEWARE=["obslog.django.ObslogMiddleware"],
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        DEBUG=False,
    ):
        EVENTS.clear()
        yield


class DjangoWSGIThread(WSGIServerThread):
    """Django's own threaded WSGI server (the one runserver uses) on 127.0.0.1, port 0."""

    def __init__(self) -> None:
        server = ThreadedWSGIServer(("127.0.0.1", 0), WSGIRequestHandler)
        server.set_app(get_wsgi_application())
        super().__init__(server)


class DjangoASGIThread(UvicornThread):
    """Django's ASGI application on a real uvicorn, 127.0.0.1, port 0."""

    def __init__(self) -> None:
        super().__init__(get_asgi_application(), lifespan="off")


class TestDjangoWSGI:
    """Sync middleware path under Django's WSGI handler."""

    def test_one_line_with_resolver_route(self, lines):
        """A request gives one line with the resolver's route, status, timings and echoed id."""
        obslog.django.silence_access_logs()
        with DjangoWSGIThread() as base:
            response = httpx.get(f"{base}/orders/12/")
        records = lines.wait_for(lambda ls: ls.canonical())
        (line,) = records.canonical()
        assert line["request_id"] == response.headers["X-Request-ID"]
        assert ("GET", "/orders/<int:order_id>/", 200, "ok") == (
            line["method"],
            line["route"],
            line["status"],
            line["outcome"],
        )
        assert 1 == line["timings"]["db_query"]["count"]
        (app_line,) = [r for r in records if r["event"] == "order read"]
        assert line["request_id"] == app_line["request_id"]

    def test_view_lines_carry_route_and_method(self, lines):
        """The view's own line carries the resolver's route and the method (process_view)."""
        with DjangoWSGIThread() as base:
            httpx.get(f"{base}/orders/12/")
        records = lines.wait_for(lambda ls: ls.canonical())
        (app_line,) = [r for r in records if r["event"] == "order read"]
        assert ("GET", "/orders/<int:order_id>/") == (app_line["method"], app_line["route"])

    def test_included_route_and_unmatched(self, lines):
        """include() prefixes join into the route; unknown paths share the unmatched value."""
        obslog.django.silence_access_logs()
        with DjangoWSGIThread() as base, httpx.Client() as client:
            client.get(f"{base}/api/items/hat/")
            for i in range(20):
                client.get(f"{base}/missing/{i}/")
        records = lines.wait_for(lambda ls: len(ls.canonical()) == 21)
        routes = [(r["route"], r["status"]) for r in records.canonical()]
        assert ("/api/items/<slug:name>/", 200) == routes[0]
        assert {(UNMATCHED_ROUTE, 404)} == set(routes[1:])

    def test_view_exception_and_django_error_line(self, lines):
        """A view exception: 500 line with exc fields; Django's error line carries the id."""
        obslog.django.silence_access_logs()
        with DjangoWSGIThread() as base:
            response = httpx.get(f"{base}/boom/", headers={"X-Request-ID": "req-boom-1"})
        records = lines.wait_for(lambda ls: ls.canonical())
        (line,) = records.canonical()
        assert 500 == response.status_code
        assert (500, "error", "RuntimeError", "kaboom 9") == (
            line["status"],
            line["outcome"],
            line["exc_type"],
            line["exc_message"],
        )
        (django_line,) = [r for r in records if r["logger"] == "django.request"]
        assert "req-boom-1" == django_line["request_id"] == line["request_id"]

    def test_streaming_timed_to_last_chunk(self, lines):
        """A StreamingHttpResponse is timed to its last chunk, which logs with the id."""
        obslog.django.silence_access_logs()
        with DjangoWSGIThread() as base:
            response = httpx.get(f"{base}/stream/")
        records = lines.wait_for(lambda ls: ls.canonical())
        (line,) = records.canonical()
        (last,) = [r for r in records if r["event"] == "last chunk produced"]
        assert b"chunk0\nchunk1\nchunk2\n" == response.content
        assert line["duration_ms"] >= 300.0  # three chunks, 100 ms apart
        assert line["request_id"] == last["request_id"]

    def test_disconnect_mid_stream_is_cancelled(self, lines):
        """A client leaving an endless stream: one line, outcome cancelled, status 200."""
        obslog.django.silence_access_logs()
        with DjangoWSGIThread() as base:
            with httpx.stream("GET", f"{base}/forever/") as response:
                next(response.iter_bytes())
            records = lines.wait_for(lambda ls: ls.canonical())
        (line,) = records.canonical()
        assert (200, "cancelled", "/forever/") == (line["status"], line["outcome"], line["route"])
        assert EVENTS.get("forever_closed") is True

    def test_django_server_access_log(self, lines):
        """Django's dev-server access line (logger django.server) doubles lines until muted."""
        with DjangoWSGIThread() as base:
            httpx.get(f"{base}/orders/1/")
            before = lines.wait_for(lambda ls: any(r["logger"] == "django.server" for r in ls))
            obslog.django.silence_access_logs()
            httpx.get(f"{base}/orders/2/")
            after = lines.wait_for(lambda ls: len(ls.canonical()) == 2)
        assert 1 == len([r for r in before if r["logger"] == "django.server"])
        assert 1 == len([r for r in after if r["logger"] == "django.server"])


class TestSettings:
    """Settings and the missing-extra message."""

    def test_request_id_header_setting(self, lines):
        """OBSLOG_REQUEST_ID_HEADER picks the header that is read and echoed."""
        obslog.django.silence_access_logs()
        with (
            override_settings(OBSLOG_REQUEST_ID_HEADER="X-Correlation-ID"),
            DjangoWSGIThread() as base,
        ):
            response = httpx.get(f"{base}/orders/1/", headers={"X-Correlation-ID": "c-77"})
        (line,) = lines.wait_for(lambda ls: ls.canonical()).canonical()
        assert "c-77" == line["request_id"] == response.headers["x-correlation-id"]

    def test_import_error_names_the_extra(self, monkeypatch):
        """Without Django the middleware raises ImportError with the pip command."""
        monkeypatch.setattr(obslog.django, "_settings", None)
        with pytest.raises(ImportError, match=r"pip install 'obslog\[django\]'"):
            obslog.django.ObslogMiddleware(lambda request: None)


class TestDjangoASGI:
    """Async middleware path under Django's ASGI handler on uvicorn."""

    def test_async_view(self, lines):
        """An async view: one line with route and timings; its own line carries the id."""
        with DjangoASGIThread() as base:
            response = httpx.get(f"{base}/async/3/")
        records = lines.wait_for(lambda ls: ls.canonical())
        (line,) = records.canonical()
        assert ("/async/<int:order_id>/", 200, "ok") == (
            line["route"],
            line["status"],
            line["outcome"],
        )
        assert 1 == line["timings"]["db_query"]["count"]
        (app_line,) = [r for r in records if r["event"] == "async order read"]
        assert response.headers["x-request-id"] == app_line["request_id"] == line["request_id"]

    def test_async_view_lines_carry_the_route(self, lines):
        """Under ASGI an async view's own line carries the route too."""
        with DjangoASGIThread() as base:
            httpx.get(f"{base}/async/3/")
        records = lines.wait_for(lambda ls: ls.canonical())
        (app_line,) = [r for r in records if r["event"] == "async order read"]
        assert ("GET", "/async/<int:order_id>/") == (app_line["method"], app_line["route"])

    def test_sync_view_under_asgi(self, lines):
        """A sync view under ASGI runs in a worker thread that sees the request's scope."""
        with DjangoASGIThread() as base:
            response = httpx.get(f"{base}/orders/8/")
        records = lines.wait_for(lambda ls: ls.canonical())
        (app_line,) = [r for r in records if r["event"] == "order read"]
        assert response.headers["x-request-id"] == app_line["request_id"]

    def test_async_streaming(self, lines):
        """An async streaming body is timed to its last chunk."""
        with DjangoASGIThread() as base:
            response = httpx.get(f"{base}/astream/")
        records = lines.wait_for(lambda ls: ls.canonical())
        (line,) = records.canonical()
        (last,) = [r for r in records if r["event"] == "last async chunk produced"]
        assert b"chunk0\nchunk1\nchunk2\n" == response.content
        assert line["duration_ms"] >= 300.0
        assert (line["request_id"], "ok") == (last["request_id"], line["outcome"])

    def test_client_disconnect_cancels_async_view(self, lines):
        """Django cancels an async view whose client left: outcome cancelled, status 499."""
        with DjangoASGIThread() as base:
            port = int(base.rsplit(":", 1)[1])
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(b"GET /slow/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                time.sleep(0.3)
            records = lines.wait_for(lambda ls: ls.canonical())
        (line,) = records.canonical()
        assert (499, "cancelled", "/slow/") == (line["status"], line["outcome"], line["route"])

    def test_exception_under_asgi(self, lines):
        """A view exception under ASGI: 500 line with exc fields, Django's error line has the id."""
        with DjangoASGIThread() as base:
            response = httpx.get(f"{base}/boom/")
        records = lines.wait_for(lambda ls: ls.canonical())
        (line,) = records.canonical()
        (django_line,) = [r for r in records if r["logger"] == "django.request"]
        assert (500, "RuntimeError") == (line["status"], line["exc_type"])
        assert response.headers["x-request-id"] == django_line["request_id"]
