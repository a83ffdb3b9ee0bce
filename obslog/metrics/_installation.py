"""
The installation: obslog's metrics, fed by the scope listeners, and :func:`install` around it.
"""

from __future__ import annotations

import contextlib
import threading
import warnings

from collections.abc import Callable, Iterable
from typing import Any

import prometheus_client

from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

from obslog._context import on_scope_end, on_scope_start
from obslog.runtime import Sampler

from ._collectors import RuntimeCollector, StatsCollector
from ._labels import OTHER, UNMATCHED, LabelCap, method_label, status_label
from ._multiprocess import multiprocess_dir, values_are_multiprocess
from ._publisher import Publisher


__all__ = [
    "DEFAULT_BUCKETS",
    "DEFAULT_TIMER_BUCKETS",
    "MetricsInstallation",
    "install",
    "installed",
    "uninstall",
]

DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
"""Request duration buckets in seconds (prometheus_client's defaults)."""

DEFAULT_TIMER_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
"""Timer duration buckets in seconds: timers measure smaller blocks than whole requests."""

_OUTCOMES = frozenset(("ok", "error", "cancelled"))
_CHILD_CACHE_MAX = 4096


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
        self._routes = LabelCap(max_routes)
        self._timers = LabelCap(max_timers)
        self._kinds = LabelCap(max_kinds)
        self._registered: list[Any] = []
        self._unsubscribe: list[Callable[[], None]] = []
        self._inflight: set[int] = set()
        self._request_children: dict[tuple[Any, ...], Any] = {}
        self._timer_children: dict[str, tuple[Any, Any]] = {}
        self._line_children: dict[tuple[Any, Any], Any] = {}
        self._publisher: Publisher | None = None
        self._samplers: list[Sampler] = []
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
            self._publisher = Publisher(prefix, publish_interval)
        else:
            runtime = RuntimeCollector(prefix + "process_")
            self._samplers.append(runtime.sampler)
            own += [runtime, StatsCollector(prefix)]
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
        if self._publisher is not None:
            self._publisher.start()

    def publish(self) -> None:
        """
        Write this process's runtime figures and stats into the multiprocess directory.

        Done every ``publish_interval`` seconds by a daemon thread, and by the scraping worker
        before it aggregates.  A no-op in single-process mode.

        Raises:
            psutil.Error: The process table could not be read (the thread counts it in
                ``obslog.stats()["metrics_errors"]``).
        """
        if self._publisher is not None:
            self._publisher.publish()

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
            method_label(method), route_label, status_label(status)
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
        """
        Unsubscribe from the scope listeners, stop publishing and unregister the metrics.

        The runtime samplers are closed too, so obslog's gc callback goes with the last one.
        """
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        if self._publisher is not None:
            self._publisher.stop()
            self._publisher = None
        for sampler in self._samplers:
            sampler.close()
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
        if multiprocess and not values_are_multiprocess():
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
