"""
Probe storms and misbehaving checks: /health and /ready answer 50 concurrent probes within the
budget on real servers (the standalone server and uvicorn), and an async check that ignores
cancellation is abandoned at the budget, reported as timed out and never piles up.

Latency bounds here are the promise plus LOADED_SLACK, so that they hold on a loaded 2-core
machine; benchmarks/bench_health.py measures the real figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import threading
import time

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from _servers import UvicornThread

from obslog.asgi import make_health_app
from obslog.health import DEFAULT_BUDGET, Readiness, serve


LOADED_SLACK = 0.5
"""Seconds a loaded 2-core machine may add to a latency promise (thread and loop wake-ups)."""

STORM = 50


class _Stubborn:
    """An async check that swallows CancelledError and keeps running until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = 0
        self.running = 0
        self.most_running = 0
        self._lock = threading.Lock()

    async def __call__(self) -> bool:
        with self._lock:
            self.started += 1
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            while not self.release.is_set():
                # The misbehaviour under test: a check that will not be cancelled.
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.sleep(0.02)
            return True
        finally:
            with self._lock:
                self.running -= 1

    def wait_stopped(self, timeout: float = 5.0) -> None:
        """Release the check and wait until no run of it is left."""
        self.release.set()
        deadline = time.monotonic() + timeout
        while self.running and time.monotonic() < deadline:
            time.sleep(0.01)


def _storm(url_for: Callable[[int], str], n: int = STORM) -> list[tuple[int, float, bytes]]:
    """Send *n* GETs at once, each on its own new connection; return (status, seconds, body)."""
    barrier = threading.Barrier(n)

    def probe(i: int) -> tuple[int, float, bytes]:
        url = httpx.URL(url_for(i))
        conn = http.client.HTTPConnection(url.host, url.port, timeout=10)
        barrier.wait()
        start = time.monotonic()
        try:
            conn.request("GET", url.raw_path.decode())
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        return response.status, time.monotonic() - start, body

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(probe, range(n)))


def _settled_thread_count(baseline: int, timeout: float = 5.0) -> int:
    """Wait for the thread count to fall back to *baseline*; return the last count seen."""
    deadline = time.monotonic() + timeout
    count = threading.active_count()
    while count > baseline and time.monotonic() < deadline:
        time.sleep(0.02)
        count = threading.active_count()
    return count


def _warm_thread_count() -> int:
    """Start the private loop that runs async checks for sync callers; return the thread count."""
    Readiness().check()
    return threading.active_count()


def _fast_readiness() -> Readiness:
    readiness = Readiness(ttl=0)
    readiness.add("sync_ok", lambda: True)

    async def async_ok() -> bool:
        await asyncio.sleep(0.01)
        return True

    readiness.add("async_ok", async_ok)
    return readiness


class TestCheckIgnoringCancellation:
    def test_sync_callers_abandon_it_at_the_budget(self):
        """Probes through check() answer 503 "timeout" within the budget, and the check that
        swallows CancelledError is never started again while its first run goes on."""
        stubborn = _Stubborn()
        readiness = Readiness(budget=0.3, ttl=0)
        readiness.add("stubborn", stubborn)
        readiness.add("fine", lambda: True)
        try:
            answers = []
            for _ in range(6):
                start = time.monotonic()
                report = readiness.check()
                answers.append((report, time.monotonic() - start))
            running, started = stubborn.running, stubborn.started
        finally:
            stubborn.wait_stopped()
        recovered = readiness.check()

        bodies = [json.loads(report.body) for report, _ in answers]
        assert [503] * 6 == [report.status_code for report, _ in answers]
        assert ["timeout"] * 6 == [b["checks"]["stubborn"]["status"] for b in bodies]
        assert ["ok"] * 6 == [b["checks"]["fine"]["status"] for b in bodies]
        assert bodies[0]["checks"]["stubborn"]["error"].startswith("timed out after")
        assert all(
            b["checks"]["stubborn"]["error"].startswith("previous run has not finished")
            for b in bodies[1:]
        )
        assert max(elapsed for _, elapsed in answers) < 0.3 + LOADED_SLACK
        assert (1, 1, 1) == (stubborn.most_running, running, started)
        assert 200 == recovered.status_code

    async def test_async_callers_abandon_it_at_the_budget(self):
        """Probes through check_async() on the caller's loop answer within the budget, and at
        most one run of the check is ever outstanding on that loop."""
        stubborn = _Stubborn()
        readiness = Readiness(budget=0.3, ttl=0)
        readiness.add("stubborn", stubborn)
        tasks_before = len(asyncio.all_tasks())
        elapsed = []
        statuses = []
        for _ in range(6):
            start = time.monotonic()
            report = await readiness.check_async()
            elapsed.append(time.monotonic() - start)
            statuses.append(json.loads(report.body)["checks"]["stubborn"]["status"])
        extra_tasks = len(asyncio.all_tasks()) - tasks_before
        stubborn.release.set()
        while stubborn.running:
            await asyncio.sleep(0.01)

        assert ["timeout"] * 6 == statuses
        assert max(elapsed) < 0.3 + LOADED_SLACK
        assert (1, 1) == (stubborn.started, stubborn.most_running)
        assert 1 == extra_tasks

    async def test_well_behaved_check_runs_again_after_its_timeout(self):
        """A check that stops when cancelled at its timeout is started afresh on the next probe
        (the one-run-at-a-time guard only holds back runs that are still going)."""
        calls = 0

        async def slow() -> bool:
            nonlocal calls
            calls += 1
            await asyncio.sleep(10)
            return True

        readiness = Readiness(budget=0.2, ttl=0)
        readiness.add("slow", slow)

        first = await readiness.check_async()
        second = await readiness.check_async()

        errors = [json.loads(r.body)["checks"]["slow"]["error"] for r in (first, second)]
        assert 2 == calls
        assert [True, True] == [e.startswith("timed out after") for e in errors]


class TestStandaloneServerStorm:
    def test_fifty_concurrent_probes_of_each_tier_within_budget(self):
        """50 probes of /health and 50 of /ready, each on a new connection at the same moment,
        all answer 200 within the 1 s budget, and the request threads all end."""
        baseline = _warm_thread_count()
        with serve(_fast_readiness(), port=0) as server:
            health = _storm(lambda i: f"{server.url}/health")
            ready = _storm(lambda i: f"{server.url}/ready")
            threads_after = _settled_thread_count(baseline + 1)  # + the server's own thread

        assert [200] * 2 * STORM == [status for status, _, _ in health + ready]
        assert max(seconds for _, seconds, _ in health + ready) < DEFAULT_BUDGET
        assert baseline + 1 == threads_after

    def test_listen_backlog_is_at_least_128(self):
        """The server listens with a backlog of at least 128, not the stdlib's 5."""
        with serve(port=0) as server:
            backlog = type(server._server).request_queue_size

        assert backlog >= 128

    def test_storm_with_check_ignoring_cancellation(self):
        """Three storms of 50 /ready probes against a check that swallows CancelledError: every
        probe gets 503 "timeout" within the budget, one run of the check is ever outstanding, and
        no thread is left behind."""
        stubborn = _Stubborn()
        readiness = Readiness(budget=0.5, ttl=0)
        readiness.add("stubborn", stubborn)
        baseline = _warm_thread_count()
        try:
            with serve(readiness, port=0) as server:
                storms = [_storm(lambda i: f"{server.url}/ready") for _ in range(3)]
                threads_after = _settled_thread_count(baseline + 1)
            most_running, started = stubborn.most_running, stubborn.started
        finally:
            stubborn.wait_stopped()

        answers = [answer for storm in storms for answer in storm]
        assert [503] * 3 * STORM == [status for status, _, _ in answers]
        assert {"timeout"} == {
            json.loads(body)["checks"]["stubborn"]["status"] for _, _, body in answers
        }
        assert max(seconds for _, seconds, _ in answers) < 0.5 + LOADED_SLACK
        assert (1, 1) == (most_running, started)
        assert baseline + 1 == threads_after


class TestUvicornStorm:
    def test_fifty_concurrent_probes_of_each_tier_within_budget(self):
        """On uvicorn, 50 concurrent probes of /health and 50 of /ready all answer 200 within
        the 1 s budget."""
        with UvicornThread(make_health_app(_fast_readiness())) as base:
            health = _storm(lambda i: f"{base}/health")
            ready = _storm(lambda i: f"{base}/ready")

        assert [200] * 2 * STORM == [status for status, _, _ in health + ready]
        assert max(seconds for _, seconds, _ in health + ready) < DEFAULT_BUDGET

    def test_storm_with_check_ignoring_cancellation(self):
        """On uvicorn, storms of /ready against a check that swallows CancelledError all get 503
        "timeout" within the budget, /health keeps answering, and the check runs once."""
        stubborn = _Stubborn()
        readiness = Readiness(budget=0.5, ttl=0)
        readiness.add("stubborn", stubborn)
        with UvicornThread(make_health_app(readiness)) as base:
            try:
                storms = [
                    _storm(lambda i: f"{base}/ready" if i % 5 else f"{base}/health")
                    for _ in range(3)
                ]
                most_running, started = stubborn.most_running, stubborn.started
            finally:
                # Before uvicorn stops: its loop waits for every task it cancels at exit.
                stubborn.wait_stopped()

        answers = [answer for storm in storms for answer in storm]
        ready = [a for a in answers if a[2] != b'{"status":"ok"}']
        assert len(answers) - len(ready) == 3 * STORM // 5
        assert {503} == {status for status, _, _ in ready}
        assert {"timeout"} == {
            json.loads(body)["checks"]["stubborn"]["status"] for _, _, body in ready
        }
        assert max(seconds for _, seconds, _ in answers) < 0.5 + LOADED_SLACK
        assert (1, 1) == (most_running, started)


@pytest.fixture(autouse=True)
def _quiet_readiness_logs(caplog):
    """Keep the expected "readiness check failed" warnings out of the test output."""
    caplog.set_level("CRITICAL", logger="obslog.health")
