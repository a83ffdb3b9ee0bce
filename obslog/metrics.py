"""
Prometheus ``/metrics`` for obslog: request, timer and canonical-line metrics, runtime state per
process, and obslog's own failure counters, through :mod:`prometheus_client`.

Nothing is registered at import time.  :func:`install` registers the metrics and subscribes to
the scope listeners; :func:`render_metrics` produces a scrape for any HTTP layer::

    from obslog import metrics

    metrics.install()
    body, content_type = metrics.render_metrics(request.headers.get("accept"))

Metrics (bounded labels only -- route *templates* capped at ``max_routes`` distinct values, with
``"<unmatched>"`` for a request without a route and ``"<other>"`` for anything past the cap, a
non-standard method, or an unknown kind, outcome or timer):

* ``obslog_request_duration_seconds`` histogram -- ``method``, ``route``, ``status_class``
  (``2xx`` ... ``5xx``, ``<none>`` when no status was set);
* ``obslog_timer_duration_seconds`` histogram -- ``timer``: time a scope spent in each named timer;
* ``obslog_timer_calls_total`` counter -- ``timer``;
* ``obslog_canonical_lines_total`` counter -- ``kind``, ``outcome``: one per ended scope, counted
  before sampling, so it stays exact when log sampling is on;
* ``obslog_requests_active`` gauge -- request scopes in flight;
* ``obslog_log_records_dropped_total``, ``obslog_log_records_failed_total`` counters, and
  ``obslog_stats_total{counter=...}`` for every counter of :func:`obslog.stats`;
* ``obslog_process_*{pid=...}`` gauges -- per-process runtime state from
  :func:`obslog.runtime.sample`: CPU seconds, resident and virtual memory, OS and Python threads,
  open fds, context switches, gc collections / collected objects per generation, gc pause time,
  and the timestamp of the reading.  CPU seconds, context switches and gc figures are cumulative
  (use ``rate()``); they are gauges because they must carry a ``pid`` label in both modes;
* prometheus_client's standard ``process_*``, ``python_gc_*`` and ``python_info`` collectors
  (single-process mode; in multiprocess mode only ``python_info``, because the standard
  collectors would describe whichever worker answered the scrape).

Single process: a scrape renders the registry given to :func:`install` (a private
:class:`~prometheus_client.CollectorRegistry` by default).  Runtime state and :func:`obslog.stats`
are read by custom collectors at scrape time; a scrape costs the same after a million requests as
after none, because it never walks requests or live objects.

Multiprocess (gunicorn and the like, ``PROMETHEUS_MULTIPROC_DIR`` set before
:mod:`prometheus_client` is first imported): the metrics live in prometheus_client's memory-mapped
files and a scrape aggregates every worker's files, as prometheus_client's own multiprocess mode
does.  Unlike that mode, each worker's runtime state stays visible as **per-pid series**: every
process that called :func:`install` writes its ``obslog_process_*`` figures into ``liveall``
gauges (prometheus_client adds the ``pid`` label) from a small daemon thread every
``publish_interval`` seconds (and the scraping worker once more right before the scrape), and its
:func:`obslog.stats` counters as deltas into summed counters.  Per-pid series were chosen over live
aggregation with psutil from the scraping worker because the interpreter's own figures (gc, Python
threads) can only be read from inside each worker; the ``obslog_process_sample_timestamp_seconds``
series shows how fresh each worker's figures are.

Dead workers are cleaned up on every scrape (and by :func:`cleanup_dead_processes`): their
``live*`` gauge files are removed (:func:`prometheus_client.multiprocess.mark_process_dead`) and
their counter, histogram and summary files are merged into one ``<type>_archive.db`` file per type,
so totals never go backwards while the number of files -- and the scrape's cost -- stays bounded
however often workers are recycled.  Gauges in the other multiprocess modes keep
prometheus_client's semantics and are left alone.  A gunicorn ``child_exit`` hook may still call
:func:`mark_process_dead` to drop a worker's series at once.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import warnings

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import prometheus_client

from prometheus_client import values as _pc_values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.multiprocess import mark_process_dead as _pc_mark_process_dead
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

from obslog import _stats
from obslog.runtime import Sampler, _Periodic


try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no compaction, mark_process_dead only
    fcntl = None  # type: ignore[assignment]

import psutil


__all__ = [
    "DEFAULT_BUCKETS",
    "DEFAULT_TIMER_BUCKETS",
    "MetricsInstallation",
    "cleanup_dead_processes",
    "install",
    "installed",
    "mark_process_dead",
    "multiprocess_dir",
    "render_metrics",
    "uninstall",
]

DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
"""Request duration buckets in seconds (prometheus_client's defaults)."""

DEFAULT_TIMER_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
"""Timer duration buckets in seconds: timers measure smaller blocks than whole requests."""

UNMATCHED = "<unmatched>"
OTHER = "<other>"
NONE = "<none>"

_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
)
_OUTCOMES = frozenset(("ok", "error", "cancelled"))
_STATUS_CLASSES = {n: f"{n}xx" for n in range(1, 6)}
_MAX_LABEL_LENGTH = 256
_CHILD_CACHE_MAX = 4096
_LOCK_FILE = ".obslog.lock"


# -- bounded labels -------------------------------------------------------------------------------
class _LabelCap:
    """Map raw values to at most *limit* distinct labels; the rest become ``"<other>"``."""

    __slots__ = ("_limit", "_lock", "_seen")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            msg = f"label limits must be at least 1, not {limit!r}"
            raise ValueError(msg)
        self._limit = limit
        self._seen: dict[str, str] = {}
        self._lock = threading.Lock()

    def __call__(self, value: object) -> str:
        if not isinstance(value, str):
            return OTHER
        label = self._seen.get(value)
        if label is not None:
            return label
        if not value or len(value) > _MAX_LABEL_LENGTH:
            return OTHER
        with self._lock:
            if len(self._seen) >= self._limit:
                return OTHER
            self._seen[value] = value
        return value

    def __len__(self) -> int:
        return len(self._seen)


def _method_label(method: object) -> str:
    if isinstance(method, str):
        upper = method.upper()
        if upper in _METHODS:
            return upper
    return OTHER


def _status_label(status: object) -> str:
    if isinstance(status, int) and 100 <= status <= 599:  # HTTP status range
        return _STATUS_CLASSES[status // 100]
    return NONE


# -- multiprocess directory -----------------------------------------------------------------------
def multiprocess_dir() -> str | None:
    """
    Return the multiprocess directory in use, or ``None`` in single-process mode.

    Returns:
        ``PROMETHEUS_MULTIPROC_DIR`` (or the deprecated lower-case spelling) when it is set.
    """
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get(
        "prometheus_multiproc_dir"  # noqa: SIM112 - the deprecated spelling, still honoured
    )
    return path or None


def _values_are_multiprocess() -> bool:
    return bool(getattr(_pc_values.ValueClass, "_multiprocess", False))


def mark_process_dead(pid: int, path: str | None = None) -> None:
    """
    Drop a dead worker's ``live*`` gauge series at once (for a gunicorn ``child_exit`` hook).

    Its counters and histograms stay counted; :func:`cleanup_dead_processes` compacts them later.

    Args:
        pid: The dead worker's process id.
        path: The multiprocess directory; ``PROMETHEUS_MULTIPROC_DIR`` by default.
    """
    path = path or multiprocess_dir()
    if path:
        _pc_mark_process_dead(pid, path)


def _pid_of(filename: str) -> int | None:
    if not filename.endswith(".db"):
        return None
    tail = filename[:-3].rpartition("_")[2]
    return int(tail) if tail.isdigit() else None


@contextlib.contextmanager
def _dir_lock(path: str, exclusive: bool) -> Iterator[None]:
    if fcntl is None:  # pragma: no cover
        yield
        return
    fd = os.open(os.path.join(path, _LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _dead_pids(path: str) -> set[int]:
    me = os.getpid()
    pids = {_pid_of(name) for name in os.listdir(path)}
    return {pid for pid in pids if pid is not None and pid != me and not psutil.pid_exists(pid)}


def cleanup_dead_processes(path: str | None = None) -> list[int]:
    """
    Remove the series of worker processes that are gone from the multiprocess directory.

    For every pid that has files in *path* but no longer runs: its ``live*`` gauge files are
    deleted (its runtime series and its share of ``obslog_requests_active`` disappear), and its
    counter, histogram and summary files are merged into ``<type>_archive.db`` files so that
    totals are kept while the directory stops growing.  Runs under an exclusive ``flock`` on the
    directory; :func:`render_metrics` reads under a shared one, so no scrape sees a file counted
    twice or half removed.

    Args:
        path: The multiprocess directory; ``PROMETHEUS_MULTIPROC_DIR`` by default.

    Returns:
        The pids that were cleaned up (sorted).
    """
    path = path or multiprocess_dir()
    if not path or not os.path.isdir(path):
        return []
    if not _dead_pids(path):
        return []
    with _dir_lock(path, exclusive=True):
        dead = _dead_pids(path)  # again, under the lock: another worker may have done it
        for pid in dead:
            _pc_mark_process_dead(pid, path)
        if fcntl is not None and dead:
            _archive(path, dead)
    return sorted(dead)


def _archive(path: str, dead: set[int]) -> None:
    # prometheus_client documents MultiProcessCollector.merge(files, accumulate=False) for
    # writing merged values back to mmap files; MmapedDict / mmap_key are its file format.
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    by_type: dict[str, list[str]] = {}
    for name in os.listdir(path):
        pid = _pid_of(name)
        typ = name.partition("_")[0]
        if pid in dead and typ in ("counter", "histogram", "summary"):
            by_type.setdefault(typ, []).append(os.path.join(path, name))
    for typ, files in by_type.items():
        archive = os.path.join(path, f"{typ}_archive.db")
        sources = [*files, archive] if os.path.exists(archive) else files
        merged = MultiProcessCollector.merge(sources, accumulate=False)
        tmp = os.path.join(path, f"{typ}_archive.tmp")
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        out = MmapedDict(tmp)
        try:
            for metric in merged:
                for s in metric.samples:
                    key = mmap_key(
                        metric.name, s.name, list(s.labels), list(s.labels.values()),
                        metric.documentation,
                    )
                    out.write_value(key, s.value, 0.0)
        finally:
            out.close()
        os.replace(tmp, archive)
        for f in files:
            os.remove(f)


# -- collectors for single-process mode -----------------------------------------------------------
_RUNTIME_GAUGES = (
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
_CTX_DOC = "Context switches of the process by kind (cumulative)."
_GC_COLLECTIONS_DOC = "Garbage collections per generation (cumulative)."
_GC_COLLECTED_DOC = "Objects collected per generation (cumulative)."


def _runtime_values(reading: Mapping[str, Any], now: float) -> Iterator[tuple[str, float]]:
    for suffix, _doc, key, scale in _RUNTIME_GAUGES:
        if key is not None:
            value = reading.get(key)
        elif suffix == "cpu_seconds":
            value = reading["cpu_user_s"] + reading["cpu_system_s"]
        else:
            value = now
        if value is not None:
            yield suffix, float(value) * scale


def _generations(reading: Mapping[str, Any], field: str) -> Iterator[tuple[str, float]]:
    gen = 0
    while (value := reading.get(f"{field}_gen{gen}")) is not None:
        yield str(gen), float(value)
        gen += 1


class _RuntimeCollector:
    """``obslog_process_*{pid}`` from a fresh runtime reading at every scrape."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._sampler = Sampler()

    def _families(self) -> list[GaugeMetricFamily]:
        p = self._prefix
        return [
            *(GaugeMetricFamily(p + suffix, doc, labels=["pid"])
              for suffix, doc, _key, _scale in _RUNTIME_GAUGES),
            GaugeMetricFamily(p + "context_switches", _CTX_DOC, labels=["pid", "kind"]),
            GaugeMetricFamily(p + "gc_collections", _GC_COLLECTIONS_DOC,
                              labels=["pid", "generation"]),
            GaugeMetricFamily(p + "gc_collected_objects", _GC_COLLECTED_DOC,
                              labels=["pid", "generation"]),
        ]

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        try:
            reading = self._sampler.sample()
        except (psutil.Error, OSError):
            _stats.incr("runtime_errors")
            return []
        pid = str(reading["pid"])
        families = self._families()
        by_name = {f.name: f for f in families}
        for suffix, value in _runtime_values(reading, time.time()):
            by_name[self._prefix + suffix].add_metric([pid], value)
        ctx = by_name[self._prefix + "context_switches"]
        ctx.add_metric([pid, "voluntary"], reading["ctx_switches_voluntary"])
        ctx.add_metric([pid, "involuntary"], reading["ctx_switches_involuntary"])
        for gen, value in _generations(reading, "gc_collections"):
            by_name[self._prefix + "gc_collections"].add_metric([pid, gen], value)
        for gen, value in _generations(reading, "gc_collected"):
            by_name[self._prefix + "gc_collected_objects"].add_metric([pid, gen], value)
        return families


def _dropped(counters: Mapping[str, int]) -> int:
    return sum(v for k, v in counters.items() if k == "dropped" or k.endswith("_dropped"))


def _failed(counters: Mapping[str, int]) -> int:
    return counters.get("render_errors", 0)


_STATS_DOC = "obslog's internal counters, as returned by obslog.stats()."
_DROPPED_DOC = "Log records obslog dropped (full queues, shipping given up)."
_FAILED_DOC = "Log records obslog failed to render."


class _StatsCollector:
    """obslog.stats() read at scrape time: a dict copy under a lock."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix

    def _families(self) -> tuple[CounterMetricFamily, ...]:
        p = self._prefix
        return (
            CounterMetricFamily(p + "stats", _STATS_DOC, labels=["counter"]),
            CounterMetricFamily(p + "log_records_dropped", _DROPPED_DOC),
            CounterMetricFamily(p + "log_records_failed", _FAILED_DOC),
        )

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        counters = _stats.snapshot()
        stats, dropped, failed = self._families()
        for name in sorted(counters):
            stats.add_metric([name], counters[name])
        dropped.add_metric([], _dropped(counters))
        failed.add_metric([], _failed(counters))
        return stats, dropped, failed


# -- the installation -----------------------------------------------------------------------------
class MetricsInstallation:
    """
    obslog's metrics, fed by :meth:`on_scope_start` / :meth:`on_scope_end`.

    :func:`install` makes one and subscribes it to the scope listeners; an installation built
    directly records only what is passed to its listener methods.  The arguments are those of
    :func:`install`, plus *multiprocess* (write to ``PROMETHEUS_MULTIPROC_DIR``).

    Attributes:
        registry: The registry scraped in single-process mode (unused for rendering in
            multiprocess mode, where each scrape aggregates the directory).
        multiprocess: Whether the metrics live in ``PROMETHEUS_MULTIPROC_DIR``.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        namespace: str = "obslog",
        max_routes: int = 200,
        max_timers: int = 100,
        max_kinds: int = 20,
        buckets: Iterable[float] = DEFAULT_BUCKETS,
        timer_buckets: Iterable[float] = DEFAULT_TIMER_BUCKETS,
        standard_collectors: bool = True,
        publish_interval: float = 5.0,
        multiprocess: bool = False,
    ) -> None:
        self.registry = registry
        self.multiprocess = multiprocess
        self._routes = _LabelCap(max_routes)
        self._timers = _LabelCap(max_timers)
        self._kinds = _LabelCap(max_kinds)
        self._registered: list[Any] = []
        self._unsubscribe: list[Callable[[], None]] = []
        self._inflight: set[int] = set()
        self._request_children: dict[tuple[Any, ...], Any] = {}
        self._timer_children: dict[str, tuple[Any, Any]] = {}
        self._line_children: dict[tuple[Any, Any], Any] = {}
        self._publisher: _Periodic | None = None
        prefix = f"{namespace}_" if namespace else ""
        self._prefix = prefix
        target = None if multiprocess else registry
        self.request_duration = prometheus_client.Histogram(
            prefix + "request_duration_seconds",
            "Request duration by method, route template and status class.",
            ["method", "route", "status_class"],
            buckets=tuple(buckets),
            registry=None,
        )
        self.timer_duration = prometheus_client.Histogram(
            prefix + "timer_duration_seconds",
            "Time a scope spent in each named timer.",
            ["timer"],
            buckets=tuple(timer_buckets),
            registry=None,
        )
        self.timer_calls = prometheus_client.Counter(
            prefix + "timer_calls", "Calls of each named timer.", ["timer"], registry=None
        )
        self.canonical_lines = prometheus_client.Counter(
            prefix + "canonical_lines",
            "Ended scopes (one canonical line each, counted before log sampling).",
            ["kind", "outcome"],
            registry=None,
        )
        self.requests_active = prometheus_client.Gauge(
            prefix + "requests_active",
            "Request scopes in flight.",
            registry=None,
            multiprocess_mode="livesum",
        )
        own: list[Collector] = [
            self.request_duration,
            self.timer_duration,
            self.timer_calls,
            self.canonical_lines,
            self.requests_active,
        ]
        if multiprocess:
            self._init_multiprocess(prefix)
        else:
            own += [_RuntimeCollector(prefix + "process_"), _StatsCollector(prefix)]
            if standard_collectors:
                own += [
                    ProcessCollector(registry=None),
                    # GCCollector cannot be built without a registry: give it a throwaway one.
                    GCCollector(registry=CollectorRegistry()),
                    PlatformCollector(registry=None),
                ]
        if target is not None:
            for collector in own:
                try:
                    target.register(collector)
                except ValueError:
                    # Already there: prometheus_client's REGISTRY registers the standard
                    # collectors when it is imported.
                    if not isinstance(collector, (ProcessCollector, GCCollector,
                                                  PlatformCollector)):
                        self.close()
                        raise
                else:
                    self._registered.append(collector)
        if multiprocess:
            self._publisher = _Periodic(
                self.publish,
                publish_interval,
                name="obslog-metrics-publisher",
                error_counter="metrics_errors",
            )
            self._publisher.start()

    # -- multiprocess publishing ----------------------------------------------------------------
    def _init_multiprocess(self, prefix: str) -> None:
        p = prefix + "process_"
        self._sampler = Sampler()
        self._runtime = {
            suffix: prometheus_client.Gauge(
                p + suffix, doc, registry=None, multiprocess_mode="liveall"
            )
            for suffix, doc, _key, _scale in _RUNTIME_GAUGES
        }
        self._ctx = prometheus_client.Gauge(
            p + "context_switches", _CTX_DOC, ["kind"], registry=None,
            multiprocess_mode="liveall",
        )
        self._gc_collections = prometheus_client.Gauge(
            p + "gc_collections", _GC_COLLECTIONS_DOC, ["generation"], registry=None,
            multiprocess_mode="liveall",
        )
        self._gc_collected = prometheus_client.Gauge(
            p + "gc_collected_objects", _GC_COLLECTED_DOC, ["generation"], registry=None,
            multiprocess_mode="liveall",
        )
        self._stats_counter = prometheus_client.Counter(
            prefix + "stats", _STATS_DOC, ["counter"], registry=None
        )
        self._dropped_counter = prometheus_client.Counter(
            prefix + "log_records_dropped", _DROPPED_DOC, registry=None
        )
        self._failed_counter = prometheus_client.Counter(
            prefix + "log_records_failed", _FAILED_DOC, registry=None
        )
        self._published: dict[str, int] = _stats.snapshot()
        self._publish_lock = threading.Lock()
        self._publish_pid = os.getpid()

    def publish(self) -> None:
        """
        Write this process's runtime figures and stats into the multiprocess directory.

        Done every ``publish_interval`` seconds by a daemon thread, and by the scraping worker
        before it aggregates.  A no-op in single-process mode.

        Raises:
            psutil.Error: The process table could not be read (the thread counts it in
                ``obslog.stats()["metrics_errors"]``).
        """
        if not self.multiprocess:
            return
        pid = os.getpid()
        if pid != self._publish_pid:
            # Forked: the lock may have been held at fork time, and the parent's counts are the
            # parent's to publish.
            self._publish_lock = threading.Lock()
            self._publish_pid = pid
            self._published = _stats.snapshot()
        with self._publish_lock:
            reading = self._sampler.sample()
            for suffix, value in _runtime_values(reading, time.time()):
                self._runtime[suffix].set(value)
            self._ctx.labels("voluntary").set(reading["ctx_switches_voluntary"])
            self._ctx.labels("involuntary").set(reading["ctx_switches_involuntary"])
            for gen, value in _generations(reading, "gc_collections"):
                self._gc_collections.labels(gen).set(value)
            for gen, value in _generations(reading, "gc_collected"):
                self._gc_collected.labels(gen).set(value)
            counters = _stats.snapshot()
            before = self._published
            for name, value in counters.items():
                delta = value - before.get(name, 0)
                if delta > 0:
                    self._stats_counter.labels(name).inc(delta)
            delta = _dropped(counters) - _dropped(before)
            if delta > 0:
                self._dropped_counter.inc(delta)
            delta = _failed(counters) - _failed(before)
            if delta > 0:
                self._failed_counter.inc(delta)
            self._published = counters

    # -- listeners ------------------------------------------------------------------------------
    def on_scope_start(self, scope: Any) -> None:
        """Count a request scope as active (the ``on_scope_start`` listener)."""
        if scope.kind == "request":
            self._inflight.add(id(scope))
            self.requests_active.inc()

    def on_scope_end(self, scope: Any) -> None:
        """Record an ended scope (the ``on_scope_end`` listener)."""
        kind = scope.kind
        if kind == "request":
            key = id(scope)
            if key in self._inflight:
                self._inflight.discard(key)
                self.requests_active.dec()
            fields = scope.fields
            raw = (fields.get("method"), fields.get("route"), scope.status)
            child = self._request_children.get(raw)
            if child is None:
                child = self._request_child(raw)
            child.observe((scope.duration_ms or 0.0) / 1000.0)
        timers = scope.timers
        if timers:
            for name, entry in list(timers.items()):
                pair = self._timer_children.get(name)
                if pair is None:
                    label = self._timers(name)
                    pair = (self.timer_duration.labels(label), self.timer_calls.labels(label))
                    if label != OTHER:
                        self._timer_children[name] = pair
                pair[0].observe(entry[1] / 1000.0)
                pair[1].inc(entry[0])
        line_key = (kind, scope.outcome)
        line = self._line_children.get(line_key)
        if line is None:
            kind_label = self._kinds(kind)
            outcome = scope.outcome if scope.outcome in _OUTCOMES else OTHER
            line = self.canonical_lines.labels(kind_label, outcome)
            if kind_label != OTHER:
                self._line_children[line_key] = line
        line.inc()

    def _request_child(self, raw: tuple[Any, Any, Any]) -> Any:
        method, route, status = raw
        route_label = UNMATCHED if route is None or route == "" else self._routes(route)
        child = self.request_duration.labels(
            _method_label(method), route_label, _status_label(status)
        )
        # Raw keys past the route cap are not cached, so the cache stays bounded too.
        if route_label != OTHER and len(self._request_children) < _CHILD_CACHE_MAX:
            self._request_children[raw] = child
        return child

    @property
    def route_count(self) -> int:
        """Distinct route templates admitted as labels so far."""
        return len(self._routes)

    def close(self) -> None:
        """Unsubscribe from the scope listeners, stop publishing and unregister the metrics."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        if self._publisher is not None:
            self._publisher.stop()
            self._publisher = None
        for collector in self._registered:
            with contextlib.suppress(KeyError):
                self.registry.unregister(collector)
        self._registered.clear()


_installed: MetricsInstallation | None = None
_install_lock = threading.Lock()


def install(
    registry: CollectorRegistry | None = None,
    *,
    namespace: str = "obslog",
    max_routes: int = 200,
    max_timers: int = 100,
    max_kinds: int = 20,
    buckets: Iterable[float] = DEFAULT_BUCKETS,
    timer_buckets: Iterable[float] = DEFAULT_TIMER_BUCKETS,
    standard_collectors: bool = True,
    publish_interval: float = 5.0,
) -> MetricsInstallation:
    """
    Register obslog's metrics and record every scope through the scope listeners.

    Call it once at start-up (in each worker, or before the fork: the publisher thread restarts
    in forked children).  A second call returns the existing installation.

    Args:
        registry: Where the metrics go in single-process mode; a new private registry by
            default.  Pass :data:`prometheus_client.REGISTRY` to scrape your own metrics too
            (its standard collectors are already there and are not added twice).
        namespace: Prefix of obslog's metric names.
        max_routes: Distinct route templates kept as labels; later ones become ``"<other>"``.
        max_timers: Distinct timer names kept as labels.
        max_kinds: Distinct scope kinds kept as labels.
        buckets: Request duration buckets, in seconds.
        timer_buckets: Timer duration buckets, in seconds.
        standard_collectors: Add prometheus_client's process, gc and platform collectors
            (single-process mode).
        publish_interval: Multiprocess mode: seconds between two writes of this process's runtime
            figures to the directory.

    Returns:
        The installation; :func:`uninstall` (or its ``close()``) undoes it.

    Raises:
        ValueError: Already installed with another *registry*, or a limit below 1.

    .. versionadded:: 0.1.0
    """
    global _installed  # one installation per process, undone by uninstall()
    from obslog._context import on_scope_end, on_scope_start

    with _install_lock:
        if _installed is not None:
            if registry is not None and registry is not _installed.registry:
                msg = (
                    "obslog metrics are already installed with another registry; "
                    "call uninstall() first"
                )
                raise ValueError(msg)
            return _installed
        multiprocess = multiprocess_dir() is not None
        if multiprocess and not _values_are_multiprocess():
            warnings.warn(
                "PROMETHEUS_MULTIPROC_DIR was set after prometheus_client was imported: this "
                "process's metrics stay in memory and other workers cannot see them. Set it "
                "before the process starts.",
                RuntimeWarning,
                stacklevel=2,
            )
            multiprocess = False
        installation = MetricsInstallation(
            registry if registry is not None else CollectorRegistry(),
            namespace=namespace,
            max_routes=max_routes,
            max_timers=max_timers,
            max_kinds=max_kinds,
            buckets=buckets,
            timer_buckets=timer_buckets,
            standard_collectors=standard_collectors,
            publish_interval=publish_interval,
            multiprocess=multiprocess,
        )
        installation._unsubscribe = [
            on_scope_start(installation.on_scope_start),
            on_scope_end(installation.on_scope_end),
        ]
        _installed = installation
        return installation


def installed() -> MetricsInstallation | None:
    """Return the current installation, or ``None``."""
    return _installed


def uninstall() -> None:
    """Undo :func:`install`: unsubscribe, stop publishing, unregister.  Safe when not installed."""
    global _installed
    with _install_lock:
        installation, _installed = _installed, None
    if installation is not None:
        installation.close()


# -- rendering ------------------------------------------------------------------------------------
_platform_collector: PlatformCollector | None = None


def render_metrics(
    accept: str | None = None, *, registry: CollectorRegistry | None = None
) -> tuple[bytes, str]:
    """
    Render one ``/metrics`` scrape.

    In multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set, no explicit *registry*), dead workers
    are cleaned up first, this process publishes its own runtime figures, and every worker's files
    are aggregated.  Otherwise the installed registry is rendered (or *registry*, or
    :data:`prometheus_client.REGISTRY` when nothing is installed).

    Args:
        accept: The request's ``Accept`` header: OpenMetrics when it asks for
            ``application/openmetrics-text``, else the Prometheus text format 0.0.4.
        registry: Render this registry instead.

    Returns:
        ``(body, content_type)``.

    .. versionadded:: 0.1.0
    """
    global _platform_collector  # built once: its content never changes
    encoder, content_type = choose_encoder(accept or "")
    path = multiprocess_dir() if registry is None else None
    if path is not None and os.path.isdir(path):
        cleanup_dead_processes(path)
        installation = _installed
        if installation is not None and installation.multiprocess:
            try:
                installation.publish()
            except (psutil.Error, OSError):
                _stats.incr("metrics_errors")
        if _platform_collector is None:
            _platform_collector = PlatformCollector(registry=None)
        scrape = CollectorRegistry()
        MultiProcessCollector(scrape, path=path)
        scrape.register(_platform_collector)
        with _dir_lock(path, exclusive=False):
            body = encoder(scrape)
        return body, content_type
    if registry is None:
        installation = _installed
        registry = installation.registry if installation is not None else prometheus_client.REGISTRY
    return encoder(registry), content_type
