"""
Health-tier benchmark: what a probe of ``/health`` and of a cached ``/ready`` costs, next to a bare
``prometheus_client.generate_latest()`` of the default registry (the unit, 1.00x), in one run.

All cases call the framework-neutral core (``HealthEndpoints.handle``) in-process, so HTTP
parsing is left out; the standalone server's round trip over loopback is timed separately.

    python -m benchmarks.bench_health
"""

from __future__ import annotations

import http.client
import platform
import sys
import timeit

from collections.abc import Coroutine
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
