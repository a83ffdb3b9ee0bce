"""
The three HTTP tiers: ``/health`` (liveness), ``/ready`` (readiness) and ``/metrics``.

One framework-neutral core, :class:`HealthEndpoints`, turns ``(path, method, accept)`` into
``(status, headers, body)``.  Each framework module serves it: :func:`obslog.asgi.make_health_app`,
:func:`obslog.wsgi.make_health_app` (and :func:`obslog.flask.add_health`),
:func:`obslog.aiohttp.add_health_routes` and :func:`obslog.django.health_urls`; :func:`serve`
runs a standalone stdlib server on a side port for processes that have no HTTP server of their
own.

* ``/health`` answers from memory: 200 while the main thread is alive, 503 otherwise.  No I/O.
* ``/ready`` runs the checks registered on a :class:`Readiness` concurrently, each bounded by its
  own timeout and all of them by one budget (1 s by default), and answers 200 when every
  required check passes, 503 otherwise, with a JSON body per check.  Results are cached for a
  short TTL and concurrent probes (threads or coroutines) share one evaluation.
* ``/metrics`` renders the Prometheus exposition through :mod:`obslog.metrics`.

The adapters' earlier names here (``make_asgi_app``, ``make_wsgi_app``, ``add_aiohttp_routes``,
``make_aiohttp_handler``) keep working; they are loaded on first use, so importing this module
never imports a web framework.
"""

from __future__ import annotations

import importlib

from typing import Any

from ._endpoints import HealthEndpoints, MetricsRenderer, Response
from ._readiness import DEFAULT_BUDGET, DEFAULT_TTL, CheckFunc, Readiness
from ._report import CheckResult, ReadyReport
from ._server import HealthServer, serve


__all__ = [
    "DEFAULT_BUDGET",
    "DEFAULT_TTL",
    "CheckFunc",
    "CheckResult",
    "HealthEndpoints",
    "HealthServer",
    "MetricsRenderer",
    "Readiness",
    "ReadyReport",
    "Response",
    "add_aiohttp_routes",
    "make_aiohttp_handler",
    "make_asgi_app",
    "make_wsgi_app",
    "serve",
]

# Name here -> (framework module, name there).
_ADAPTERS = {
    "add_aiohttp_routes": ("obslog.aiohttp", "add_health_routes"),
    "make_aiohttp_handler": ("obslog.aiohttp", "make_health_handler"),
    "make_asgi_app": ("obslog.asgi", "make_health_app"),
    "make_wsgi_app": ("obslog.wsgi", "make_health_app"),
}

for _obj in (CheckResult, HealthEndpoints, HealthServer, Readiness, ReadyReport, serve):
    _obj.__module__ = __name__
del _obj


def __getattr__(name: str) -> Any:
    try:
        module, attr = _ADAPTERS[name]
    except KeyError:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg) from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_ADAPTERS})
