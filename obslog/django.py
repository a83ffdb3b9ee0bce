"""
Django middleware: one request scope and one canonical ``request`` line per request.

Put it first in ``MIDDLEWARE`` so that everything after it, Django's own
``Internal Server Error`` line included, runs inside the scope:

    MIDDLEWARE = ["obslog.django.ObslogMiddleware", ...]

Optional settings: ``OBSLOG_REQUEST_ID_HEADER`` (default ``"X-Request-ID"``),
``OBSLOG_ECHO_REQUEST_ID`` (default ``True``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from obslog._context import Scope, request_scope
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


try:
    from asgiref.sync import iscoroutinefunction, markcoroutinefunction
    from django.conf import settings as _settings
except ImportError:  # pragma: no cover - exercised without the extra
    _settings = None


__all__ = ["ObslogMiddleware", "silence_access_logs"]

_EXC_ATTR = "_obslog_exception"
_SCOPE_ATTR = "_obslog_scope"


class ObslogMiddleware:
    """
    Open :func:`obslog.request_scope` around every request, for sync and async views.

    The request id comes from the ``OBSLOG_REQUEST_ID_HEADER`` header when
    valid (else a new one) and is echoed on the response; trace ids come from
    the active OpenTelemetry span or a valid ``traceparent``.  The route is
    the resolver's template with a leading slash (``/orders/<int:pk>/``),
    bound before the view runs (``process_view``) so the view's lines carry
    it, or ``"<unmatched>"``.  A view exception (answered 500 by Django) is on the
    canonical line; a streaming response is timed to its last chunk, and one
    closed early (client gone) or a cancelled async request ends with
    ``outcome="cancelled"``.  ``FileResponse`` bodies are sent by the server
    after the line is written.

    Args:
        get_response: The next handler, given by Django.

    Raises:
        ImportError: Django is not installed.
        ValueError: ``OBSLOG_REQUEST_ID_HEADER`` is not a valid header name.

    .. versionadded:: 0.1.0
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any) -> None:
        if _settings is None:
            msg = "obslog.django needs Django: pip install 'obslog[django]'"
            raise ImportError(msg)
        self.get_response = get_response
        header = getattr(_settings, "OBSLOG_REQUEST_ID_HEADER", DEFAULT_REQUEST_ID_HEADER)
        self._header = check_header_name(header)
        self._meta_key = wsgi_environ_key(header)
        self._echo = bool(getattr(_settings, "OBSLOG_ECHO_REQUEST_ID", True))
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        """Serve one request (returns a coroutine when the chain is async)."""
        if self._async:
            return self._acall(request)
        scope = self._open(request)
        try:
            response = self.get_response(request)
        except BaseException as exc:
            _finish(scope, request, None, exc)
            raise
        return self._respond(scope, request, response)

    async def _acall(self, request: Any) -> Any:
        scope = self._open(request)
        try:
            response = await self.get_response(request)
        except BaseException as exc:
            _finish(scope, request, None, exc)
            raise
        return self._respond(scope, request, response)

    def process_view(self, request: Any, view_func: Any, view_args: Any, view_kwargs: Any) -> None:
        """Bind the resolved route before the view runs, so the view's own lines carry it."""
        scope = getattr(request, _SCOPE_ATTR, None)
        if scope is not None:
            scope.bind(route=_route(request))

    def process_exception(self, request: Any, exception: Exception) -> None:
        """Keep a view's exception for the canonical line; Django still answers it."""
        setattr(request, _EXC_ATTR, exception)

    def _open(self, request: Any) -> Scope:
        meta = request.META
        ids = resolve_ids(meta.get(self._meta_key), meta.get("HTTP_TRACEPARENT"))
        scope = request_scope(method=request.method, route=None, **ids.scope_fields())
        scope.__enter__()
        setattr(request, _SCOPE_ATTR, scope)
        return scope

    def _respond(self, scope: Scope, request: Any, response: Any) -> Any:
        if self._echo and not response.has_header(self._header):
            response[self._header] = scope.request_id
        if (
            getattr(response, "streaming", False)
            and getattr(response, "file_to_stream", None) is None
        ):
            body = response.streaming_content
            if getattr(response, "is_async", False):
                response.streaming_content = _AsyncBody(body, scope, request, response)
            else:
                response.streaming_content = _SyncBody(body, scope, request, response)
            return response
        _finish(scope, request, response, None)
        return response


def _route(request: Any) -> str:
    match = getattr(request, "resolver_match", None)
    route: str | None = getattr(match, "route", None)
    if not route:
        return UNMATCHED_ROUTE
    return route if route.startswith(("/", "^")) else "/" + route


def _finish(
    scope: Scope,
    request: Any,
    response: Any,
    exc: BaseException | None,
    *,
    cancelled: bool = False,
) -> None:
    route = _route(request)
    if scope.fields.get("route") != route:
        scope.bind(route=route)
    status = getattr(response, "status_code", None)
    if exc is None:
        exc = getattr(request, _EXC_ATTR, None)
    if cancelled:
        mark_cancelled(scope, status)
    else:
        close_scope(scope, exc, status, started=response is not None)
    if exc is None:
        scope.__exit__(None, None, None)
    else:
        scope.__exit__(type(exc), exc, exc.__traceback__)


class _Body:
    """A streaming body that ends the request's scope after its last chunk, or when closed."""

    __slots__ = ("_done", "_request", "_response", "_scope", "_source")

    def __init__(self, source: Any, scope: Scope, request: Any, response: Any) -> None:
        self._source = source
        self._scope = scope
        self._request = request
        self._response = response
        self._done = False

    def _end(self, exc: BaseException | None, *, cancelled: bool = False) -> None:
        if not self._done:
            self._done = True
            _finish(self._scope, self._request, self._response, exc, cancelled=cancelled)


class _SyncBody(_Body):
    """A sync streaming body; closed before its end means the client abandoned it."""

    __slots__ = ("_it",)

    def __init__(self, source: Any, scope: Scope, request: Any, response: Any) -> None:
        super().__init__(source, scope, request, response)
        self._it: Iterator[bytes] = iter(source)

    def __iter__(self) -> _SyncBody:
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._it)
        except StopIteration:
            self._end(None)
            raise
        except BaseException as exc:
            self._end(exc)
            raise

    def close(self) -> None:
        """Close the source; a body closed before its end was abandoned by the client."""
        try:
            close = getattr(self._source, "close", None)
            if close is not None:
                close()
        finally:
            self._end(None, cancelled=True)


class _AsyncBody(_Body):
    """The async twin of :class:`_SyncBody`."""

    __slots__ = ("_it",)

    def __init__(self, source: Any, scope: Scope, request: Any, response: Any) -> None:
        super().__init__(source, scope, request, response)
        self._it: AsyncIterator[bytes] = aiter(source)

    def __aiter__(self) -> _AsyncBody:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await anext(self._it)
        except StopAsyncIteration:
            self._end(None)
            raise
        except BaseException as exc:
            self._end(exc)
            raise

    def close(self) -> None:
        """Called by Django when the response is closed (possibly from a worker thread)."""
        self._end(None, cancelled=True)


# --------------------------------------------------------------------------- health tiers
# The /health, /ready and /metrics views for Django; the core lives in obslog.health.

from obslog.health import HealthEndpoints, Readiness  # noqa: E402 - kept with the views
from obslog.health._endpoints import Response, endpoints_for  # noqa: E402


__all__ += ["health_urls"]


def health_urls(
    target: HealthEndpoints | Readiness | None = None,
    *,
    asynchronous: bool = False,
    **options: Any,
) -> list[Any]:
    """
    Return URL patterns serving the three tiers, for a URLconf.

    Example::

        urlpatterns = [
            path("ops/", include(obslog.django.health_urls(readiness))),
            ...,
        ]

    Under ASGI (uvicorn, daphne, hypercorn) pass ``asynchronous=True``: the views then await
    ``/ready`` on the server's event loop instead of holding a thread for it.  Under WSGI keep
    the default, sync views.  The views are exempt from CSRF checks (they change nothing), so
    other methods than GET and HEAD get 405.

    Args:
        target: A :class:`~obslog.health.Readiness` or :class:`~obslog.health.HealthEndpoints`.
        asynchronous: Serve async views (for ASGI) instead of sync ones.
        **options: Keyword arguments of :class:`~obslog.health.HealthEndpoints` (``prefix``,
            ``*_path``, ...); paths are relative to where the patterns are included.

    Returns:
        A list of ``django.urls.path()`` patterns, named ``obslog-health``, ``obslog-ready``
        and ``obslog-metrics``.

    Raises:
        ImportError: If Django is not installed.

    .. versionadded:: 0.2.0
    """
    if _settings is None:
        msg = "obslog.django needs Django: pip install 'obslog[django]'"
        raise ImportError(msg)
    from django.urls import path

    endpoints = endpoints_for(target, options)
    make = _async_health_view if asynchronous else _health_view
    return [
        path(route.lstrip("/"), make(endpoints, tier), name=f"obslog-{tier}")
        for route, tier in endpoints.routes.items()
    ]


def _django_response(answer: Response) -> Any:
    from django.http import HttpResponse

    status, headers, body = answer
    return HttpResponse(body, status=status, headers=dict(headers))


def _health_view(endpoints: HealthEndpoints, tier: str) -> Any:
    def health_view(request: Any) -> Any:
        answer = endpoints.respond(tier, request.method, request.headers.get("Accept"))
        return _django_response(answer)

    health_view.csrf_exempt = True  # type: ignore[attr-defined]
    return health_view


def _async_health_view(endpoints: HealthEndpoints, tier: str) -> Any:
    async def health_view(request: Any) -> Any:
        answer = await endpoints.respond_async(tier, request.method, request.headers.get("Accept"))
        return _django_response(answer)

    health_view.csrf_exempt = True  # type: ignore[attr-defined]
    return health_view
