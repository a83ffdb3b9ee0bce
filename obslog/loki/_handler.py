"""
Old home of :class:`~obslog.loki.LokiHandler`: a thin re-export of :mod:`obslog.loki.handler`.

Use ``obslog.loki.LokiHandler``.
"""

from __future__ import annotations

from .handler import PUSH_PATH, LokiHandler


__all__ = ["PUSH_PATH", "LokiHandler"]
