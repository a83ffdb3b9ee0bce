"""
Latency of ``log.info()`` through :class:`obslog.loki.LokiHandler` under a healthy, a slow and a
dead Loki, next to a plain ``StreamHandler`` writing to ``/dev/null`` in the same run.

Run ``python -m benchmarks.bench_loki_handler`` from the repository root.  "Loki" here is the
stand-in push endpoint of ``tests/loki_stub.py`` (Loki itself does not run in this environment):

- healthy: answers every push with 204 at once;
- slow: holds every push without answering for the whole run (the worker stays blocked in a read);
- dead: nothing listens on the port (connection refused, retried with backoff).

Every case uses the same logger set-up and obslog's ``JsonFormatter``.  Each call is timed on its
own with ``perf_counter_ns``; the cases are interleaved in rounds so that all of them see the same
machine load.  The buffer is large enough that no call takes the (cheaper) drop path.
"""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import os
import platform
import socket
import statistics
import sys
import time

from obslog import JsonFormatter
from obslog.loki import LokiHandler

from ._loki import load_stub


__all__ = ["main"]

CALLS_PER_ROUND = 4_000
ROUNDS = 5
WARMUP = 500


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _logger(name: str, handler: logging.Handler) -> logging.Logger:
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(f"bench.loki.{name}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def _time_calls(logger: logging.Logger, count: int, into: list[int]) -> None:
    clock = time.perf_counter_ns
    info = logger.info
    for i in range(count):
        start = clock()
        info("order placed", extra={"order_id": i, "amount": 12.5, "currency": "EUR"})
        into.append(clock() - start)


def _percentile(samples: list[int], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000


def main() -> int:
    """Measure every case and print p50/p99 with their ratio to the StreamHandler."""
    stub_module = load_stub()
    healthy = stub_module.LokiStub().start()
    slow = stub_module.LokiStub().start()
    slow.stall()
    queue = (CALLS_PER_ROUND * ROUNDS + WARMUP) * 2
    options = {"queue_size": queue, "flush_on_sigterm": False, "flush_timeout": 2.0}
    devnull = open(os.devnull, "w")  # noqa: SIM115 - closed below
    handlers: dict[str, logging.Handler] = {
        "StreamHandler -> /dev/null": logging.StreamHandler(devnull),
        "LokiHandler, healthy Loki": LokiHandler(healthy.url, {"service": "bench"}, **options),
        "LokiHandler, slow Loki (stalls)": LokiHandler(
            slow.url, {"service": "bench"}, timeout=600, **options
        ),
        "LokiHandler, dead Loki (closed port)": LokiHandler(
            f"http://127.0.0.1:{_closed_port()}", {"service": "bench"}, **options
        ),
    }
    loggers = {label: _logger(str(i), h) for i, (label, h) in enumerate(handlers.items())}
    samples: dict[str, list[int]] = {label: [] for label in loggers}
    try:
        for logger in loggers.values():
            _time_calls(logger, WARMUP, [])
        for _ in range(ROUNDS):
            for label, logger in loggers.items():
                gc.collect()
                _time_calls(logger, CALLS_PER_ROUND, samples[label])
        counters = {
            label: h.stats() for label, h in handlers.items() if isinstance(h, LokiHandler)
        }
    finally:
        slow.release()
        # Closing with lines still buffered for the dead endpoint reports them on stderr.
        with contextlib.redirect_stderr(io.StringIO()):
            for handler in handlers.values():
                handler.close()
        healthy.stop()
        slow.stop()
        devnull.close()

    base = "StreamHandler -> /dev/null"
    base_p50 = _percentile(samples[base], 0.50)
    base_p99 = _percentile(samples[base], 0.99)
    width = max(len(label) for label in samples)
    print(
        f"obslog LokiHandler benchmark — CPython {platform.python_version()} on "
        f"{platform.machine()}, {os.cpu_count()} CPUs; {ROUNDS} x {CALLS_PER_ROUND} calls per "
        "case, interleaved"
    )
    print(
        f"  {'case'.ljust(width)}  {'p50 µs':>8}  {'p99 µs':>8}  {'mean µs':>8}"
        f"  {'p50 ratio':>9}  {'p99 ratio':>9}  {'dropped':>7}"
    )
    for label, values in samples.items():
        p50, p99 = _percentile(values, 0.50), _percentile(values, 0.99)
        mean = statistics.fmean(values) / 1000
        dropped = counters.get(label, {}).get("dropped", 0)
        print(
            f"  {label.ljust(width)}  {p50:8.2f}  {p99:8.2f}  {mean:8.2f}"
            f"  {p50 / base_p50:8.2f}x  {p99 / base_p99:8.2f}x  {dropped:7d}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
