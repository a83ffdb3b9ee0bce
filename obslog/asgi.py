"""
ASGI middleware: one request scope and one canonical ``request`` line per HTTP request.

Pure ASGI (no ``BaseHTTPMiddleware``), so streaming, background tasks and
cancellation behave exactly as without it.  Works with any ASGI app;
Starlette and FastAPI also give the route template.

    from fastapi import FastAPI
    from obslog.asgi import ObslogMiddleware

    app = FastAPI()
    ...
    application = ObslogMiddleware(app)   # serve this: uvicorn main:application

Wrapping the whole app (rather than ``app.add_middleware``) puts the scope
around Starlette's ``ServerErrorMiddleware``, so the lines written by the
500 handler carry the request's ids too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from time import perf_counter
from typing import Any

from obslog import _stats
from obslog._context import Scope, request_scope
from obslog._http import (
    DEFAULT_REQUEST_ID_HEADER,
    UNMATCHED_ROUTE,
    check_header_name,
    close_scope,
    mark_cancelled,
    resolve_ids,
    silence_access_logs,
)


__all__ = ["ObslogMiddleware", "silence_access_logs"]

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]


class _Exchange:
    """What the middleware saw of one request/response exchange."""

    __slots__ = ("complete", "completed_at", "disconnected", "gone_status", "started", "status")

    def __init__(self) -> None:
        self.status: int | None = None
        self.started = False
        self.complete = False
        # perf_counter() when the last body byte was handed to the server.
        self.completed_at = 0.0
        # Set only when the client left before the response was complete.
        self.disconnected = False
        self.gone_status: int | None = None

    def client_gone(self) -> None:
        """Record that the client disconnected before the response was complete."""
        if not self.disconnected and not self.complete:
            self.disconnected = True
            self.gone_status = self.status


class ObslogMiddleware:
    """
    Open :func:`obslog.request_scope` around every HTTP request of an ASGI app.

    Per request: the request id comes from the *request_id_header* if valid
    (else a new one), trace ids from the active OpenTelemetry span or a valid
    ``traceparent``; the route is Starlette's matched route template
    with its mounts' templates, bound as soon as the router has matched (so
    lines written in the handler carry it too), or ``"<unmatched>"``.  The
    canonical line is written when the app returns; ``duration_ms`` ends at
    the last body byte.  Work the app does after it (Starlette background
    tasks, which run inside the scope, their lines and timers included) is
    reported as ``background_ms`` when it takes 1 ms or more.  A client that
    disconnects before the response completed, and a cancelled request, end
    with ``outcome="cancelled"``; an exception with ``status=500`` and the
    exception fields.  ``websocket`` and ``lifespan`` pass through untouched.

    Args:
        app: The ASGI application.
        request_id_header: Header to read the request id from and echo it in.
        echo_request_id: Add the request id to the response headers.
        reraise: Re-raise an exception even after a complete response was
            sent.  By default such an exception (Starlette sends its 500
            first, then re-raises) ends at this middleware: it is on the
            canonical line, and the server does not log it a second time
            without the request's ids.  An exception before the response
            started always propagates, so outer handlers still answer.

    Raises:
        ValueError: *request_id_header* is not a valid header name.

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_echo", "_header", "_header_bytes", "_reraise", "app")

    def __init__(
        self,
        app: ASGIApp,
        *,
        request_id_header: str = DEFAULT_REQUEST_ID_HEADER,
        echo_request_id: bool = True,
        reraise: bool = False,
    ) -> None:
        self.app = app
        self._header = check_header_name(request_id_header)
        self._header_bytes = request_id_header.lower().encode("ascii")
        self._echo = echo_request_id
        self._reraise = reraise

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        """Serve one ASGI connection (only ``http`` ones are instrumented)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = traceparent = None
        for name, value in scope.get("headers") or ():
            if name == self._header_bytes and request_id is None:
                request_id = value
            elif name == b"traceparent" and traceparent is None:
                traceparent = value
        ids = resolve_ids(request_id, traceparent)
        root_path = scope.get("root_path", "")
        exchange = _Exchange()
        echo = (self._header_bytes, ids.request_id.encode("ascii"))

        async def receive_wrapper() -> Message:
            message = await receive()
            if message["type"] == "http.disconnect":
                exchange.client_gone()
            return message

        async def send_wrapper(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                exchange.status = message["status"]
                exchange.started = True
                if self._echo:
                    message = dict(message)
                    message["headers"] = [
                        *(h for h in message.get("headers", ()) if h[0].lower() != echo[0]),
                        echo,
                    ]
            elif kind == "http.response.body" and not message.get("more_body"):
                exchange.complete = True
            try:
                await send(message)
            except OSError:
                # Servers implementing ASGI spec 2.4 raise on a gone client.
                exchange.client_gone()
                raise
            if exchange.complete and not exchange.completed_at:
                exchange.completed_at = perf_counter()

        try:
            async with request_scope(
                method=scope.get("method"), route=None, **ids.scope_fields()
            ) as req:
                routed = _RoutedScope(scope, req)
                try:
                    await self.app(routed, receive_wrapper, send_wrapper)
                except BaseException as exc:
                    _finish(req, routed, root_path, exchange)
                    if exchange.disconnected:
                        mark_cancelled(req, exchange.gone_status)
                    else:
                        close_scope(req, exc, exchange.status, started=exchange.started)
                    raise
                _finish(req, routed, root_path, exchange)
                if exchange.disconnected:
                    mark_cancelled(req, exchange.gone_status)
                else:
                    close_scope(req, None, exchange.status, started=exchange.started)
        except Exception:
            if self._reraise or not (exchange.complete or exchange.disconnected):
                raise


_BACKGROUND_MIN_S = 0.001


def _finish(req: Scope, routed: _RoutedScope, root_path: str, exchange: _Exchange) -> None:
    """Name the route (if routing never did) and end the duration at the response's last byte."""
    if routed.bound is None:
        try:
            included = _included_path(routed, None)
            route = (
                routed.prefix + included
                if included is not None
                else _route_template(routed, root_path)
            )
        except Exception:  # a route object that breaks must not break the request
            _stats.incr("route_errors")
            route = UNMATCHED_ROUTE
        req.bind(route=route)
    if exchange.completed_at:
        after = perf_counter() - exchange.completed_at
        if after >= _BACKGROUND_MIN_S:
            # Background tasks (and anything else the app did after the last byte): the client
            # did not wait for it, so it is not in duration_ms.
            req.end = exchange.completed_at
            req.bind(background_ms=round(after * 1000.0, 3))


_mount_types: tuple[type, ...] | None = None


def _starlette_types() -> tuple[type, ...]:
    """Return ``(Mount, Host)`` (imported on first use: only Starlette routers set a route)."""
    global _mount_types
    if _mount_types is None:
        try:
            from starlette.routing import Host, Mount
        except ImportError:  # pragma: no cover - a route without Starlette
            _mount_types = ()
        else:
            _mount_types = (Mount, Host)
    return _mount_types


def _is_mount(route: Any) -> bool:
    types = _starlette_types()
    return bool(types) and isinstance(route, types[0])


def _is_host(route: Any) -> bool:
    types = _starlette_types()
    return bool(types) and isinstance(route, types[1])


class _RoutedScope(dict[str, Any]):
    """
    The ASGI scope handed to the app: binds ``route`` as soon as a router has matched.

    Starlette's and FastAPI's routers write what they matched into the scope (``route``,
    ``root_path`` for a mount, ``endpoint``) before they call the endpoint; this dict watches
    those writes, so the lines written inside the handler carry the route template.  Mount
    prefixes are kept as templates (``/tenants/{tenant}``), never as the values of a request.
    Per request this costs a few Python calls; the per-line path is unchanged (the route is an
    ordinary bound field).
    """

    __slots__ = ("_owner", "_prefix", "_req", "_used", "bound")

    def __init__(self, scope: MutableMapping[str, Any], req: Scope) -> None:
        super().__init__(scope)
        self._req = req
        self._prefix = ""
        self._owner: Any = None
        self._used: Any = None  # the last route object consumed (a mount, a host)
        self.bound: str | None = None

    def __setitem__(self, key: str, value: Any) -> None:
        dict.__setitem__(self, key, value)
        if key == "route":
            try:
                if not _is_mount(value) and value is not self._used and "endpoint" in self:
                    self._leaf()
            except Exception:  # naming the route must never break the request
                _stats.incr("route_errors")

    def update(self, *args: Any, **kwargs: Any) -> None:
        child = dict(*args, **kwargs)
        dict.update(self, child)
        try:
            if "root_path" in child:
                self._mount(child)
            elif "endpoint" in child:
                self._leaf()
        except Exception:  # naming the route must never break the request
            _stats.incr("route_errors")

    @property
    def prefix(self) -> str:
        """The templates of the mounts matched so far, joined."""
        return self._prefix

    def _routes(self) -> Any:
        owner = self._owner
        if owner is None:
            owner = self.get("router") or self.get("app")
        return getattr(owner, "routes", None) or ()

    def _mount(self, child: dict[str, Any]) -> None:
        route = self.get("route")
        if not _is_mount(route) or route is self._used:
            # FastAPI's router does not write the mount it matched: find it.
            endpoint = child.get("endpoint")
            route = next(
                (r for r in self._routes() if _is_mount(r) and r.app is endpoint), None
            )
        if route is None:
            self._owner = child.get("endpoint")
            return
        self._used = route
        self._owner = route
        self._prefix += route.path_format.removesuffix("/{path}")
        # Until an inner router matches: a mounted app that is not a router.
        self._bind(self._prefix + "/{path}")

    def _leaf(self) -> None:
        route = self.get("route")
        if route is None or route is self._used or _is_mount(route):
            # FastAPI's router writes no route for plain Starlette routes (/docs, /openapi.json).
            route = self._find()
            if route is None:
                return
        if _is_host(route):
            self._used = self._owner = route
            return
        path = _included_path(self, route) or getattr(route, "path_format", None)
        if isinstance(path, str):
            self._bind(self._prefix + path)

    def _find(self) -> Any:
        partial = None
        for route in self._routes():
            if _is_mount(route) or not hasattr(route, "matches"):
                continue
            match = route.matches(self)[0]
            if match.name == "FULL":
                return route
            if match.name == "PARTIAL" and partial is None:
                partial = route
        return partial

    def _bind(self, route: str) -> None:
        if route != self.bound:
            self.bound = route
            self._req.bind(route=route)


def _included_path(scope: MutableMapping[str, Any], route: Any) -> str | None:
    """
    Return the full template of a route reached through ``include_router(prefix=...)``.

    With *route* ``None`` (at the end of the request), whatever route FastAPI recorded.
    """
    # FastAPI >= 0.12x keeps included routes unprefixed and records the route it chose, with
    # its prefixed template, in scope["fastapi"]; older versions prefix the route itself.
    fastapi_scope = scope.get("fastapi")
    if not isinstance(fastapi_scope, dict):
        return None
    context = fastapi_scope.get("effective_route_context")
    if context is None or (
        route is not None
        and route is not getattr(context, "original_route", None)
        and route is not getattr(context, "starlette_route", None)
    ):
        return None
    path = getattr(getattr(context, "starlette_route", None), "path_format", None) or getattr(
        context, "path_format", None
    )
    return path if isinstance(path, str) else None


def _route_template(scope: MutableMapping[str, Any], root_path: str) -> str:
    """Return the matched route's template (with mount prefixes), or the unmatched value."""
    route = scope.get("route")
    if route is None:
        return UNMATCHED_ROUTE
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not isinstance(path, str):
        return UNMATCHED_ROUTE
    current_root = scope.get("root_path", "")
    prefix = current_root[len(root_path) :] if current_root.startswith(root_path) else ""
    if hasattr(route, "routes") and hasattr(route, "app"):
        # A Mount whose app is not a router (static files, a foreign ASGI app):
        # Starlette leaves the Mount itself in scope["route"].
        return (prefix or path).rstrip("/") + "/{path}"
    return prefix.rstrip("/") + path if prefix else path


# --------------------------------------------------------------------------- health tiers
# The /health, /ready and /metrics mount for ASGI apps; the core lives in obslog.health.

from obslog.health import HealthEndpoints, Readiness  # noqa: E402 - kept with the mount
from obslog.health._endpoints import NOT_FOUND, endpoints_for, with_length  # noqa: E402


__all__ += ["make_health_app"]


def make_health_app(
    target: HealthEndpoints | Readiness | None = None,
    *,
    app: Callable[..., Awaitable[None]] | None = None,
    **options: Any,
) -> Callable[..., Awaitable[None]]:
    """
    Return an ASGI app serving the three tiers.

    Mount it (``fastapi_app.mount("/ops", make_health_app(readiness))``) or wrap an app
    (``make_health_app(readiness, app=ObslogMiddleware(asgi_app))``): requests for other paths
    then go to *app*, so probes never reach the app or its request log.  A mount's
    ``root_path`` is honoured.

    Args:
        target: A :class:`Readiness` (*options* build the endpoints) or a
            :class:`HealthEndpoints`.
        app: ASGI app that receives every other request (and lifespan events).
        **options: Keyword arguments of :class:`HealthEndpoints` (``prefix``, ``*_path``,
            ``metrics``).

    Returns:
        The ASGI application.

    .. versionadded:: 0.2.0 (before: ``obslog.health.make_asgi_app``, still available)
    """
    endpoints = endpoints_for(target, options)

    async def health_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http":
            path = scope.get("path") or "/"
            root = scope.get("root_path") or ""
            if root and path.startswith(root):
                path = path[len(root) :] or "/"
            tier = endpoints.match(path)
            if tier is None and app is not None:
                await app(scope, receive, send)
                return
            if tier is None:
                status, headers, body = NOT_FOUND
            else:
                accept = None
                for key, value in scope.get("headers") or ():
                    if key == b"accept":
                        accept = value.decode("latin-1")
                        break
                status, headers, body = await endpoints.respond_async(tier, scope["method"], accept)
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (k.lower().encode("latin-1"), v.encode("latin-1"))
                        for k, v in with_length(headers, body)
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
        elif app is not None:
            await app(scope, receive, send)
        elif kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    health_asgi.endpoints = endpoints  # type: ignore[attr-defined]
    return health_asgi
