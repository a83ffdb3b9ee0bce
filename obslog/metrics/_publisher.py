"""
Multiprocess mode: each process writes its own runtime figures and stats into the directory.

prometheus_client's ``liveall`` gauges carry a ``pid`` label, so every worker's runtime state stays
visible as its own series; obslog's counters go in as deltas into summed counters.  A daemon thread
writes every ``publish_interval`` seconds, and the scraping worker once more before a scrape.
"""

from __future__ import annotations

import os
import threading
import time

import prometheus_client

from obslog import _stats
from obslog.runtime import Sampler, _Periodic

from ._collectors import (
    CTX_DOC,
    DROPPED_DOC,
    FAILED_DOC,
    GC_COLLECTED_DOC,
    GC_COLLECTIONS_DOC,
    RUNTIME_GAUGES,
    STATS_DOC,
    dropped,
    failed,
    generations,
    runtime_values,
)


__all__ = ["Publisher"]


class Publisher:
    """
    This process's share of the multiprocess directory, written from a daemon thread.

    Args:
        prefix: Prefix of the metric names (``"obslog_"``).
        interval: Seconds between two writes.
    """

    def __init__(self, prefix: str, interval: float) -> None:
        p = prefix + "process_"
        self._sampler = Sampler()
        self._runtime = {
            suffix: prometheus_client.Gauge(
                p + suffix, doc, registry=None, multiprocess_mode="liveall"
            )
            for suffix, doc, _key, _scale in RUNTIME_GAUGES
        }
        self._ctx = prometheus_client.Gauge(
            p + "context_switches", CTX_DOC, ["kind"], registry=None,
            multiprocess_mode="liveall",
        )
        self._gc_collections = prometheus_client.Gauge(
            p + "gc_collections", GC_COLLECTIONS_DOC, ["generation"], registry=None,
            multiprocess_mode="liveall",
        )
        self._gc_collected = prometheus_client.Gauge(
            p + "gc_collected_objects", GC_COLLECTED_DOC, ["generation"], registry=None,
            multiprocess_mode="liveall",
        )
        self._stats_counter = prometheus_client.Counter(
            prefix + "stats", STATS_DOC, ["counter"], registry=None
        )
        self._dropped_counter = prometheus_client.Counter(
            prefix + "log_records_dropped", DROPPED_DOC, registry=None
        )
        self._failed_counter = prometheus_client.Counter(
            prefix + "log_records_failed", FAILED_DOC, registry=None
        )
        self._published: dict[str, int] = _stats.snapshot()
        self._publish_lock = threading.Lock()
        self._publish_pid = os.getpid()
        self._thread = _Periodic(
            self.publish, interval, name="obslog-metrics-publisher", error_counter="metrics_errors"
        )

    def start(self) -> None:
        """Start the thread (it restarts in forked children)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and the sampler's gc-pause timing; safe to call more than once."""
        self._thread.stop()
        self._sampler.close()

    def publish(self) -> None:
        """
        Write this process's runtime figures and stats into the multiprocess directory.

        Done every ``publish_interval`` seconds by the thread, and by the scraping worker before
        it aggregates.

        Raises:
            psutil.Error: The process table could not be read (the thread counts it in
                ``obslog.stats()["metrics_errors"]``).
        """
        pid = os.getpid()
        if pid != self._publish_pid:
            # Forked: the lock may have been held at fork time, and the parent's counts are the
            # parent's to publish.
            self._publish_lock = threading.Lock()
            self._publish_pid = pid
            self._published = _stats.snapshot()
        with self._publish_lock:
            reading = self._sampler.sample()
            for suffix, value in runtime_values(reading, time.time()):
                self._runtime[suffix].set(value)
            self._ctx.labels("voluntary").set(reading["ctx_switches_voluntary"])
            self._ctx.labels("involuntary").set(reading["ctx_switches_involuntary"])
            for gen, value in generations(reading, "gc_collections"):
                self._gc_collections.labels(gen).set(value)
            for gen, value in generations(reading, "gc_collected"):
                self._gc_collected.labels(gen).set(value)
            counters = _stats.snapshot()
            before = self._published
            for name, value in counters.items():
                delta = value - before.get(name, 0)
                if delta > 0:
                    self._stats_counter.labels(name).inc(delta)
            delta = dropped(counters) - dropped(before)
            if delta > 0:
                self._dropped_counter.inc(delta)
            delta = failed(counters) - failed(before)
            if delta > 0:
                self._failed_counter.inc(delta)
            self._published = counters
