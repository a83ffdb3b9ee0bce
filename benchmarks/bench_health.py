"""
Health-tier benchmark: what a probe of ``/health`` and of a cached ``/ready`` costs, next to a bare
``prometheus_client.generate_latest()`` of the default registry (the unit, 1.00x), in one run.

All cases call the framework-neutral core (``HealthEndpoints.handle``) in-process, so HTTP
parsing is left out; the standalone server's round trip over loopback is timed separately.

Latency promises are measured here, precisely, rather than in the tests (whose bounds must hold
on a loaded machine): how long ``/ready`` takes to answer 503 with the default 1 s budget when a
dependency hangs (sync and async checks, and an async check that ignores cancellation), and
how long each of 50 concurrent probes waits on the standalone server.

    python -m benchmarks.bench_health
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import logging
import platform
import statistics
import sys
import threading
import time
import timeit

from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prometheus_client import REGISTRY, generate_latest

from obslog.health import HealthEndpoints, Readiness, serve

from ._util import measure, table


def _endpoints() -> HealthEndpoints:
    readiness = Readiness(ttl=3600.0)  # the answer stays cached for the whole run
    readiness.add("sync_ok", lambda: True)

    async def async_ok() -> bool:
        return True

    readiness.add("async_ok", async_ok)
    return HealthEndpoints(readiness)


def _drive(coro: Coroutine[Any, Any, Any]) -> Any:
    # A cached answer never suspends: one send() runs the coroutine to its end, with no event
    # loop around it whose own cost would hide the one measured.
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    msg = "handle_async suspended: the answer was not cached"
    raise RuntimeError(msg)


def bench_tiers() -> list[tuple[str, float]]:
    """/health and a cached /ready through the core vs a bare generate_latest()."""
    endpoints = _endpoints()
    return measure(
        [
            ("prometheus_client generate_latest(REGISTRY)", lambda: generate_latest(REGISTRY)),
            ("/health  HealthEndpoints.handle", lambda: endpoints.handle("/health")),
            ("/ready   HealthEndpoints.handle, cached", lambda: endpoints.handle("/ready")),
            ("/ready   handle_async, cached", lambda: _drive(endpoints.handle_async("/ready"))),
        ],
        number=2_000,
        rounds=7,
    )


def bench_uncached(number: int = 300) -> float:
    """Return µs for one full /ready evaluation (ttl=0): a sync check in a thread, an async one."""
    readiness = Readiness(ttl=0)
    readiness.add("sync_ok", lambda: True)

    async def async_ok() -> bool:
        return True

    readiness.add("async_ok", async_ok)
    readiness.check()
    return min(timeit.repeat(readiness.check, number=number, repeat=5)) / number * 1e6


def bench_server(number: int = 500) -> float:
    """Return µs for one GET /health over loopback to the standalone server (keep-alive)."""
    with serve(port=0) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)

        def probe() -> None:
            conn.request("GET", "/health")
            conn.getresponse().read()

        probe()
        try:
            return min(timeit.repeat(probe, number=number, repeat=5)) / number * 1e6
        finally:
            conn.close()


def _hanging_readiness() -> tuple[Readiness, threading.Event]:
    """Checks that hang until released: a sync one, an async one, one that ignores cancel."""
    release = threading.Event()
    readiness = Readiness(ttl=0)
    readiness.add("sync_hang", lambda: release.wait())

    async def async_hang() -> bool:
        await asyncio.sleep(3600)
        return True

    async def stubborn() -> bool:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.02)
        return True

    readiness.add("async_hang", async_hang)
    readiness.add("ignores_cancel", stubborn)
    return readiness, release


def _get(port: int, path: str) -> tuple[int, float]:
    """GET *path* on a new connection; return (status, ms)."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    return response.status, (time.perf_counter() - start) * 1000.0


def bench_budget(runs: int = 7) -> list[float]:
    """Return ms from request to answer of /ready over loopback, default budget, checks hung."""
    readiness, release = _hanging_readiness()
    health_log = logging.getLogger("obslog.health")
    level = health_log.level
    health_log.setLevel(logging.ERROR)  # the expected "readiness check failed" warnings
    try:
        with serve(readiness, port=0) as server:
            times = []
            for _ in range(runs):
                status, ms = _get(server.port, "/ready")
                assert status == 503, status
                times.append(ms)
    finally:
        release.set()
        health_log.setLevel(level)
    return times


def bench_storm(path: str, n: int = 50, rounds: int = 5) -> list[float]:
    """Return the ms each of *n* concurrent probes (new connections, released together) waited."""
    readiness = Readiness(ttl=0)
    readiness.add("sync_ok", lambda: True)

    async def async_ok() -> bool:
        return True

    readiness.add("async_ok", async_ok)
    times: list[float] = []
    with serve(readiness, port=0) as server, ThreadPoolExecutor(n) as pool:
        for _ in range(rounds):
            barrier = threading.Barrier(n)

            def probe(_: int, barrier: threading.Barrier = barrier) -> float:
                barrier.wait()
                return _get(server.port, path)[1]

            times.extend(pool.map(probe, range(n)))
    return times


def _spread(label: str, times: list[float]) -> str:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return (
        f"  {label}: p50 {statistics.median(ordered):7.1f} ms  p99 {p99:7.1f} ms  "
        f"max {ordered[-1]:7.1f} ms  ({len(ordered)} probes)"
    )


def latency_report(out: Callable[[str], None] = print) -> None:
    """Print the latency figures behind the 1 s promise of /ready and /health."""
    out("latency promises (standalone server over loopback, default 1 s budget)")
    out(_spread("/ready, 3 hung checks (sync, async, ignores cancel)", bench_budget()))
    out(_spread("/health, 50 concurrent probes x 5", bench_storm("/health")))
    out(_spread("/ready uncached, 50 concurrent probes x 5", bench_storm("/ready")))


def main() -> int:
    """Run the health cases and print the table."""
    print(f"obslog health benchmark — CPython {platform.python_version()} on {platform.machine()}")
    rows = bench_tiers()
    title = "health tiers, unit = bare generate_latest() of the default registry"
    print(table(title, rows, rows[0][1]))
    unit, health, ready = (us for _, us in rows[:3])
    print(
        f"  one generate_latest() costs as much as {unit / health:,.0f} /health answers "
        f"or {unit / ready:,.0f} cached /ready answers"
    )
    print(
        table(
            "for scale, unit = bare generate_latest()",
            [
                ("/ready uncached evaluation (1 sync + 1 async check)", bench_uncached()),
                ("GET /health over loopback, standalone server", bench_server()),
            ],
            unit,
        )
    )
    latency_report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
