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

The package holds one concern per module: bounded labels (``_labels``), the installation and its
listeners (``_installation``), scrape-time collectors (``_collectors``), the multiprocess
directory (``_multiprocess``), the multiprocess publisher thread (``_publisher``) and rendering
(``_exposition``).  Every public name imports from :mod:`obslog.metrics`.
"""

from __future__ import annotations

from ._exposition import render_metrics
from ._installation import (
    DEFAULT_BUCKETS,
    DEFAULT_TIMER_BUCKETS,
    MetricsInstallation,
    install,
    installed,
    uninstall,
)
from ._labels import NONE as NONE
from ._labels import OTHER as OTHER
from ._labels import UNMATCHED as UNMATCHED
from ._labels import status_label as _status_label  # noqa: F401 - used by tests and benchmarks
from ._multiprocess import cleanup_dead_processes, mark_process_dead, multiprocess_dir


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

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("obslog.metrics._"):
        _obj.__module__ = __name__
del _name, _obj
