"""
Built-in readiness checks for :class:`obslog.health.Readiness`.

Each factory returns a callable (sync or ``async``) that passes by returning True and fails by
raising with a message that says what went wrong.  Client libraries are imported when a check
is built, so a missing one fails at start-up with the extra to install, not at the first probe.

Every check bounds its own I/O with *timeout* (seconds, default 1 s) so that a call cut off by
the readiness budget still ends soon after; the registry never starts a second call of a sync
check while the first one is still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import signal
import threading
import urllib.error
import urllib.request

from collections.abc import Awaitable, Callable, Iterable
from types import FrameType
from typing import Any


__all__ = [
    "ShutdownCheck",
    "async_postgres_check",
    "async_redis_check",
    "http_check",
    "postgres_check",
    "redis_check",
    "sqlalchemy_check",
    "tcp_check",
]

_DEFAULT_TIMEOUT = 1.0


def _require(module: str, what: str, extra: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        msg = f"{what} needs the {module.split('.')[0]!r} package: pip install 'obslog[{extra}]'"
        raise ImportError(msg) from None


def _check_timeout(timeout: float) -> float:
    if not timeout > 0:
        msg = f"timeout must be a positive number of seconds, got {timeout!r}"
        raise ValueError(msg)
    return float(timeout)


def _one_of(url: str | None, client: Any, what: str) -> None:
    if (url is None) == (client is None):
        msg = f"{what} takes exactly one of url= or client="
        raise TypeError(msg)


# --------------------------------------------------------------------------- Redis


def redis_check(
    url: str | None = None, *, client: Any = None, timeout: float = _DEFAULT_TIMEOUT
) -> Callable[[], bool]:
    """
    Return a sync check that sends Redis ``PING`` through redis-py.

    Args:
        url: Redis URL (``redis://host:6379/0``); a client with its own pool is made once.
        client: An existing ``redis.Redis`` instead of *url*.
        timeout: Connect and socket timeout of the client built from *url*.

    Returns:
        The check.

    Raises:
        ImportError: If redis-py is not installed.
        TypeError: Unless exactly one of *url* and *client* is given.

    .. versionadded:: 0.1.0
    """
    redis = _require("redis", "redis_check", "redis")
    _one_of(url, client, "redis_check")
    timeout = _check_timeout(timeout)
    if client is None:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=timeout, socket_timeout=timeout, retry=None
        )

    def check_redis() -> bool:
        if client.ping() is not True:
            msg = "PING did not answer PONG"
            raise RuntimeError(msg)
        return True

    return check_redis


def async_redis_check(
    url: str | None = None, *, client: Any = None, timeout: float = _DEFAULT_TIMEOUT
) -> Callable[[], Awaitable[bool]]:
    """
    Return an async check that sends Redis ``PING`` through ``redis.asyncio``.

    With *url* each call opens and closes its own connection, so the check works on whichever
    event loop runs it.  A *client* is bound to the loop it was first used on: pass one only
    when readiness is served from that loop (ASGI, aiohttp).

    Args:
        url: Redis URL.
        client: An existing ``redis.asyncio.Redis`` instead of *url*.
        timeout: Connect and socket timeout of the connection built from *url*.

    Returns:
        The check.

    Raises:
        ImportError: If redis-py is not installed.
        TypeError: Unless exactly one of *url* and *client* is given.

    .. versionadded:: 0.1.0
    """
    aioredis = _require("redis.asyncio", "async_redis_check", "redis")
    _one_of(url, client, "async_redis_check")
    timeout = _check_timeout(timeout)

    async def check_redis() -> bool:
        if client is not None:
            answer = await client.ping()
        else:
            conn = aioredis.Redis.from_url(
                url, socket_connect_timeout=timeout, socket_timeout=timeout, retry=None
            )
            try:
                answer = await conn.ping()
            finally:
                await conn.aclose()
        if answer is not True:
            msg = "PING did not answer PONG"
            raise RuntimeError(msg)
        return True

    return check_redis


# --------------------------------------------------------------------------- PostgreSQL


def _connect_timeout(timeout: float) -> int:
    # libpq takes whole seconds (and treats 1 as 2); the registry's timeout cuts off sooner.
    return max(2, int(timeout + 0.999))


def postgres_check(
    dsn: str, *, timeout: float = _DEFAULT_TIMEOUT, query: str = "SELECT 1"
) -> Callable[[], bool]:
    """
    Return a sync check that connects with psycopg and runs ``SELECT 1``.

    Each call opens a new connection, so it also proves the server accepts connections.  To
    check an application's pool instead, use :func:`sqlalchemy_check`.

    Args:
        dsn: libpq connection string or URL.
        timeout: Connect timeout, and statement timeout of the query.
        query: The statement to run.

    Returns:
        The check.

    Raises:
        ImportError: If psycopg is not installed.

    .. versionadded:: 0.1.0
    """
    psycopg = _require("psycopg", "postgres_check", "postgres")
    timeout = _check_timeout(timeout)
    options = f"-c statement_timeout={int(timeout * 1000)}"

    def check_postgres() -> bool:
        with psycopg.connect(
            dsn, connect_timeout=_connect_timeout(timeout), options=options, autocommit=True
        ) as conn:
            conn.execute(query).fetchall()
        return True

    return check_postgres


def async_postgres_check(
    dsn: str, *, timeout: float = _DEFAULT_TIMEOUT, query: str = "SELECT 1"
) -> Callable[[], Awaitable[bool]]:
    """
    Return an async check that connects with ``psycopg.AsyncConnection`` and runs ``SELECT 1``.

    Args:
        dsn: libpq connection string or URL.
        timeout: Connect timeout, and statement timeout of the query.
        query: The statement to run.

    Returns:
        The check.

    Raises:
        ImportError: If psycopg is not installed.

    .. versionadded:: 0.1.0
    """
    psycopg = _require("psycopg", "async_postgres_check", "postgres")
    timeout = _check_timeout(timeout)
    options = f"-c statement_timeout={int(timeout * 1000)}"

    async def check_postgres() -> bool:
        conn = await psycopg.AsyncConnection.connect(
            dsn, connect_timeout=_connect_timeout(timeout), options=options, autocommit=True
        )
        async with conn:
            cur = await conn.execute(query)
            await cur.fetchall()
        return True

    return check_postgres


# --------------------------------------------------------------------------- SQLAlchemy


def sqlalchemy_check(engine: Any, *, query: str = "SELECT 1") -> Callable[[], Any]:
    """
    Return a check that borrows a connection from an SQLAlchemy engine's pool and runs *query*.

    A sync ``Engine`` gives a sync check; an ``AsyncEngine`` gives an async one (bound to the
    event loop the engine is used on).  A pool that is exhausted or a database that is down
    fails the check; how long the pool waits is the engine's ``pool_timeout``, and the
    registry's timeout cuts the answer off sooner.

    Args:
        engine: ``sqlalchemy.Engine`` or ``sqlalchemy.ext.asyncio.AsyncEngine``.
        query: The statement to run (``"SELECT 1 FROM DUAL"`` for Oracle).

    Returns:
        The check.

    Raises:
        ImportError: If SQLAlchemy (or, for an AsyncEngine, greenlet) is not installed.
        TypeError: If *engine* is not an engine.

    .. versionadded:: 0.1.0
    """
    sqlalchemy = _require("sqlalchemy", "sqlalchemy_check", "sqlalchemy")
    statement = sqlalchemy.text(query)
    try:
        from sqlalchemy.ext.asyncio import AsyncEngine
    except ImportError:
        async_engine: tuple[type, ...] = ()
    else:
        async_engine = (AsyncEngine,)
    is_async = isinstance(engine, async_engine)
    if is_async:
        if importlib.util.find_spec("greenlet") is None:
            msg = (
                "sqlalchemy_check on an AsyncEngine needs greenlet: "
                "pip install 'sqlalchemy[asyncio]'"
            )
            raise ImportError(msg)

        async def check_async_engine() -> bool:
            async with engine.connect() as conn:
                await conn.execute(statement)
            return True

        return check_async_engine
    if not isinstance(engine, sqlalchemy.engine.Engine):
        msg = f"sqlalchemy_check needs an Engine or AsyncEngine, got {engine!r}"
        raise TypeError(msg)

    def check_engine() -> bool:
        with engine.connect() as conn:
            conn.execute(statement)
        return True

    return check_engine


# --------------------------------------------------------------------------- TCP / HTTP


def tcp_check(
    host: str, port: int, *, timeout: float = _DEFAULT_TIMEOUT
) -> Callable[[], Awaitable[bool]]:
    """
    Return an async check that opens (and closes) a TCP connection to *host*:*port*.

    Args:
        host: Host name or address.
        port: TCP port.
        timeout: Connect timeout.

    Returns:
        The check.

    .. versionadded:: 0.1.0
    """
    timeout = _check_timeout(timeout)

    async def check_tcp() -> bool:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except asyncio.TimeoutError:
            msg = f"connecting to {host}:{port} timed out after {timeout:g} s"
            raise TimeoutError(msg) from None
        except OSError as exc:
            msg = f"cannot connect to {host}:{port}: {exc.strerror or exc}"
            raise ConnectionError(msg) from None
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    return check_tcp


def http_check(
    url: str,
    *,
    timeout: float = _DEFAULT_TIMEOUT,
    expect: Iterable[int] | None = None,
) -> Callable[[], bool]:
    """
    Return a sync check that sends ``GET url`` and expects a successful status.

    Uses httpx when it is installed (one client, reused), else :mod:`urllib.request`.
    Redirects are not followed.

    Args:
        url: The URL to fetch.
        timeout: Connect and read timeout.
        expect: Accepted status codes; default any 2xx or 3xx.

    Returns:
        The check.

    .. versionadded:: 0.1.0
    """
    timeout = _check_timeout(timeout)
    accepted = frozenset(expect) if expect is not None else frozenset(range(200, 400))
    try:
        import httpx
    except ImportError:
        httpx = None  # type: ignore[assignment]

    def verdict(status: int) -> bool:
        if status not in accepted:
            msg = f"GET {url} answered HTTP {status}"
            raise RuntimeError(msg)
        return True

    if httpx is not None:
        client = httpx.Client(timeout=timeout, follow_redirects=False)

        def check_http() -> bool:
            return verdict(client.get(url).status_code)

        return check_http

    opener = urllib.request.build_opener(_NoRedirect)

    def check_http_stdlib() -> bool:
        try:
            with opener.open(url, timeout=timeout) as response:
                return verdict(response.status)
        except urllib.error.HTTPError as exc:
            exc.close()
            return verdict(exc.code)

    return check_http_stdlib


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


# --------------------------------------------------------------------------- shutdown


_Handler = Any  # Callable[[int, FrameType | None], Any] | int | None


class ShutdownCheck:
    """
    A check that passes until the process is asked to stop, for a graceful drain.

    On creation it installs a handler for *signals* (SIGTERM by default) that flips the check
    to failing, so ``/ready`` turns 503 and load balancers stop sending traffic, then hands the
    signal on to the handler that was there before:

    * a Python handler (uvicorn's, gunicorn's, your own) is called with the same arguments;
    * the default action (terminate) is restored and taken after *exit_after* seconds
      (0 by default: at once, as without this check; a second signal meanwhile ends the
      process at once); with ``exit_after=None`` the process keeps running and the application
      stops itself (poll :attr:`shutting_down`);
    * an ignored signal stays ignored.

    Signal handlers can only be installed from the main thread.  :meth:`close` (or removing the
    check with ``readiness.remove(name)``) puts back the handlers it replaced.

    Example::

        stopping = ShutdownCheck(exit_after=5)
        readiness.add("not_shutting_down", stopping)

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        signals: Iterable[int] = (signal.SIGTERM,),
        *,
        install: bool = True,
        exit_after: float | None = 0.0,
    ) -> None:
        """
        Create the check and (by default) install its signal handlers.

        Args:
            signals: The signals that mean "stop".
            install: False to install nothing and flip only through :meth:`trigger`.
            exit_after: Delay before the default action of a signal that had no handler;
                None to never take it.

        Raises:
            ValueError: If installing is asked for outside the main thread.
        """
        if exit_after is not None and exit_after < 0:
            msg = f"exit_after must be None or >= 0 seconds, got {exit_after!r}"
            raise ValueError(msg)
        self.exit_after = exit_after
        self.signals = tuple(signal.Signals(s) for s in signals)
        self._event = threading.Event()
        self._reason: str | None = None
        self._prior: dict[signal.Signals, _Handler] = {}
        if install:
            self.install()

    @property
    def shutting_down(self) -> bool:
        """True once a stop signal arrived or :meth:`trigger` was called."""
        return self._event.is_set()

    def install(self) -> None:
        """
        Install the signal handlers, remembering the ones they replace.

        Raises:
            ValueError: If not called from the main thread.
        """
        if threading.current_thread() is not threading.main_thread():
            msg = (
                "ShutdownCheck must be created in the main thread to install its signal handler; "
                "pass install=False and call .trigger() from your shutdown hook instead"
            )
            raise ValueError(msg)
        for sig in self.signals:
            if sig not in self._prior:
                self._prior[sig] = signal.signal(sig, self._on_signal)

    def uninstall(self) -> None:
        """
        Restore the handlers that were in place before :meth:`install` (where still ours).

        A handler installed after this check's, by someone else, is left in place.  Idempotent.
        """
        for sig, prior in list(self._prior.items()):
            if signal.getsignal(sig) == self._on_signal:
                signal.signal(sig, prior if prior is not None else signal.SIG_DFL)
            del self._prior[sig]

    def close(self) -> None:
        """
        Restore the signal handlers this check replaced (see :meth:`uninstall`).

        Also done when the check is removed from a :class:`~obslog.health.Readiness`
        (``readiness.remove(name)``), or on leaving a ``with ShutdownCheck() as check:`` block.

        .. versionadded:: 0.2.0
        """
        self.uninstall()

    def __enter__(self) -> ShutdownCheck:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _obslog_removed(self) -> None:
        # Called by Readiness.remove(): a check taken out of service gives its signals back.
        self.uninstall()

    def trigger(self, reason: str = "shutdown requested") -> None:
        """Flip the check to failing without a signal (e.g. from a framework's shutdown hook)."""
        if self._reason is None:
            self._reason = reason
        self._event.set()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        sig = signal.Signals(signum)
        self.trigger(f"received {sig.name}")
        prior = self._prior.get(sig)
        if callable(prior):
            prior(signum, frame)
        elif prior == signal.SIG_IGN:
            return
        elif self.exit_after is not None:
            # No Python handler was there before: take the default action, after the drain.
            signal.signal(sig, signal.SIG_DFL)
            if self.exit_after == 0:
                signal.raise_signal(sig)
            else:
                timer = threading.Timer(self.exit_after, signal.raise_signal, (sig,))
                timer.daemon = True
                timer.start()

    def __call__(self) -> bool:
        """Pass while not shutting down; raise with the reason afterwards."""
        if self._event.is_set():
            msg = f"shutting down ({self._reason})"
            raise RuntimeError(msg)
        return True

    def __repr__(self) -> str:
        names = ",".join(s.name for s in self.signals)
        return f"<ShutdownCheck signals={names} shutting_down={self.shutting_down}>"
