"""
WSGI middleware: one request scope and one canonical ``request`` line per request.

Works with any WSGI app.  The scope stays open until the server closes the
response iterable, so a streamed body is timed to its last byte and lines
written while it streams carry the request's ids.  For Flask,
:func:`obslog.flask.init_app` installs this middleware and names the route.

    from obslog.wsgi import ObslogMiddleware

    application = ObslogMiddleware(application)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any

from obslog._context import request_scope
from obslog._http import (
    DEFAULT_REQUEST_ID_HEADER,
    UNMATCHED_ROUTE,
    check_header_name,
    close_scope,
    mark_cancelled,
    resolve_ids,
    silence_access_logs,
    wsgi_environ_key,
)


__all__ = ["ObslogMiddleware", "silence_access_logs"]

StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType]


class ObslogMiddleware:
    """
    Open :func:`obslog.request_scope` around every request of a WSGI app.

    The request id comes from *request_id_header* when valid (else a new
    one), trace ids from the active OpenTelemetry span or a valid
    ``traceparent``.  The route is whatever the app bound on the scope
    (``obslog.bind(route=...)``, as :mod:`obslog.flask` does), else *route*
    called with the environ (before the app runs, so the app's lines carry
    it; again at the end if it had no answer), else ``"<unmatched>"``.  The
    canonical line is
    written when the server closes the response iterable; a server that
    closes it before the body was consumed (the client went away) gives
    ``outcome="cancelled"``; an exception from the app gives ``status=500``
    and the exception fields, and propagates.  An app that handles an
    exception itself (answering 500) can put it in
    ``environ["obslog.exception"]`` to have it on the canonical line.

    Args:
        app: The WSGI application.
        request_id_header: Header to read the request id from and echo it in.
        echo_request_id: Add the request id to the response headers.
        route: Optional ``environ -> template | None`` for apps that do not
            bind their route.

    Raises:
        ValueError: *request_id_header* is not a valid header name.

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_echo", "_environ_key", "_header", "_route", "app")

    def __init__(
        self,
        app: WSGIApp,
        *,
        request_id_header: str = DEFAULT_REQUEST_ID_HEADER,
        echo_request_id: bool = True,
        route: Callable[[dict[str, Any]], str | None] | None = None,
    ) -> None:
        self.app = app
        self._header = check_header_name(request_id_header)
        self._environ_key = wsgi_environ_key(request_id_header)
        self._echo = echo_request_id
        self._route = route

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Serve one request."""
        ids = resolve_ids(environ.get(self._environ_key), environ.get("HTTP_TRACEPARENT"))
        scope = request_scope(
            method=environ.get("REQUEST_METHOD"), route=None, **ids.scope_fields()
        )
        exchange = _Exchange(self, scope, environ)
        header = (self._header, ids.request_id)
        if self._route is not None:
            # Known from the environ alone: bound before the app runs, so its lines carry it.
            exchange.bind_route()

        def start_response_wrapper(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], object]:
            exchange.status = _status_code(status)
            if self._echo:
                lowered = self._header.lower()
                headers = [h for h in headers if h[0].lower() != lowered]
                headers.append(header)
            return start_response(status, headers, exc_info)

        scope.__enter__()
        try:
            iterable = self.app(environ, start_response_wrapper)
        except BaseException as exc:
            exchange.finish(exc)
            raise
        return _ClosingIterable(iterable, exchange)


class _Exchange:
    """One request in flight: its scope and what the server has seen so far."""

    __slots__ = ("done", "environ", "middleware", "scope", "status")

    def __init__(self, middleware: ObslogMiddleware, scope: Any, environ: dict[str, Any]):
        self.middleware = middleware
        self.scope = scope
        self.environ = environ
        self.status: int | None = None
        self.done = False

    def route(self) -> str | None:
        """Return what the middleware's route callable says, ``None`` if nothing (or it raised)."""
        if self.middleware._route is None:
            return None
        try:
            route = self.middleware._route(self.environ)
        except Exception:  # a broken route callable must not break the request
            return None
        return route if isinstance(route, str) and route else None

    def bind_route(self) -> None:
        """Bind the route now if the route callable knows it from the environ."""
        route = self.route()
        if route is not None:
            self.scope.bind(route=route)

    def finish(self, exc: BaseException | None, *, cancelled: bool = False) -> None:
        """Fill in route and status, then exit the scope (writes the canonical line)."""
        if self.done:
            return
        self.done = True
        scope = self.scope
        if scope.fields.get("route") is None:
            scope.bind(route=self.route() or UNMATCHED_ROUTE)
        if exc is None:
            handled = self.environ.get("obslog.exception")
            if isinstance(handled, BaseException):
                exc = handled
        if cancelled:
            mark_cancelled(scope, self.status)
        else:
            close_scope(scope, exc, self.status, started=self.status is not None)
        if exc is None:
            scope.__exit__(None, None, None)
        else:
            scope.__exit__(type(exc), exc, exc.__traceback__)


class _ClosingIterable:
    """Pass the body through; the server's ``close()`` ends the scope."""

    __slots__ = ("_error", "_exchange", "_exhausted", "_iterable")

    def __init__(self, iterable: Iterable[bytes], exchange: _Exchange) -> None:
        self._iterable = iterable
        self._exchange = exchange
        self._exhausted = False
        self._error: BaseException | None = None

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._iterable
        except GeneratorExit:
            raise
        except BaseException as exc:
            self._error = exc
            raise
        self._exhausted = True

    def close(self) -> None:
        """Close the app's iterable, then write the canonical line."""
        error: BaseException | None = None
        try:
            close = getattr(self._iterable, "close", None)
            if close is not None:
                close()
        except BaseException as exc:
            error = exc
            raise
        finally:
            error = self._error or error
            self._exchange.finish(error, cancelled=error is None and not self._exhausted)


def _status_code(status: str) -> int | None:
    try:
        return int(status.split(" ", 1)[0])
    except ValueError:
        return None


# --------------------------------------------------------------------------- health tiers
# The /health, /ready and /metrics mount for WSGI apps; the core lives in obslog.health.

import http  # noqa: E402 - kept with the mount

from obslog.health import HealthEndpoints, Readiness  # noqa: E402
from obslog.health._endpoints import NOT_FOUND, endpoints_for, with_length  # noqa: E402


__all__ += ["make_health_app"]


def make_health_app(
    target: HealthEndpoints | Readiness | None = None,
    *,
    app: Callable[..., Iterable[bytes]] | None = None,
    **options: Any,
) -> Callable[..., Iterable[bytes]]:
    """
    Return a WSGI app serving the three tiers.

    Mount it (werkzeug ``DispatcherMiddleware``) or wrap an app
    (``make_health_app(readiness, app=ObslogMiddleware(wsgi_app))``): requests for other paths
    then go to *app*, so probes never reach the app or its request log.  Paths are matched
    against ``PATH_INFO``.  For Flask, :func:`obslog.flask.add_health` does the wrapping.

    Args:
        target: A :class:`Readiness` (*options* build the endpoints) or a
            :class:`HealthEndpoints`.
        app: WSGI app that receives every other request.
        **options: Keyword arguments of :class:`HealthEndpoints`.

    Returns:
        The WSGI application.

    .. versionadded:: 0.2.0 (before: ``obslog.health.make_wsgi_app``, still available)
    """
    endpoints = endpoints_for(target, options)

    def health_wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        tier = endpoints.match(environ.get("PATH_INFO") or "/")
        if tier is None and app is not None:
            return app(environ, start_response)
        if tier is None:
            status, headers, body = NOT_FOUND
        else:
            status, headers, body = endpoints.respond(
                tier, environ.get("REQUEST_METHOD", "GET"), environ.get("HTTP_ACCEPT")
            )
        start_response(f"{status} {http.HTTPStatus(status).phrase}", with_length(headers, body))
        return [body]

    health_wsgi.endpoints = endpoints  # type: ignore[attr-defined]
    return health_wsgi
