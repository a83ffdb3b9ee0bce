"""
Runtime and /metrics benchmark: one runtime sample, and a scrape after 0 and after 100k requests,
side by side with prometheus_client's own ProcessCollector / GCCollector in the same run.

The unit (1.00x) is one ``collect()`` of prometheus_client's ProcessCollector plus GCCollector:
what a plain prometheus_client process pays for its runtime figures at each scrape.

    python -m benchmarks.bench_runtime
"""

from __future__ import annotations

import platform
import sys

from collections.abc import Callable
from time import perf_counter

from prometheus_client import generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import CollectorRegistry

from obslog import metrics, runtime
from obslog._context import Scope

from ._util import measure, table


ROUTES = ("/orders/{id}", "/orders", "/search", "/checkout")
STATUSES = (200, 201, 404, 500)
TIMERS = {"db_query": [2, 3.0, 2.0], "cache_get": [1, 0.2, 0.2], "remote_call": [1, 40.0, 40.0]}
REQUESTS = 100_000


def _combos() -> list[tuple[str, str, int]]:
    return [(m, r, s) for m in ("GET", "POST") for r in ROUTES for s in STATUSES]


def _ended(method: str, route: str, status: int, duration_ms: float) -> Scope:
    scope = Scope("request", fields={"method": method, "route": route})
    scope.status = status
    scope.duration_ms = duration_ms
    scope.outcome = "error" if status >= 500 else "ok"
    scope.timers.update(TIMERS)
    return scope


def _declare(installation: metrics.MetricsInstallation) -> None:
    for method, route, status in _combos():
        installation.request_duration.labels(method, route, metrics._status_label(status))
    for timer in TIMERS:
        installation.timer_duration.labels(timer)
        installation.timer_calls.labels(timer)
    for outcome in ("ok", "error"):
        installation.canonical_lines.labels("request", outcome)


def _feed(installation: metrics.MetricsInstallation, n: int) -> float:
    scopes = [_ended(m, r, s, float(i * 7 % 250)) for i, (m, r, s) in enumerate(_combos())]
    start = perf_counter()
    done = 0
    while done < n:
        for scope in scopes:
            installation.on_scope_end(scope)
        done += len(scopes)
    return (perf_counter() - start) / done * 1e6


def main() -> None:
    """Print the runtime sample and scrape costs with their ratios."""
    print(f"obslog runtime/metrics benchmark -- Python {platform.python_version()} "
          f"on {sys.platform}, interleaved best of 9 rounds")

    process = ProcessCollector(registry=None)
    gc_collector = GCCollector(registry=CollectorRegistry())
    sampler = runtime.Sampler()
    rows = measure(
        [
            ("prometheus_client ProcessCollector.collect()", lambda: list(process.collect())),
            ("prometheus_client GCCollector.collect()", lambda: list(gc_collector.collect())),
            ("obslog runtime.Sampler().sample()", sampler.sample),
        ],
        number=2_000,
    )
    unit = rows[0][1] + rows[1][1]
    rows.insert(2, ("both (unit)", unit))
    rows += measure(
        [("obslog runtime.sample(objects=True)", lambda: runtime.sample(objects=True))],
        number=20,
        rounds=3,
    )
    print(table("\n(a) one runtime reading (target: sample() < 100 µs)", rows, unit))

    standard = CollectorRegistry()
    for collector in (ProcessCollector(registry=None), gc_collector,
                      PlatformCollector(registry=None)):
        standard.register(collector)
    empty = metrics.MetricsInstallation(CollectorRegistry())
    idle = metrics.MetricsInstallation(CollectorRegistry())
    busy = metrics.MetricsInstallation(CollectorRegistry())
    _declare(idle)
    _declare(busy)
    listener_us = _feed(busy, REQUESTS)

    def scrape(registry: CollectorRegistry) -> Callable[[], object]:
        return lambda: metrics.render_metrics(registry=registry)

    rows = measure(
        [
            ("prometheus_client standard collectors only", lambda: generate_latest(standard)),
            ("obslog, 0 requests, no series yet", scrape(empty.registry)),
            (f"obslog, 0 requests, {len(_combos())} request label sets", scrape(idle.registry)),
            (f"obslog, after {REQUESTS:,} requests (same label sets)", scrape(busy.registry)),
        ],
        number=100,
    )
    print(table("\n(b) one /metrics scrape (render_metrics), ratio to the unit", rows, unit))
    after_0, after_100k = rows[2][1], rows[3][1]
    print(f"  after {REQUESTS:,} / after 0 (same label sets): {after_100k / after_0:.2f}x "
          "(bound: 2x)")
    print(f"\n(c) on_scope_end listener: {listener_us:.2f} µs per request "
          f"({len(TIMERS)} timers)")


if __name__ == "__main__":
    main()
