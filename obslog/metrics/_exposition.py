"""
Rendering one ``/metrics`` scrape, in single-process and multiprocess mode.
"""

from __future__ import annotations

import os

import prometheus_client
import psutil

from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.registry import CollectorRegistry

from obslog import _stats

from ._installation import installed
from ._multiprocess import cleanup_dead_processes, dir_lock, multiprocess_dir


__all__ = ["render_metrics"]

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
        installation = installed()
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
        with dir_lock(path, exclusive=False):
            body = encoder(scrape)
        return body, content_type
    if registry is None:
        installation = installed()
        registry = installation.registry if installation is not None else prometheus_client.REGISTRY
    return encoder(registry), content_type
