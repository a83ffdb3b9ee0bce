"""
Collectors read at scrape time in single-process mode: runtime state and obslog's own counters.
"""

from __future__ import annotations

import time

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import psutil

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from obslog import _stats
from obslog.runtime import Sampler


__all__ = [
    "CTX_DOC",
    "DROPPED_DOC",
    "FAILED_DOC",
    "GC_COLLECTED_DOC",
    "GC_COLLECTIONS_DOC",
    "RUNTIME_GAUGES",
    "STATS_DOC",
    "RuntimeCollector",
    "StatsCollector",
    "dropped",
    "failed",
    "generations",
    "runtime_values",
]

RUNTIME_GAUGES = (
    # (name suffix, documentation, sample key, scale)
    ("cpu_seconds", "Cumulative user+system CPU seconds of the process (use rate()).", None, 1.0),
    ("resident_memory_bytes", "Resident memory size in bytes.", "rss_bytes", 1.0),
    ("virtual_memory_bytes", "Virtual memory size in bytes.", "vms_bytes", 1.0),
    ("threads", "OS threads of the process.", "threads", 1.0),
    ("python_threads", "Live threading.Thread objects.", "threads_active", 1.0),
    ("open_fds", "Open file descriptors.", "fds", 1.0),
    ("start_time_seconds", "Start time of the process since the epoch.", "start_time", 1.0),
    ("gc_pauses", "Garbage collections timed by obslog (cumulative).", "gc_pauses", 1.0),
    ("gc_pause_seconds", "Time spent in garbage collection (cumulative).",
     "gc_pause_ms_total", 0.001),
    ("gc_pause_max_seconds", "Longest gc pause since the previous reading.",
     "gc_pause_ms_max", 0.001),
    ("sample_timestamp_seconds", "When these runtime figures were read.", None, 1.0),
)
CTX_DOC = "Context switches of the process by kind (cumulative)."
GC_COLLECTIONS_DOC = "Garbage collections per generation (cumulative)."
GC_COLLECTED_DOC = "Objects collected per generation (cumulative)."


def runtime_values(reading: Mapping[str, Any], now: float) -> Iterator[tuple[str, float]]:
    """Yield ``(suffix, value)`` for every runtime gauge the *reading* has a figure for."""
    for suffix, _doc, key, scale in RUNTIME_GAUGES:
        if key is not None:
            value = reading.get(key)
        elif suffix == "cpu_seconds":
            value = reading["cpu_user_s"] + reading["cpu_system_s"]
        else:
            value = now
        if value is not None:
            yield suffix, float(value) * scale


def generations(reading: Mapping[str, Any], field: str) -> Iterator[tuple[str, float]]:
    """Yield ``(generation, value)`` for ``<field>_gen0``, ``_gen1``, ... of the *reading*."""
    gen = 0
    while (value := reading.get(f"{field}_gen{gen}")) is not None:
        yield str(gen), float(value)
        gen += 1


class RuntimeCollector:
    """``obslog_process_*{pid}`` from a fresh runtime reading at every scrape."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self.sampler = Sampler()

    def _families(self) -> list[GaugeMetricFamily]:
        p = self._prefix
        return [
            *(GaugeMetricFamily(p + suffix, doc, labels=["pid"])
              for suffix, doc, _key, _scale in RUNTIME_GAUGES),
            GaugeMetricFamily(p + "context_switches", CTX_DOC, labels=["pid", "kind"]),
            GaugeMetricFamily(p + "gc_collections", GC_COLLECTIONS_DOC,
                              labels=["pid", "generation"]),
            GaugeMetricFamily(p + "gc_collected_objects", GC_COLLECTED_DOC,
                              labels=["pid", "generation"]),
        ]

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        try:
            reading = self.sampler.sample()
        except (psutil.Error, OSError):
            _stats.incr("runtime_errors")
            return []
        pid = str(reading["pid"])
        families = self._families()
        by_name = {f.name: f for f in families}
        for suffix, value in runtime_values(reading, time.time()):
            by_name[self._prefix + suffix].add_metric([pid], value)
        ctx = by_name[self._prefix + "context_switches"]
        ctx.add_metric([pid, "voluntary"], reading["ctx_switches_voluntary"])
        ctx.add_metric([pid, "involuntary"], reading["ctx_switches_involuntary"])
        for gen, value in generations(reading, "gc_collections"):
            by_name[self._prefix + "gc_collections"].add_metric([pid, gen], value)
        for gen, value in generations(reading, "gc_collected"):
            by_name[self._prefix + "gc_collected_objects"].add_metric([pid, gen], value)
        return families


def dropped(counters: Mapping[str, int]) -> int:
    """Log records dropped, summed over every ``dropped`` / ``*_dropped`` counter."""
    return sum(v for k, v in counters.items() if k == "dropped" or k.endswith("_dropped"))


def failed(counters: Mapping[str, int]) -> int:
    """Log records that failed to render."""
    return counters.get("render_errors", 0)


STATS_DOC = "obslog's internal counters, as returned by obslog.stats()."
DROPPED_DOC = "Log records obslog dropped (full queues, shipping given up)."
FAILED_DOC = "Log records obslog failed to render."


class StatsCollector:
    """obslog.stats() read at scrape time: a dict copy under a lock."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix

    def _families(self) -> tuple[CounterMetricFamily, ...]:
        p = self._prefix
        return (
            CounterMetricFamily(p + "stats", STATS_DOC, labels=["counter"]),
            CounterMetricFamily(p + "log_records_dropped", DROPPED_DOC),
            CounterMetricFamily(p + "log_records_failed", FAILED_DOC),
        )

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        counters = _stats.snapshot()
        stats, dropped_family, failed_family = self._families()
        for name in sorted(counters):
            stats.add_metric([name], counters[name])
        dropped_family.add_metric([], dropped(counters))
        failed_family.add_metric([], failed(counters))
        return stats, dropped_family, failed_family
