"""obslog.aiohttp: aiohttp's own server (AppRunner/TCPSite) and client over loopback."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import time
import uuid

import aiohttp
import psutil
import pytest

from _servers import serve_aiohttp
from aiohttp import web

import obslog
import obslog.aiohttp

from obslog._http import UNMATCHED_ROUTE


log = logging.getLogger("shop")


def make_app(events: dict) -> web.Application:
    routes = web.RouteTableDef()

    @routes.get("/orders/{order_id}")
    async def get_order(request):
        with obslog.timed("db_query"):
            await asyncio.sleep(0.001)
        log.info("order read")
        return web.json_response({"id": request.match_info["order_id"]})

    @routes.get("/boom")
    async def boom(request):
        raise RuntimeError("kaboom 3")

    @routes.get("/missing")
    async def missing(request):
        raise web.HTTPNotFound(text="no such order")

    @routes.get("/stream")
    async def stream(request):
        response = web.StreamResponse()
        await response.prepare(request)
        for i in range(3):
            await asyncio.sleep(0.1)
            await response.write(b"chunk%d\n" % i)
        await response.write_eof()
        return response

    @routes.get("/slow")
    async def slow(request):
        # Start the response so the client knows the handler runs, then stall.
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"started\n")
        await asyncio.sleep(float(request.query.get("sleep", "5")))
        await response.write(b"done\n")
        return response

    @routes.get("/slow-plain")
    async def slow_plain(request):
        await asyncio.sleep(0.3)
        return web.Response(text="late")

    @routes.get("/detached")
    async def detached(request):
        async def later():
            await asyncio.sleep(0.1)
            log.info("detached task ran")

        events["task"] = asyncio.get_running_loop().create_task(later())
        return web.Response(text="started")

    @web.middleware
    async def error_page(request, handler):
        try:
            return await handler(request)
        except RuntimeError:
            log.error("error page middleware ran")
            raise

    app = web.Application(middlewares=[error_page])
    app.add_routes(routes)
    obslog.aiohttp.setup(app)
    return app


class TestMiddleware:
    """One canonical line per request, ids, routes and errors."""

    async def test_one_line_with_canonical_route(self, lines):
        """A request gives one line: canonical route, status, timings, echoed id."""
        async with (
            serve_aiohttp(make_app({})) as base,
            aiohttp.ClientSession() as session,
            session.get(f"{base}/orders/17") as response,
        ):
            await response.read()
            echoed = response.headers["X-Request-ID"]
        records = await lines.wait_for_async(lambda ls: ls.canonical())
        (line,) = records.canonical()
        assert echoed == line["request_id"]
        assert ("GET", "/orders/{order_id}", 200, "ok") == (
            line["method"],
            line["route"],
            line["status"],
            line["outcome"],
        )
        assert 1 == line["timings"]["db_query"]["count"]
        (app_line,) = [r for r in records if r["event"] == "order read"]
        assert echoed == app_line["request_id"]

    async def test_handler_lines_carry_route_and_method(self, lines):
        """Lines written in the handler and in an inner middleware carry the route and method."""
        sub = web.Application()

        async def sub_item(request):
            log.info("sub item read")
            return web.Response(text="sub")

        sub.router.add_get("/items/{item_id}", sub_item)
        app = make_app({})
        app.add_subapp("/sub", sub)
        async with serve_aiohttp(app) as base, aiohttp.ClientSession() as session:
            for path in ("/orders/17", "/boom", "/sub/items/4"):
                async with session.get(f"{base}{path}") as response:
                    await response.read()
            records = await lines.wait_for_async(lambda ls: len(ls.canonical()) == 3)
        (in_handler,) = [r for r in records if r["event"] == "order read"]
        (in_middleware,) = [r for r in records if r["event"] == "error page middleware ran"]
        (in_subapp,) = [r for r in records if r["event"] == "sub item read"]
        assert ("GET", "/orders/{order_id}") == (in_handler["method"], in_handler["route"])
        assert ("GET", "/boom") == (in_middleware["method"], in_middleware["route"])
        assert ("GET", "/sub/items/{item_id}") == (in_subapp["method"], in_subapp["route"])

    async def test_unmatched_and_http_exceptions(self, lines):
        """Unknown paths share the unmatched route; a raised HTTPNotFound is a normal 404."""
        async with serve_aiohttp(make_app({})) as base, aiohttp.ClientSession() as session:
            for i in range(20):
                async with session.get(f"{base}/nope/{i}") as response:
                    await response.read()
            async with session.get(f"{base}/missing") as response:
                body = await response.text()
                echoed = response.headers["X-Request-ID"]
        records = await lines.wait_for_async(lambda ls: len(ls.canonical()) == 21)
        lines_ = records.canonical()
        assert {(UNMATCHED_ROUTE, 404, "ok")} == {
            (r["route"], r["status"], r["outcome"]) for r in lines_[:20]
        }
        assert ("/missing", 404, "ok", echoed) == (
            lines_[20]["route"],
            lines_[20]["status"],
            lines_[20]["outcome"],
            lines_[20]["request_id"],
        )
        assert "no such order" == body
        assert "exc_type" not in lines_[20]

    async def test_exception_is_on_the_line_and_inner_lines_carry_ids(self, lines):
        """A handler exception: one 500 line with exc fields; the app's error middleware line
        carries the id; aiohttp logs no id-less 'Error handling request'."""
        async with (
            serve_aiohttp(make_app({})) as base,
            aiohttp.ClientSession() as session,
            session.get(f"{base}/boom") as response,
        ):
            status = response.status
            echoed = response.headers["X-Request-ID"]
        records = await lines.wait_for_async(lambda ls: ls.canonical())
        (line,) = records.canonical()
        assert 500 == status
        assert (500, "error", "RuntimeError", "kaboom 3") == (
            line["status"],
            line["outcome"],
            line["exc_type"],
            line["exc_message"],
        )
        (mw_line,) = [r for r in records if r["event"] == "error page middleware ran"]
        assert echoed == mw_line["request_id"] == line["request_id"]
        assert [] == [r for r in records if r["logger"] == "aiohttp.server"]

    async def test_streaming_timed_to_last_byte_and_echoed(self, lines):
        """A handler-streamed response is timed to write_eof and still echoes the id."""
        async with (
            serve_aiohttp(make_app({})) as base,
            aiohttp.ClientSession() as session,
            session.get(f"{base}/stream") as response,
        ):
            body = await response.read()
            echoed = response.headers["X-Request-ID"]
        (line,) = (await lines.wait_for_async(lambda ls: ls.canonical())).canonical()
        assert b"chunk0\nchunk1\nchunk2\n" == body
        assert echoed == line["request_id"]
        assert line["duration_ms"] >= 300.0  # three chunks, 100 ms apart

    async def test_disconnect_with_handler_cancellation(self, lines):
        """handler_cancellation=True: a client leaving mid-stream cancels the handler;
        the line says cancelled with the status already sent, the registry is empty."""
        async with serve_aiohttp(make_app({}), handler_cancellation=True) as base:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{base}/slow") as response,
            ):
                await response.content.readline()
                assert 1 == obslog.aiohttp.active_requests().count
            records = await lines.wait_for_async(lambda ls: ls.canonical())
        (line,) = records.canonical()
        assert (200, "cancelled", "/slow") == (line["status"], line["outcome"], line["route"])
        assert (0, 0.0) == tuple(obslog.aiohttp.active_requests())

    async def test_disconnect_without_handler_cancellation(self, lines):
        """Default server: a handler finishing after its client left is logged cancelled."""
        async with serve_aiohttp(make_app({})) as base:
            async with aiohttp.ClientSession() as session:
                with pytest.raises(asyncio.TimeoutError):
                    async with session.get(
                        f"{base}/slow-plain", timeout=aiohttp.ClientTimeout(total=0.05)
                    ) as response:
                        await response.read()
            records = await lines.wait_for_async(lambda ls: ls.canonical())
        (line,) = records.canonical()
        assert (200, "cancelled") == (line["status"], line["outcome"])

    async def test_detached_task_keeps_the_request_id(self, lines):
        """asyncio.create_task copies the context: a task outliving the request logs its id."""
        events: dict = {}
        async with (
            serve_aiohttp(make_app(events)) as base,
            aiohttp.ClientSession() as session,
            session.get(f"{base}/detached") as response,
        ):
            echoed = response.headers["X-Request-ID"]
            await events["task"]
        records = lines.snapshot()
        (line,) = records.canonical()
        (late,) = [r for r in records if r["event"] == "detached task ran"]
        assert echoed == late["request_id"] == line["request_id"]
        assert records.index(line) < records.index(late)

    async def test_access_log_none_gives_one_line(self, lines):
        """AppRunner(access_log=None) drops aiohttp.access; the default logger would double it."""
        async with serve_aiohttp(
            make_app({}), access_log=logging.getLogger("aiohttp.access")
        ) as base:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{base}/orders/1") as response,
            ):
                await response.read()
            with_access = await lines.wait_for_async(
                lambda ls: any(r["logger"] == "aiohttp.access" for r in ls)
            )
        assert 1 == len([r for r in with_access if r["logger"] == "aiohttp.access"])
        async with (
            serve_aiohttp(make_app({})) as base,
            aiohttp.ClientSession() as session,
            session.get(f"{base}/orders/2") as response,
        ):
            await response.read()
        records = await lines.wait_for_async(lambda ls: len(ls.canonical()) == 2)
        assert 2 == len(records.canonical())
        assert 1 == len([r for r in records if r["logger"] == "aiohttp.access"])


class TestWithoutAiohttp:
    """obslog.aiohttp names the missing extra when aiohttp is not installed."""

    def test_import_error_names_the_extra(self, monkeypatch):
        """middleware() raises ImportError with the pip command when aiohttp is absent."""
        monkeypatch.setattr(obslog.aiohttp, "web", None)
        with pytest.raises(ImportError, match=r"pip install 'obslog\[aiohttp\]'"):
            obslog.aiohttp.middleware()


class TestActiveRequests:
    """The registry of requests in flight."""

    async def test_counts_and_ages_in_flight_requests(self, lines):
        """Two stalled requests: count 2 and a positive oldest age; empty once they finish."""
        async with serve_aiohttp(make_app({})) as base, aiohttp.ClientSession() as session:
            first = await session.get(f"{base}/slow?sleep=0.3")
            second = await session.get(f"{base}/slow?sleep=0.3")
            active = obslog.aiohttp.active_requests()
            await first.read()
            await second.read()
        assert 2 == active.count
        assert active.oldest_age_s > 0.0
        assert (0, 0.0) == tuple(obslog.aiohttp.active_requests())


CLIENTS = 10_000
CONCURRENCY = 200
DISCONNECT_EVERY = 10  # 10 % of clients leave mid-request


class TestLoad:
    """Behaviour under load: 10,000 requests, 200 concurrent, 10 % disconnecting."""

    async def test_load_with_disconnects(self, tmp_path, capsys):
        """Afterwards the registry is empty, every request has exactly one canonical line with
        its own request_id (cancelled for the clients that left) and RSS growth is bounded."""
        # Lines go to a file, and pytest's own capture handlers (which keep every record in
        # memory for the report) are detached: either would dominate the RSS figure.
        sink = (tmp_path / "lines.jsonl").open("w", encoding="utf-8")
        obslog.configure(stream=sink, level="INFO")
        root = logging.getLogger()
        root.handlers[:] = [
            h for h in root.handlers if not type(h).__module__.startswith("_pytest")
        ]

        def lines() -> list[dict]:
            sink.flush()
            with (tmp_path / "lines.jsonl").open(encoding="utf-8") as f:
                return [json.loads(line) for line in f if line.strip()]

        app = make_app({})
        process = psutil.Process()
        async with serve_aiohttp(app, handler_cancellation=True) as base:
            connector = aiohttp.TCPConnector(limit=CONCURRENCY)
            async with aiohttp.ClientSession(connector=connector) as session:

                async def one(i: int, request_id: str) -> None:
                    headers = {"X-Request-ID": request_id}
                    if i % DISCONNECT_EVERY == 0:
                        response = await session.get(f"{base}/slow", headers=headers)
                        await response.content.readline()  # the handler is running
                        with contextlib.suppress(asyncio.TimeoutError):
                            await asyncio.wait_for(response.read(), 0.01)
                        response.close()  # leave mid-request
                    else:
                        async with session.get(f"{base}/orders/{i}", headers=headers) as response:
                            await response.read()

                async def run(ids: list[str]) -> None:
                    # CONCURRENCY clients, each taking the next request: no 10,000 idle tasks.
                    todo = iter(enumerate(ids))

                    async def client() -> None:
                        for i, rid in todo:
                            await one(i, rid)

                    await asyncio.gather(*(client() for _ in range(CONCURRENCY)))

                await run([uuid.uuid4().hex for _ in range(500)])  # warm-up
                gc.collect()
                rss_before = process.memory_info().rss
                ids = [uuid.uuid4().hex for _ in range(CLIENTS)]
                started = time.perf_counter()
                await run(ids)
                wall = time.perf_counter() - started
            deadline = time.monotonic() + 10
            while obslog.aiohttp.active_requests().count and time.monotonic() < deadline:
                await asyncio.sleep(0.05)  # cancelled handlers finish their finally blocks
            registry_after = obslog.aiohttp.active_requests()
            gc.collect()
            # Measured before parsing the captured lines (the test's own buffer and dicts).
            rss_after = process.memory_info().rss
        records = lines()
        obslog.reset_defaults()
        sink.close()
        requests = [r for r in records if r["event"] == "request" and r["logger"] == "obslog"]
        mine = [r for r in requests if r["request_id"] in set(ids)]
        per_id: dict[str, list[dict]] = {}
        for r in mine:
            per_id.setdefault(r["request_id"], []).append(r)
        cancelled = {rid for i, rid in enumerate(ids) if i % DISCONNECT_EVERY == 0}
        growth_mb = (rss_after - rss_before) / 2**20
        with capsys.disabled():
            print(
                f"\naiohttp load: {CLIENTS} requests, {CONCURRENCY} concurrent, "
                f"{len(cancelled)} disconnected mid-request, wall {wall:.1f} s, "
                f"RSS {rss_before / 2**20:.1f} -> {rss_after / 2**20:.1f} MB "
                f"(+{growth_mb:.1f} MB)"
            )
        assert (0, 0.0) == tuple(registry_after)
        assert set(ids) == set(per_id)
        assert {1} == {len(v) for v in per_id.values()}
        assert {"cancelled"} == {per_id[rid][0]["outcome"] for rid in cancelled}
        assert {"ok"} == {v[0]["outcome"] for rid, v in per_id.items() if rid not in cancelled}
        assert growth_mb < 100
