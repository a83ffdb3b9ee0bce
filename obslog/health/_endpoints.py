"""
The framework-neutral core: :class:`HealthEndpoints` turns ``(path, method, accept)`` into
``(status, headers, body)``; every adapter (ASGI, WSGI, aiohttp, Django, the standalone server)
serves what it returns.
"""

from __future__ import annotations

import logging
import threading

from collections.abc import Callable
from typing import Any

from ._readiness import Readiness
from ._report import ReadyReport, error_text


__all__ = ["HealthEndpoints", "MetricsRenderer", "Response"]

Response = tuple[int, list[tuple[str, str]], bytes]
"""``(status, headers, body)`` as returned by the core and served by every adapter."""

MetricsRenderer = Callable[[str | None], tuple[bytes, str]]

TIERS = ("health", "ready", "metrics")

_log = logging.getLogger("obslog.health")

_JSON = "application/json"
_HEALTH_OK: Response = (
    200,
    [("Content-Type", _JSON), ("Cache-Control", "no-store")],
    b'{"status":"ok"}',
)
_HEALTH_FAIL: Response = (
    503,
    [("Content-Type", _JSON), ("Cache-Control", "no-store")],
    b'{"status":"fail","error":"main thread is not alive"}',
)
NOT_FOUND: Response = (404, [("Content-Type", "text/plain; charset=utf-8")], b"not found\n")
_METHODS = "GET, HEAD"


def _default_metrics(accept: str | None) -> tuple[bytes, str]:
    # Imported here: obslog.metrics is heavier than the two other tiers and may go unused.
    from obslog.metrics import render_metrics

    return render_metrics(accept)


class HealthEndpoints:
    """
    The framework-neutral core: maps a request to the three tiers and answers it.

    Every adapter wraps :meth:`handle` (sync servers) or :meth:`handle_async` (event loops).

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        readiness: Readiness | None = None,
        *,
        prefix: str = "",
        health_path: str | None = "/health",
        ready_path: str | None = "/ready",
        metrics_path: str | None = "/metrics",
        metrics: MetricsRenderer | None = None,
    ) -> None:
        """
        Configure the endpoints.

        Args:
            readiness: The checks behind ``/ready``; default an empty registry (always ready).
            prefix: Path prefix for all tiers, e.g. ``"/ops"`` (no trailing slash needed).
            health_path: Path of the liveness tier, None to disable it.
            ready_path: Path of the readiness tier, None to disable it.
            metrics_path: Path of the metrics tier, None to disable it.
            metrics: ``render(accept) -> (body, content_type)``; default
                :func:`obslog.metrics.render_metrics`.

        Raises:
            ValueError: If a path or the prefix does not start with ``/``, or two tiers share
                a path.
        """
        self.readiness = readiness if readiness is not None else Readiness()
        self._render_metrics = metrics if metrics is not None else _default_metrics
        prefix = prefix.rstrip("/")
        if prefix and not prefix.startswith("/"):
            msg = f"prefix must start with '/', got {prefix!r}"
            raise ValueError(msg)
        self.prefix = prefix
        self.routes: dict[str, str] = {}
        tiers = (("health", health_path), ("ready", ready_path), ("metrics", metrics_path))
        for tier, path in tiers:
            if path is None:
                continue
            if not path.startswith("/"):
                msg = f"{tier}_path must start with '/', got {path!r}"
                raise ValueError(msg)
            full = (prefix + path).rstrip("/") or "/"
            if full in self.routes:
                msg = f"{tier}_path {full!r} is already used by /{self.routes[full]}"
                raise ValueError(msg)
            self.routes[full] = tier

    def match(self, path: str) -> str | None:
        """
        Return the tier (``"health"``, ``"ready"``, ``"metrics"``) served at *path*, or None.

        A trailing slash is ignored.
        """
        tier = self.routes.get(path)
        if tier is None and len(path) > 1 and path.endswith("/"):
            tier = self.routes.get(path.rstrip("/"))
        return tier

    def handle(self, path: str, method: str = "GET", accept: str | None = None) -> Response:
        """
        Answer one request (blocking for at most the readiness budget).

        Args:
            path: Request path, without query string.
            method: HTTP method; GET and HEAD are served, others get 405.
            accept: The Accept header, used to negotiate the metrics format.

        Returns:
            ``(status, headers, body)``; 404 for a path that is not a tier.
        """
        tier = self.match(path)
        if tier is None:
            return NOT_FOUND
        return self.respond(tier, method, accept)

    async def handle_async(
        self, path: str, method: str = "GET", accept: str | None = None
    ) -> Response:
        """Like :meth:`handle`, but never blocks the running event loop."""
        tier = self.match(path)
        if tier is None:
            return NOT_FOUND
        return await self.respond_async(tier, method, accept)

    def respond(self, tier: str, method: str = "GET", accept: str | None = None) -> Response:
        """
        Answer a request for *tier* (blocking for at most the readiness budget).

        Args:
            tier: ``"health"``, ``"ready"`` or ``"metrics"``.
            method: HTTP method.
            accept: The Accept header.

        Returns:
            ``(status, headers, body)``.
        """
        if method not in ("GET", "HEAD"):
            return _method_not_allowed()
        if tier == "health":
            response = _liveness()
        elif tier == "ready":
            response = _ready_response(self.readiness.check())
        else:
            response = self._metrics(accept)
        return _head(response) if method == "HEAD" else response

    async def respond_async(
        self, tier: str, method: str = "GET", accept: str | None = None
    ) -> Response:
        """Like :meth:`respond`, but awaits readiness instead of blocking."""
        if tier != "ready":
            return self.respond(tier, method, accept)
        if method not in ("GET", "HEAD"):
            return _method_not_allowed()
        response = _ready_response(await self.readiness.check_async())
        return _head(response) if method == "HEAD" else response

    def _metrics(self, accept: str | None) -> Response:
        try:
            body, content_type = self._render_metrics(accept)
        except Exception as exc:
            _log.exception("rendering /metrics failed")
            text = f"rendering metrics failed: {error_text(exc)}\n".encode()
            return 500, [("Content-Type", "text/plain; charset=utf-8")], text
        return 200, [("Content-Type", content_type), ("Cache-Control", "no-store")], body


def _liveness() -> Response:
    return _HEALTH_OK if threading.main_thread().is_alive() else _HEALTH_FAIL


def _ready_response(report: ReadyReport) -> Response:
    return (
        report.status_code,
        [("Content-Type", _JSON), ("Cache-Control", "no-store")],
        report.body,
    )


def _method_not_allowed() -> Response:
    return (
        405,
        [("Allow", _METHODS), ("Content-Type", "text/plain; charset=utf-8")],
        b"method not allowed\n",
    )


def _head(response: Response) -> Response:
    status, headers, body = response
    return status, [*headers, ("Content-Length", str(len(body)))], b""


def endpoints_for(
    target: HealthEndpoints | Readiness | None, options: dict[str, Any]
) -> HealthEndpoints:
    """
    Return the endpoints an adapter serves: *target* itself, or endpoints built around it.

    Raises:
        TypeError: If *target* is neither, or *options* come with ready-made endpoints.
    """
    if isinstance(target, HealthEndpoints):
        if options:
            msg = f"options {sorted(options)} apply only when no HealthEndpoints is passed"
            raise TypeError(msg)
        return target
    if target is not None and not isinstance(target, Readiness):
        msg = f"expected a Readiness or HealthEndpoints, got {target!r}"
        raise TypeError(msg)
    return HealthEndpoints(target, **options)


def with_length(headers: list[tuple[str, str]], body: bytes) -> list[tuple[str, str]]:
    """Return *headers* with a ``Content-Length`` for *body* (unless they carry one)."""
    if any(k == "Content-Length" for k, _ in headers):
        return headers
    return [*headers, ("Content-Length", str(len(body)))]



def check_tier(tier: str) -> str:
    """
    Return *tier* if it names a tier.

    Raises:
        ValueError: If it is not ``"health"``, ``"ready"`` or ``"metrics"``.
    """
    if tier not in TIERS:
        msg = f"tier must be 'health', 'ready' or 'metrics', got {tier!r}"
        raise ValueError(msg)
    return tier
