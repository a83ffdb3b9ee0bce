"""Work handed to threads inside a request keeps the request's context through obslog.in_context."""

from __future__ import annotations

import asyncio
import logging
import time

from concurrent.futures import ThreadPoolExecutor

import aiohttp
import httpx

from _servers import WerkzeugThread, serve_aiohttp
from aiohttp import web
from flask import Flask

import obslog
import obslog.aiohttp
import obslog.flask


log = logging.getLogger("shop")


def blocking_lookup(what: str) -> str:
    """Blocking work that logs and times itself."""
    with obslog.timed("db_query"):
        time.sleep(0.002)
    log.info("lookup done", extra={"what": what})
    return what


def by_what(records: list[dict], what: str) -> dict:
    """Return the one 'lookup done' line for *what*."""
    (line,) = [r for r in records if r["event"] == "lookup done" and r.get("what") == what]
    return line


class TestRunInExecutor:
    """loop.run_in_executor inside an aiohttp request."""

    async def test_in_context_carries_ids_and_timers(self, lines):
        """With in_context the worker's line has the request id and its timer reaches the line;
        without it the worker sees no scope; asyncio.to_thread copies the context by itself."""

        async def handler(request):
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, obslog.in_context(blocking_lookup, "wrapped"))
            await loop.run_in_executor(None, blocking_lookup, "bare")
            await asyncio.to_thread(blocking_lookup, "to_thread")
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_get("/work", handler)
        obslog.aiohttp.setup(app)
        async with (
            serve_aiohttp(app) as base,
            aiohttp.ClientSession() as session,
            session.get(f"{base}/work") as response,
        ):
            request_id = response.headers["X-Request-ID"]
        records = lines.snapshot()
        (line,) = records.canonical()
        assert request_id == by_what(records, "wrapped")["request_id"]
        assert request_id == by_what(records, "to_thread")["request_id"]
        assert "request_id" not in by_what(records, "bare")
        # wrapped + to_thread ran in the scope; the bare call's timer is lost.
        assert 2 == line["timings"]["db_query"]["count"]


class TestThreadPoolExecutor:
    """ThreadPoolExecutor.submit inside a Flask request on werkzeug."""

    def test_submit_with_in_context(self, lines):
        """Submitted work wrapped with in_context logs the request id; each of several
        concurrent submissions does, and all their timers reach the canonical line."""
        pool = ThreadPoolExecutor(max_workers=4)
        app = Flask("exec_app")

        @app.get("/fan-out")
        def fan_out():
            futures = [
                pool.submit(obslog.in_context(blocking_lookup, f"part{i}")) for i in range(4)
            ]
            bare = pool.submit(blocking_lookup, "bare")
            return {"parts": [f.result() for f in futures] + [bare.result()]}

        obslog.flask.init_app(app)
        try:
            with WerkzeugThread(app) as base:
                response = httpx.get(f"{base}/fan-out")
        finally:
            pool.shutdown()
        records = lines.snapshot()
        (line,) = records.canonical()
        request_id = response.headers["X-Request-ID"]
        assert [request_id] * 4 == [by_what(records, f"part{i}")["request_id"] for i in range(4)]
        assert "request_id" not in by_what(records, "bare")
        assert 4 == line["timings"]["db_query"]["count"]
        assert "/fan-out" == line["route"]
