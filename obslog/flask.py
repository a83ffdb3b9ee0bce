"""
Flask integration: :class:`obslog.wsgi.ObslogMiddleware` plus the route template.

    from flask import Flask
    import obslog.flask

    app = Flask(__name__)
    obslog.flask.init_app(app)
"""

from __future__ import annotations

from typing import Any

from obslog._context import bind
from obslog._http import DEFAULT_REQUEST_ID_HEADER, silence_access_logs
from obslog.wsgi import ObslogMiddleware


__all__ = ["EXCEPTION_ENVIRON_KEY", "init_app", "silence_access_logs"]

EXCEPTION_ENVIRON_KEY = "obslog.exception"
"""WSGI environ key under which a handled exception reaches the canonical line."""


def _flask() -> Any:
    try:
        import flask
    except ImportError:
        msg = "obslog.flask needs Flask: pip install 'obslog[flask]'"
        raise ImportError(msg) from None
    return flask


def init_app(
    app: Any,
    *,
    request_id_header: str = DEFAULT_REQUEST_ID_HEADER,
    echo_request_id: bool = True,
) -> None:
    """
    Log every request of *app* as one canonical ``request`` line.

    Wraps ``app.wsgi_app`` in :class:`obslog.wsgi.ObslogMiddleware` and binds
    the route template (``request.url_rule.rule``, e.g. ``/orders/<int:id>``)
    when Flask has matched the URL; unmatched requests get ``"<unmatched>"``.
    Flask's error handlers and its ``Exception on ...`` log line run inside
    the scope, so they carry the request's ids; an unhandled exception also
    lands on the canonical line (``exc_type``, ``exc_message``, ``stack``).

    Args:
        app: The :class:`flask.Flask` application.
        request_id_header: Header to read the request id from and echo it in.
        echo_request_id: Add the request id to the response headers.

    Raises:
        ImportError: Flask is not installed.

    .. versionadded:: 0.1.0
    """
    flask = _flask()
    app.wsgi_app = ObslogMiddleware(
        app.wsgi_app,
        request_id_header=request_id_header,
        echo_request_id=echo_request_id,
    )
    # Signals rather than before_request: they fire even when an earlier
    # before_request function answers the request itself.
    flask.request_started.connect(_bind_route, app, weak=False)
    flask.got_request_exception.connect(_keep_exception, app, weak=False)


def _bind_route(sender: Any, **extra: Any) -> None:
    from flask import request

    rule = request.url_rule
    if rule is not None:
        bind(route=rule.rule)


def _keep_exception(sender: Any, exception: BaseException, **extra: Any) -> None:
    from flask import request

    request.environ[EXCEPTION_ENVIRON_KEY] = exception


# --------------------------------------------------------------------------- health tiers

from obslog.health import HealthEndpoints, Readiness  # noqa: E402 - kept with the helper
from obslog.wsgi import make_health_app  # noqa: E402


__all__ += ["add_health"]


def add_health(
    app: Any, target: HealthEndpoints | Readiness | None = None, **options: Any
) -> HealthEndpoints:
    """
    Serve ``/health``, ``/ready`` and ``/metrics`` beside a Flask app.

    Wraps ``app.wsgi_app``: the tiers answer before Flask sees the request.  Call it after
    :func:`init_app`, so probes never reach the request log either.

    Example::

        app = Flask(__name__)
        obslog.flask.init_app(app)
        obslog.flask.add_health(app, readiness, prefix="/ops")

    Args:
        app: The ``flask.Flask`` application.
        target: A :class:`~obslog.health.Readiness` or :class:`~obslog.health.HealthEndpoints`.
        **options: Keyword arguments of :class:`~obslog.health.HealthEndpoints` (``prefix``,
            ``*_path``, ...).

    Returns:
        The endpoints served.

    .. versionadded:: 0.2.0
    """
    health_app = make_health_app(target, app=app.wsgi_app, **options)
    app.wsgi_app = health_app
    return health_app.endpoints  # type: ignore[attr-defined,no-any-return]
