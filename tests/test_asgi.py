"""obslog.asgi: Starlette and FastAPI served by a real uvicorn over loopback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid

from pathlib import Path

import httpx
import pytest

from _servers import UvicornThread
from fastapi import APIRouter, FastAPI
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Mount, Route

import obslog

from obslog import metrics
from obslog._http import UNMATCHED_ROUTE
from obslog.asgi import ObslogMiddleware


log = logging.getLogger("shop")


def make_fastapi() -> FastAPI:
    app = FastAPI()

    @app.get("/orders/{order_id}")
    async def get_order(order_id: int):
        with obslog.timed("db_query"):
            await asyncio.sleep(0.001)
        log.info("order read")
        return {"id": order_id}

    @app.get("/sync")
    def sync_endpoint():
        log.info("in threadpool")
        return {"ok": True}

    return app


def make_starlette(events: dict) -> Starlette:
    async def boom(request: Request):
        raise RuntimeError("kaboom 42")

    async def on_error(request: Request, exc: Exception):
        log.error("500 handler ran")
        return PlainTextResponse("sorry", status_code=500)

    async def stream(request: Request):
        async def body():
            for i in range(3):
                await asyncio.sleep(0.1)
                yield b"chunk%d\n" % i
            log.info("last chunk produced")

        return StreamingResponse(body())

    async def forever(request: Request):
        async def body():
            try:
                while True:
                    yield b"x" * 1024
                    await asyncio.sleep(0.01)
            finally:
                events["forever_closed"] = True

        return StreamingResponse(body())

    async def with_background(request: Request):
        async def work():
            with obslog.timed("send_mail"):
                await asyncio.sleep(0.3)
            log.info("background task ran")

        return PlainTextResponse("queued", background=BackgroundTask(work))

    async def fire_and_forget(request: Request):
        async def later():
            await asyncio.sleep(0.2)
            log.info("detached task ran")

        events["task"] = asyncio.get_running_loop().create_task(later())
        return PlainTextResponse("started")

    async def wait_disconnect(request: Request):
        while not await request.is_disconnected():
            await asyncio.sleep(0.01)
        return PlainTextResponse("never delivered")

    async def cancelled(request: Request):
        asyncio.current_task().cancel()
        await asyncio.sleep(1)

    async def sub(request: Request):
        return PlainTextResponse("sub")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        events["lifespan_started"] = True
        yield

    return Starlette(
        routes=[
            Route("/boom", boom),
            Route("/stream", stream),
            Route("/forever", forever),
            Route("/background", with_background),
            Route("/detached", fire_and_forget),
            Route("/wait-disconnect", wait_disconnect),
            Route("/cancelled", cancelled),
            Mount("/api", routes=[Route("/items/{item_id:int}", sub)]),
        ],
        exception_handlers={Exception: on_error},
        lifespan=lifespan,
    )


class TestFastAPI:
    """FastAPI served by uvicorn, wrapped by ObslogMiddleware."""

    def test_one_canonical_line_with_route_template(self, lines):
        """A request gives one `request` line: route template, status, timings, echoed id."""
        with UvicornThread(ObslogMiddleware(make_fastapi())) as base:
            response = httpx.get(f"{base}/orders/42")
        records = lines.wait_for(lambda ls: ls.canonical())
        (line,) = records.canonical()
        assert 200 == response.status_code
        assert line["request_id"] == response.headers["X-Request-ID"]
        assert 32 == len(line["request_id"])
        assert ("GET", "/orders/{order_id}", 200, "ok") == (
            line["method"],
            line["route"],
            line["status"],
            line["outcome"],
        )
        assert 1 == line["timings"]["db_query"]["count"]
        assert 1 == line["sample_rate"]
        assert isinstance(line["duration_ms"], float)
        (app_line,) = [r for r in records if r["event"] == "order read"]
        assert line["request_id"] == app_line["request_id"]

    def test_valid_incoming_id_is_kept_and_echoed(self, lines):
        """A valid X-Request-ID is used for the scope and echoed unchanged."""
        incoming = str(uuid.uuid4())
        with UvicornThread(ObslogMiddleware(make_fastapi())) as base:
            response = httpx.get(f"{base}/orders/1", headers={"X-Request-ID": incoming})
        (line,) = lines.wait_for(lambda ls: ls.canonical()).canonical()
        assert incoming == response.headers["x-request-id"]
        assert incoming == line["request_id"]

    def test_configurable_header(self, lines):
        """request_id_header picks another header, read and echoed."""
        app = ObslogMiddleware(make_fastapi(), request_id_header="X-Correlation-ID")
        with UvicornThread(app) as base:
            response = httpx.get(f"{base}/orders/1", headers={"X-Correlation-ID": "abc-123"})
        (line,) = lines.wait_for(lambda ls: ls.canonical()).canonical()
        assert "abc-123" == response.headers["x-correlation-id"]
        assert "abc-123" == line["request_id"]
        assert "x-request-id" not in response.headers

    def test_sync_endpoint_runs_in_scope(self, lines):
        """A sync endpoint runs in Starlette's threadpool, which copies the request's context."""
        with UvicornThread(ObslogMiddleware(make_fastapi())) as base:
            response = httpx.get(f"{base}/sync")
        records = lines.wait_for(lambda ls: ls.canonical())
        (thread_line,) = [r for r in records if r["event"] == "in threadpool"]
        assert response.headers["x-request-id"] == thread_line["request_id"]

    def test_unmatched_paths_share_one_route(self, lines):
        """Many distinct unknown paths all log the same bounded route value."""
        with UvicornThread(ObslogMiddleware(make_fastapi())) as base, httpx.Client() as client:
            statuses = {
                client.get(f"{base}/scan/{uuid.uuid4().hex}").status_code for _ in range(50)
            }
        records = lines.wait_for(lambda ls: len(ls.canonical()) == 50)
        assert {404} == statuses
        assert {UNMATCHED_ROUTE} == {line["route"] for line in records.canonical()}
        assert 50 == len({line["request_id"] for line in records.canonical()})

    def test_traceparent_gives_trace_ids(self, lines):
        """A valid traceparent header sets trace_id/span_id on the canonical line."""
        trace, span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
        with UvicornThread(ObslogMiddleware(make_fastapi())) as base:
            httpx.get(f"{base}/orders/1", headers={"traceparent": f"00-{trace}-{span}-01"})
        (line,) = lines.wait_for(lambda ls: ls.canonical()).canonical()
        assert (trace, span) == (line["trace_id"], line["span_id"])


class TestAddMiddleware:
    """ObslogMiddleware added with app.add_middleware (inside Starlette's error middleware)."""

    def test_exception_still_gives_one_500_line(self, lines):
        """The exception passes through the scope before Starlette answers 500: one line with
        status 500 and the exception; the response is the app's own 500."""
        app = make_fastapi()

        @app.get("/boom")
        async def boom():
            raise KeyError("missing")

        app.add_middleware(ObslogMiddleware)
        with UvicornThread(app) as base:
            response = httpx.get(f"{base}/boom")
        (line,) = lines.wait_for(lambda ls: ls.canonical()).canonical()
        assert 500 == response.status_code
        assert (500, "error", "KeyError", "/boom") == (
            line["status"],
            line["outcome"],
            line["exc_type"],
            line["route"],
        )


class TestStarlette:
    """Starlette served by uvicorn: errors, streaming, disconnects, background work."""

    def test_exception_gives_500_line_with_exc_fields(self, lines):
        """An exception ends with status 500, outcome error and the structured exception."""
        events: dict = {}
        with UvicornThread(ObslogMiddleware(make_starlette(events))) as base:
            response = httpx.get(f"{base}/boom")
        records = lines.wait_for(lambda ls: ls.canonical())
        (line,) = records.canonical()
        assert 500 == response.status_code
        assert (500, "error", "error") == (line["status"], line["outcome"], line["level"])
        assert ("RuntimeError", "kaboom 42") == (line["exc_type"], line["exc_message"])
        assert "kaboom 42" in line["stack"]
        assert "/boom" == line["route"]

    def test_framework_500_handler_lines_carry_ids(self, lines):
        """The app's 500 handler runs inside the scope; the server logs no id-less duplicate."""
        events: dict = {}
        with UvicornThread(ObslogMiddleware(make_starlette(events))) as base:
            response = httpx.get(f"{base}/boom")
        records = lines.wait_for(lambda ls: ls.canonical())
        (handler_line,) = [r for r in records if r["event"] == "500 handler ran"]
        assert response.headers["x-request-id"] == handler_line["request_id"]
        assert [] == [r for r in records if r["logger"] == "uvicorn.error" and "exc_type" in r]

    def test_reraise_hands_the_exception_to_the_server(self, lines):
        """With reraise=True the server also sees the exception (and logs it itself)."""
        events: dict = {}
        app = ObslogMiddleware(make_starlette(events), reraise=True)
        with UvicornThread(app) as base:
            httpx.get(f"{base}/boom")
        records = lines.wait_for(
            lambda ls: any("exc_type" in r for r in ls if r["logger"] == "uvicorn.error")
        )
        assert 1 == len(records.canonical())
        assert any(
            r.get("exc_type") == "RuntimeError" for r in records if r["logger"] == "uvicorn.error"
        )

    def test_streaming_is_timed_to_the_last_byte(self, lines):
        """A streamed body is timed to its last chunk; lines written while streaming carry ids."""
        events: dict = {}
        with UvicornThread(ObslogMiddleware(make_starlette(events))) as base:
            response = httpx.get(f"{base}/stream")
        records = lines.wait_for(lambda ls: ls.canonical())
        (line,) = records.canonical()
        (last_chunk,) = [r for r in records if r["event"] == "last chunk produced"]
        assert b"chunk0\nchunk1\nchunk2\n" == response.content
        assert line["duration_ms"] >= 300.0  # three chunks, 100 ms apart
        assert line["request_id"] == last_chunk["request_id"]
        assert records.index(last_chunk) < records.index(line)

    def test_disconnect_mid_stream_is_cancelled(self, lines):
        """A client leaving an endless stream ends the request with outcome cancelled."""
        events: dict = {}
        with UvicornThread(ObslogMiddleware(make_starlette(events))) as base:
            with httpx.stream("GET", f"{base}/forever") as response:
                next(response.iter_bytes())
            records = lines.wait_for(lambda ls: ls.canonical())
        (line,) = records.canonical()
        assert (200, "cancelled", "warning") == (line["status"], line["outcome"], line["level"])
        assert events.get("forever_closed") is True

    def test_disconnect_before_response_is_cancelled_499(self, lines):
        """A handler that notices the client left logs cancelled with status 499."""
        events: dict = {}
        with UvicornThread(ObslogMiddleware(make_starlette(events))) as base:
            port = int(base.rsplit(":", 1)[1])
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(b"GET /wait-disconnect HTTP/1.1\r\nHost: x\r\n\r\n")
                time.sleep(0.2)
            records = lines.wait_for(lambda ls: ls.canonical())
        (line,) = records.canonical()
        assert (499, "cancelled", "/wait-disconnect") == (
            line["status"],
            line["outcome"],
            line["route"],
        )

    def test_cancelled_handler_is_cancelled(self, lines):
        """A request task cancelled inside the app ends with outcome cancelled."""
        events: dict = {}
        with UvicornThread(ObslogMiddleware(make_starlette(events))) as base:
            httpx.get(f"{base}/cancelled")
            records = lines.wait_for(lambda ls: ls.canonical())
        (line,) = records.canonical()
        assert ("cancelled", 499) == (line["outcome"], line["status"])

    def test_mount_prefix_is_part_of_the_route(self, lines):
        """A route inside a Mount logs the mount prefix plus the inner template."""
        events: dict = {}
        with UvicornThread(ObslogMiddleware(make_starlette(events))) as base:
            httpx.get(f"{base}/api/items/7")
        (line,) = lines.wait_for(lambda ls: ls.canonical()).canonical()
        assert "/api/items/{item_id}" == line["route"]

    def test_background_tasks_run_inside_the_scope(self, lines):
        """Starlette BackgroundTasks carry the request id and their timers reach the line."""
        events: dict = {}
        with UvicornThread(ObslogMiddleware(make_starlette(events))) as base:
            response = httpx.get(f"{base}/background")
            records = lines.wait_for(lambda ls: ls.canonical())
        (line,) = records.canonical()
        (bg,) = [r for r in records if r["event"] == "background task ran"]
        assert response.headers["x-request-id"] == bg["request_id"] == line["request_id"]
        assert 1 == line["timings"]["send_mail"]["count"]
        assert records.index(bg) < records.index(line)

    def test_background_time_is_reported_apart_from_duration(self, lines):
        """duration_ms ends at the last byte; the 300 ms background task is background_ms."""
        events: dict = {}
        with UvicornThread(ObslogMiddleware(make_starlette(events))) as base:
            httpx.get(f"{base}/background")
            records = lines.wait_for(lambda ls: ls.canonical())
        (line,) = records.canonical()
        assert line["background_ms"] >= 300.0
        assert line["timings"]["send_mail"]["ms"] >= 300.0
        assert line["duration_ms"] < line["background_ms"]

    def test_no_background_ms_without_background_work(self, lines):
        """A response with nothing after its last byte has no background_ms field."""
        events: dict = {}
        with UvicornThread(ObslogMiddleware(make_starlette(events))) as base:
            httpx.get(f"{base}/api/items/7")
        (line,) = lines.wait_for(lambda ls: ls.canonical()).canonical()
        assert "background_ms" not in line

    def test_detached_task_keeps_the_request_id(self, lines):
        """asyncio.create_task copies the context: a task outliving the request logs its id."""
        events: dict = {}
        with UvicornThread(ObslogMiddleware(make_starlette(events))) as base:
            response = httpx.get(f"{base}/detached")
            records = lines.wait_for(lambda ls: any(r["event"] == "detached task ran" for r in ls))
        (line,) = records.canonical()
        (late,) = [r for r in records if r["event"] == "detached task ran"]
        assert response.headers["x-request-id"] == late["request_id"] == line["request_id"]
        assert records.index(line) < records.index(late)

    def test_lifespan_passes_through(self, lines):
        """Lifespan events reach the app (startup ran) and produce no request line."""
        events: dict = {}
        with UvicornThread(ObslogMiddleware(make_starlette(events)), lifespan="on"):
            pass
        assert events.get("lifespan_started") is True
        assert [] == lines.snapshot().canonical()


class TestPassThrough:
    """Non-HTTP connections are handed to the app untouched."""

    async def test_websocket_scope_receive_send_are_untouched(self, lines):
        """A websocket connection reaches the app with the very same scope, receive and send."""
        seen = {}

        async def app(scope, receive, send):
            seen.update(scope=scope, receive=receive, send=send)

        async def receive():
            return {"type": "websocket.connect"}

        async def send(message):
            return None

        scope = {"type": "websocket", "path": "/ws", "headers": []}
        await ObslogMiddleware(app)(scope, receive, send)
        assert (scope, receive, send) == (seen["scope"], seen["receive"], seen["send"])
        assert seen["scope"] is scope
        assert [] == lines.snapshot().canonical()

    def test_invalid_header_name_is_rejected(self):
        """A header name with spaces or separators raises ValueError at construction."""
        with pytest.raises(ValueError, match="invalid header name"):
            ObslogMiddleware(make_fastapi(), request_id_header="X Request ID")


class TestAccessLogs:
    """One line per request: uvicorn's own access log is off or muted."""

    def test_access_log_false_writes_no_access_line(self, lines):
        """uvicorn with access_log=False writes only the canonical line."""
        with UvicornThread(ObslogMiddleware(make_fastapi()), access_log=False) as base:
            httpx.get(f"{base}/orders/1")
        records = lines.wait_for(lambda ls: ls.canonical())
        assert [] == [r for r in records if r["logger"] == "uvicorn.access"]

    def test_default_access_log_doubles_lines(self, lines):
        """Control: uvicorn's default access log adds a second line per request."""
        with UvicornThread(ObslogMiddleware(make_fastapi()), access_log=True) as base:
            httpx.get(f"{base}/orders/1")
        records = lines.wait_for(lambda ls: any(r["logger"] == "uvicorn.access" for r in ls))
        assert 1 == len([r for r in records if r["logger"] == "uvicorn.access"])

    def test_silence_access_logs_mutes_uvicorn(self, lines):
        """silence_access_logs() mutes uvicorn.access even when the server writes it."""
        obslog.asgi.silence_access_logs()
        with UvicornThread(ObslogMiddleware(make_fastapi()), access_log=True) as base:
            httpx.get(f"{base}/orders/1")
        records = lines.wait_for(lambda ls: ls.canonical())
        assert 1 == len(records.canonical())
        assert [] == [r for r in records if r["logger"] == "uvicorn.access"]

    def test_json_response_passes_through(self, lines):
        """Body and app headers pass unchanged; the echoed id replaces an app-set one."""

        async def endpoint(request: Request):
            return JSONResponse({"a": 1}, headers={"X-App": "1", "X-Request-ID": "from-app"})

        app = Starlette(routes=[Route("/j", endpoint)])
        with UvicornThread(ObslogMiddleware(app)) as base:
            response = httpx.get(f"{base}/j")
        (line,) = lines.wait_for(lambda ls: ls.canonical()).canonical()
        assert ({"a": 1}, "1") == (response.json(), response.headers["x-app"])
        assert [line["request_id"]] == response.headers.get_list("x-request-id")


def make_tenants() -> Starlette:
    async def items(request: Request):
        log.info("listing items")
        return PlainTextResponse("items")

    async def deep(request: Request):
        log.info("deep")
        return PlainTextResponse("deep")

    async def health(request: Request):
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            Mount(
                "/tenants/{tenant}",
                routes=[
                    Route("/items", items),
                    Mount("/projects/{project}", routes=[Route("/tasks/{task_id:int}", deep)]),
                ],
            ),
            Route("/health", health),
        ]
    )


class TestRouteOnHandlerLines:
    """The route is bound as soon as routing matched: the handler's own lines carry it."""

    def test_fastapi_handler_lines_carry_route_and_method(self, lines):
        """Lines of an async and of a threadpool endpoint carry the route template and method."""
        with UvicornThread(ObslogMiddleware(make_fastapi())) as base:
            httpx.get(f"{base}/orders/42")
            httpx.get(f"{base}/sync")
            records = lines.wait_for(lambda ls: len(ls.canonical()) == 2)
        (in_async,) = [r for r in records if r["event"] == "order read"]
        (in_thread,) = [r for r in records if r["event"] == "in threadpool"]
        assert ("GET", "/orders/{order_id}") == (in_async["method"], in_async["route"])
        assert ("GET", "/sync") == (in_thread["method"], in_thread["route"])

    def test_fastapi_included_router_prefix_is_in_the_route(self, lines):
        """Routes of a router included with a templated prefix log the whole template (a plain
        Starlette route in it on the canonical line)."""
        router = APIRouter()

        @router.get("/items/{item_id}")
        async def item(item_id: int):
            log.info("item read")
            return {"id": item_id}

        async def plain(request: Request):
            return PlainTextResponse("plain")

        router.add_route("/plain/{p}", plain)
        app = FastAPI()
        app.include_router(router, prefix="/v1/{tenant}")
        with UvicornThread(ObslogMiddleware(app)) as base:
            assert 200 == httpx.get(f"{base}/v1/acme/items/3").status_code
            assert 200 == httpx.get(f"{base}/v1/acme/plain/4").status_code
            records = lines.wait_for(lambda ls: len(ls.canonical()) == 2)
        (inside,) = [r for r in records if r["event"] == "item read"]
        assert "/v1/{tenant}/items/{item_id}" == inside["route"]
        assert ["/v1/{tenant}/items/{item_id}", "/v1/{tenant}/plain/{p}"] == [
            line["route"] for line in records.canonical()
        ]

    def test_fastapi_own_routes_resolve_to_their_paths(self, lines):
        """/docs, /openapi.json, /redoc and /docs/oauth2-redirect log their paths, not unmatched."""
        paths = ["/docs", "/openapi.json", "/redoc", "/docs/oauth2-redirect"]
        with UvicornThread(ObslogMiddleware(make_fastapi())) as base, httpx.Client() as client:
            statuses = [client.get(f"{base}{path}").status_code for path in paths]
            records = lines.wait_for(lambda ls: len(ls.canonical()) == 4)
        assert [200, 200, 200, 200] == statuses
        assert paths == [line["route"] for line in records.canonical()]

    def test_nested_mount_route_on_handler_lines(self, lines):
        """A Starlette endpoint inside nested mounts logs the full template on its own line."""
        with UvicornThread(ObslogMiddleware(make_tenants())) as base:
            assert 200 == httpx.get(f"{base}/tenants/t1/projects/p9/tasks/5").status_code
            records = lines.wait_for(lambda ls: ls.canonical())
        (line,) = records.canonical()
        (inside,) = [r for r in records if r["event"] == "deep"]
        template = "/tenants/{tenant}/projects/{project}/tasks/{task_id}"
        assert template == line["route"] == inside["route"]

    def test_fastapi_mounted_starlette_app_logs_templates(self, lines):
        """A Starlette app mounted in FastAPI under a templated path logs the joined template."""
        app = FastAPI()
        app.mount("/shops/{shop}", make_tenants())
        with UvicornThread(ObslogMiddleware(app)) as base:
            assert 200 == httpx.get(f"{base}/shops/s1/tenants/t2/items").status_code
            records = lines.wait_for(lambda ls: ls.canonical())
        (line,) = records.canonical()
        (inside,) = [r for r in records if r["event"] == "listing items"]
        assert "/shops/{shop}/tenants/{tenant}/items" == line["route"] == inside["route"]


class TestBrokenRoute:
    """A route object that raises when read never breaks the request."""

    def test_route_that_raises_is_counted_and_unmatched(self, lines):
        """An app putting a route whose path_format raises: 200 answered, route <unmatched>,
        stats()["route_errors"] counts it."""

        class BrokenRoute:
            @property
            def path_format(self):
                raise RuntimeError("broken route")

        async def app(scope, receive, send):
            scope["endpoint"] = app
            scope["route"] = BrokenRoute()
            log.info("inside")
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

        before = obslog.stats().get("route_errors", 0)
        with UvicornThread(ObslogMiddleware(app)) as base:
            response = httpx.get(f"{base}/x")
            records = lines.wait_for(lambda ls: ls.canonical())
        (line,) = records.canonical()
        assert (200, 200, UNMATCHED_ROUTE) == (response.status_code, line["status"], line["route"])
        assert 2 == obslog.stats()["route_errors"] - before


class TestMountTemplates:
    """Mount path parameters never become route values (issue: 300 tenants filled /metrics)."""

    def test_300_tenants_are_one_route_on_lines_and_metrics(self, lines):
        """300 tenants give one route template on lines and one metrics label; a later route
        still gets its own label, not <other>."""
        installation = metrics.install(CollectorRegistry())
        try:
            with UvicornThread(ObslogMiddleware(make_tenants())) as base, httpx.Client() as client:
                urls = [f"{base}/tenants/t{n}/items" for n in range(300)]
                statuses = {client.get(url).status_code for url in urls}
                client.get(f"{base}/health")
                records = lines.wait_for(lambda ls: len(ls.canonical()) == 301)
            body, _ = metrics.render_metrics()
            routes = installation.route_count
        finally:
            metrics.uninstall()
        assert {200} == statuses
        assert {"/tenants/{tenant}/items", "/health"} == {r["route"] for r in records.canonical()}
        assert 2 == routes
        text = body.decode()
        assert 'route="/tenants/{tenant}/items"' in text
        assert 'route="/health"' in text
        assert "<other>" not in text


class TestExtras:
    """The README serves with `uvicorn main:application`: the extras bring a server."""

    def test_fastapi_and_asgi_extras_include_uvicorn(self):
        """pip install 'obslog[fastapi]' (or [asgi]) installs uvicorn as well."""
        tomllib = pytest.importorskip("tomllib")
        pyproject = Path(__file__).parent.parent / "pyproject.toml"
        extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
        servers = {
            name: [req for req in extras[name] if req.startswith("uvicorn")]
            for name in ("fastapi", "asgi")
        }
        assert {"fastapi": ["uvicorn>=0.29"], "asgi": ["uvicorn>=0.29"]} == servers
