"""
obslog: make a Python service observable through its logs.

Timers and ids in a per-request context, attached as JSON fields to every stdlib and structlog line;
one canonical line per request, task and job; runtime state; health tiers; Loki rules.

.. code-block:: python

    import logging, obslog

    obslog.configure(service="shop")
    with obslog.request_scope(method="GET", route="/orders/{id}") as req:
        with obslog.timed("db_query"):
            ...
        logging.getLogger("shop").info("order listed", extra={"order_count": 3})
        req.status = 200
"""

from __future__ import annotations

import contextlib

from typing import Any

from ._config import get_config, reset_defaults
from ._configure import configure, configure_structlog, dict_config
from ._context import (
    Scope,
    bind,
    current_scope,
    in_context,
    on_scope_end,
    on_scope_start,
    request_scope,
    scope,
)
from ._logger import ObslogLogger
from ._stats import snapshot as stats
from ._stdlib import ConsoleFormatter, ContextFilter, JsonFormatter, RenderedLine
from ._timers import timed


__all__ = [
    "ConsoleFormatter",
    "ContextFilter",
    "JsonFormatter",
    "ObslogLogger",
    "RenderedLine",
    "Scope",
    "bind",
    "configure",
    "configure_structlog",
    "current_scope",
    "dict_config",
    "get_config",
    "in_context",
    "on_scope_end",
    "on_scope_start",
    "request_scope",
    "reset_defaults",
    "scope",
    "stats",
    "timed",
]

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("obslog._"):
        with contextlib.suppress(AttributeError, TypeError):  # builtins refuse
            _obj.__module__ = "obslog"
del _name, _obj


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import version

        return version("obslog")
    msg = f"module 'obslog' has no attribute {name!r}"
    raise AttributeError(msg)
