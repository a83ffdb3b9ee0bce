"""
Loki: a push handler for obslog lines, and the generator of the recording and alerting rules.

``LokiHandler`` (:mod:`obslog.loki.handler`) is loaded on first use, so importing
:mod:`obslog.loki` costs nothing.  The rules live in :mod:`obslog.loki.rules`, the
``obslog loki`` commands in :mod:`obslog.loki.cli`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any


if TYPE_CHECKING:
    from .handler import LokiHandler

__all__ = ["LokiHandler"]


def __getattr__(name: str) -> Any:
    if name == "LokiHandler":
        from .handler import LokiHandler

        return LokiHandler
    msg = f"module 'obslog.loki' has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    return sorted(__all__)
