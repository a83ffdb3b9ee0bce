"""
aiohttp middleware: one request scope and one canonical ``request`` line per request,
plus a registry of the requests in flight.

    from aiohttp import web
    import obslog.aiohttp

    app = web.Application()
    obslog.aiohttp.setup(app)

:func:`setup` puts the middleware first, so the others run inside the scope,
and hooks ``on_response_prepare`` so streamed responses echo the request id
too.
"""

from __future__ import annotations

import asyncio
import itertools

from collections.abc import Awaitable, Callable
from time import monotonic
from typing import Any, NamedTuple

from obslog._context import request_scope
from obslog._http import (
    DEFAULT_REQUEST_ID_HEADER,
    UNMATCHED_ROUTE,
    check_header_name,
    close_scope,
    mark_cancelled,
    resolve_ids,
    silence_access_logs,
)


try:
    from aiohttp import web
except ImportError:  # pragma: no cover - exercised without the extra
    web = None  # type: ignore[assignment]


__all__ = [
    "ActiveRequests",
    "active_requests",
    "middleware",
    "setup",
    "silence_access_logs",
]

Handler = Callable[[Any], Awaitable[Any]]

# token -> start time (monotonic).  Each entry is removed in a ``finally``, so a
# cancelled handler (client gone, timeout, shutdown) never leaves one behind.
_ACTIVE: dict[int, float] = {}
_tokens = itertools.count()
# Per-request storage (aiohttp >= 3.12 wants typed keys; older ones take strings).
_request_key: Any = getattr(web, "RequestKey", None) if web is not None else None
_SCOPE_KEY: Any = _request_key("obslog_scope", object) if _request_key else "obslog_scope"
_SENT_STATUS_KEY: Any = (
    _request_key("obslog_sent_status", int) if _request_key else "obslog_sent_status"
)


class ActiveRequests(NamedTuple):
    """Requests in flight in this process, across every app using the middleware."""

    count: int  # type: ignore[assignment]  # shadows tuple.count on purpose
    """How many requests are being handled now."""
    oldest_age_s: float
    """Age in seconds of the oldest one; ``0.0`` when there is none."""


def active_requests() -> ActiveRequests:
    """
    Return how many requests are in flight and how old the oldest one is.

    Cheap enough for every ``/metrics`` scrape: it reads one dict, never
    ``asyncio.all_tasks()``.

    Returns:
        An :class:`ActiveRequests` ``(count, oldest_age_s)``.

    .. versionadded:: 0.1.0
    """
    starts = list(_ACTIVE.values())  # one C-level copy: safe against other threads
    if not starts:
        return ActiveRequests(0, 0.0)
    return ActiveRequests(len(starts), max(monotonic() - min(starts), 0.0))


def middleware(
    *,
    request_id_header: str = DEFAULT_REQUEST_ID_HEADER,
    echo_request_id: bool = True,
    reraise: bool = False,
) -> Any:
    """
    Return an aiohttp middleware that logs each request as one canonical line.

    The request id comes from *request_id_header* when valid (else a new
    one) and is echoed on the response; trace ids come from the active
    OpenTelemetry span or a valid ``traceparent``.  The route is the matched
    resource's canonical template (``/orders/{id}``), or ``"<unmatched>"``, on every
    line of the request (aiohttp matches the route before the middlewares run).
    A raised ``web.HTTPException`` is a normal response with its status.  A
    handler that is cancelled, or whose client has gone by the time it
    returns, ends with ``outcome="cancelled"``.

    Args:
        request_id_header: Header to read the request id from and echo it in.
        echo_request_id: Add the request id to the response headers.
        reraise: Let an unhandled exception propagate to aiohttp, which
            answers 500 and logs ``Error handling request`` outside the
            request's scope.  By default the middleware answers the 500
            itself; the exception is on the canonical line.

    Returns:
        A new-style (``@web.middleware``) middleware.

    Raises:
        ImportError: aiohttp is not installed.
        ValueError: *request_id_header* is not a valid header name.

    .. versionadded:: 0.1.0
    """
    if web is None:
        msg = "obslog.aiohttp needs aiohttp: pip install 'obslog[aiohttp]'"
        raise ImportError(msg) from None
    header = check_header_name(request_id_header)

    @web.middleware
    async def obslog_middleware(request: Any, handler: Handler) -> Any:
        headers = request.headers
        ids = resolve_ids(headers.get(header), headers.get("traceparent"))
        token = next(_tokens)
        _ACTIVE[token] = monotonic()
        http_exc = None
        try:
            # aiohttp resolved the route before calling the middlewares: bind it now, so the
            # handler's own lines carry it.
            route = _route(request)
            with request_scope(method=request.method, route=route, **ids.scope_fields()) as scope:
                request[_SCOPE_KEY] = scope
                try:
                    response = await handler(request)
                except web.HTTPException as exc:
                    # Raised responses are responses: not an error of the scope.
                    http_exc = exc
                    response = exc
                except BaseException as exc:
                    if _client_gone(request):
                        mark_cancelled(scope, request.get(_SENT_STATUS_KEY))
                    else:
                        status = request.get(_SENT_STATUS_KEY)
                        if isinstance(exc, asyncio.TimeoutError) and status is None:
                            status = 504  # what aiohttp answers
                        close_scope(scope, exc, status, started=status is not None)
                    raise
                if echo_request_id and not response.prepared:
                    response.headers[header] = scope.request_id
                if not response.prepared and _client_gone(request):
                    # aiohttp would now write the response to a closed transport.
                    mark_cancelled(scope, response.status)
                else:
                    close_scope(scope, None, response.status, started=True)
        except (web.HTTPException, asyncio.TimeoutError):
            raise
        except Exception:
            gone = _client_gone(request)
            if reraise or (request.get(_SENT_STATUS_KEY) is not None and not gone):
                # A streamed response already started cannot become a 500.
                raise
            # For a gone client aiohttp's write of this response fails quietly.
            response = web.Response(
                status=500,
                text="500 Internal Server Error\n\nServer got itself in trouble",
            )
            if echo_request_id:
                response.headers[header] = ids.request_id
            return response
        finally:
            del _ACTIVE[token]
        if http_exc is not None:
            raise http_exc
        return response

    return obslog_middleware


def setup(
    app: Any,
    *,
    request_id_header: str = DEFAULT_REQUEST_ID_HEADER,
    echo_request_id: bool = True,
    reraise: bool = False,
) -> None:
    """
    Install :func:`middleware` as the first middleware of *app*.

    Also hooks ``app.on_response_prepare``: a response the handler streams
    itself (``await resp.prepare(request)``) gets the request-id header, and
    a client that leaves mid-stream is logged with the status already sent.
    Call it before the app starts.

    Args:
        app: The :class:`aiohttp.web.Application`.
        request_id_header: Header to read the request id from and echo it in.
        echo_request_id: Add the request id to the response headers.
        reraise: See :func:`middleware`.

    Raises:
        ImportError: aiohttp is not installed.
        ValueError: *request_id_header* is not a valid header name.

    .. versionadded:: 0.1.0
    """
    mw = middleware(
        request_id_header=request_id_header,
        echo_request_id=echo_request_id,
        reraise=reraise,
    )

    async def on_prepare(request: Any, response: Any) -> None:
        scope = request.get(_SCOPE_KEY)
        if scope is None:
            return
        request[_SENT_STATUS_KEY] = response.status
        if echo_request_id and request_id_header not in response.headers:
            response.headers[request_id_header] = scope.request_id

    app.middlewares.insert(0, mw)
    app.on_response_prepare.append(on_prepare)


def _route(request: Any) -> str:
    try:
        resource = request.match_info.route.resource
    except AttributeError:
        return UNMATCHED_ROUTE
    if resource is None:
        return UNMATCHED_ROUTE
    return resource.canonical or UNMATCHED_ROUTE


def _client_gone(request: Any) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


# --------------------------------------------------------------------------- health tiers
# The /health, /ready and /metrics routes for aiohttp apps; the core lives in obslog.health.

from obslog.health import HealthEndpoints, Readiness  # noqa: E402 - kept with the routes
from obslog.health._endpoints import check_tier, endpoints_for  # noqa: E402


__all__ += ["add_health_routes", "make_health_handler"]


def make_health_handler(
    target: HealthEndpoints | Readiness | None = None, *, tier: str, **options: Any
) -> Callable[[Any], Awaitable[Any]]:
    """
    Return an aiohttp request handler that serves one tier.

    ``/ready`` is awaited on the server's event loop and never blocks it.

    Args:
        target: A :class:`~obslog.health.Readiness` or :class:`~obslog.health.HealthEndpoints`.
        tier: ``"health"``, ``"ready"`` or ``"metrics"``.
        **options: Keyword arguments of :class:`~obslog.health.HealthEndpoints`.

    Returns:
        ``async def handler(request) -> web.Response``.

    Raises:
        ImportError: If aiohttp is not installed.
        ValueError: On an unknown tier.

    .. versionadded:: 0.2.0 (before: ``obslog.health.make_aiohttp_handler``, still available)
    """
    if web is None:
        msg = "obslog.aiohttp needs aiohttp: pip install 'obslog[aiohttp]'"
        raise ImportError(msg)
    check_tier(tier)
    endpoints = endpoints_for(target, options)

    async def handler(request: Any) -> Any:
        status, headers, body = await endpoints.respond_async(
            tier, request.method, request.headers.get("Accept")
        )
        return web.Response(status=status, headers=dict(headers), body=body)

    return handler


def add_health_routes(
    app: Any, target: HealthEndpoints | Readiness | None = None, **options: Any
) -> HealthEndpoints:
    """
    Add GET (and HEAD) routes for the three tiers to an ``aiohttp.web.Application``.

    Example::

        app = web.Application()
        obslog.aiohttp.setup(app)
        obslog.aiohttp.add_health_routes(app, readiness, prefix="/ops")

    Args:
        app: The application (or a sub-application to mount with ``add_subapp``).
        target: A :class:`~obslog.health.Readiness` or :class:`~obslog.health.HealthEndpoints`.
        **options: Keyword arguments of :class:`~obslog.health.HealthEndpoints` (``prefix``,
            ``*_path``, ...).

    Returns:
        The endpoints the routes serve.

    Raises:
        ImportError: If aiohttp is not installed.

    .. versionadded:: 0.2.0 (before: ``obslog.health.add_aiohttp_routes``, still available)
    """
    endpoints = endpoints_for(target, options)
    for path, tier in endpoints.routes.items():
        app.router.add_get(path, make_health_handler(endpoints, tier=tier))
    return endpoints
