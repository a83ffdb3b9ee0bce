"""
The three HTTP tiers: ``/health`` (liveness), ``/ready`` (readiness) and ``/metrics``.

One framework-neutral core, :class:`HealthEndpoints`, turns ``(path, method, accept)`` into
``(status, headers, body)``.  Thin adapters serve it from ASGI (:func:`make_asgi_app`), WSGI
(:func:`make_wsgi_app`), aiohttp (:func:`add_aiohttp_routes`) or a standalone stdlib server on a
side port (:func:`serve`) for processes that have no HTTP server of their own.

* ``/health`` answers from memory: 200 while the main thread is alive, 503 otherwise.  No I/O.
* ``/ready`` runs the checks registered on a :class:`Readiness` concurrently, each bounded by its
  own timeout and all of them by one budget (1 s by default), and answers 200 when every
  required check passes, 503 otherwise, with a JSON body per check.  Results are cached for a
  short TTL and concurrent probes (threads or coroutines) share one evaluation.
* ``/metrics`` renders the Prometheus exposition through :mod:`obslog.metrics`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import http
import inspect
import json
import logging
import os
import socket
import threading
import weakref

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from time import monotonic
from typing import Any
from urllib.parse import urlsplit


__all__ = [
    "DEFAULT_BUDGET",
    "DEFAULT_TTL",
    "CheckResult",
    "HealthEndpoints",
    "HealthServer",
    "Readiness",
    "ReadyReport",
    "Response",
    "add_aiohttp_routes",
    "make_aiohttp_handler",
    "make_asgi_app",
    "make_wsgi_app",
    "serve",
]

DEFAULT_BUDGET = 1.0
"""Seconds within which ``/ready`` answers, whatever its checks do."""

DEFAULT_TTL = 1.0
"""Seconds for which a readiness answer is reused."""

Response = tuple[int, list[tuple[str, str]], bytes]
"""``(status, headers, body)`` as returned by the core and served by every adapter."""

CheckFunc = Callable[[], Awaitable[bool | None] | bool | None]
MetricsRenderer = Callable[[str | None], tuple[bytes, str]]

_log = logging.getLogger("obslog.health")

_JSON = "application/json"
_ERROR_MAX = 1000
# Checks are cut off a little before the budget so the HTTP answer itself arrives within it
# (Kubernetes probes default to a 1 s timeout).
_MARGIN_MAX = 0.05
# A waiter gives up on an evaluation this long after the budget (it can only be late if the
# event loop running it is blocked or gone).
_STALE_GRACE = 0.5

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
_NOT_FOUND: Response = (404, [("Content-Type", "text/plain; charset=utf-8")], b"not found\n")
_METHODS = "GET, HEAD"


# --------------------------------------------------------------------------- readiness


@dataclass(frozen=True)
class CheckResult:
    """
    Outcome of one readiness check.

    Attributes:
        name: The name the check was registered under.
        status: ``"ok"``, ``"fail"`` or ``"timeout"``.
        required: Whether a failure makes the whole answer 503.
        latency_ms: Time the check took (or ran before it was cut off), in ms.
        error: Error text when the check did not pass, else None.
    """

    name: str
    status: str
    required: bool
    latency_ms: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the check passed."""
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready mapping used in the ``/ready`` body (without the name)."""
        return {
            "status": self.status,
            "required": self.required,
            "latency_ms": self.latency_ms,
            "error": self.error,
        }


@dataclass(frozen=True)
class ReadyReport:
    """
    One evaluation of all readiness checks, already rendered.

    Attributes:
        ok: True when every required check passed.
        checks: Results in registration order.
        duration_ms: Wall time of the evaluation in ms.
        body: The JSON body served by ``/ready``.
    """

    ok: bool
    checks: tuple[CheckResult, ...]
    duration_ms: float
    body: bytes = field(repr=False)

    @property
    def status_code(self) -> int:
        """200 when ready, 503 otherwise."""
        return 200 if self.ok else 503

    @classmethod
    def build(cls, results: Iterable[CheckResult], duration_ms: float) -> ReadyReport:
        """
        Build a report and its JSON body from check results.

        Args:
            results: Results in the order they should be listed.
            duration_ms: Wall time of the evaluation.

        Returns:
            The report.
        """
        checks = tuple(results)
        ok = all(r.ok for r in checks if r.required)
        duration_ms = round(duration_ms, 3)
        body = json.dumps(
            {
                "status": "ok" if ok else "fail",
                "checks": {r.name: r.to_dict() for r in checks},
                "duration_ms": duration_ms,
            },
            separators=(",", ":"),
        ).encode()
        return cls(ok=ok, checks=checks, duration_ms=duration_ms, body=body)

    def to_dict(self) -> dict[str, Any]:
        """Return the decoded ``/ready`` body."""
        return json.loads(self.body)  # type: ignore[no-any-return]


class _Check:
    __slots__ = ("busy_since", "func", "is_async", "name", "required", "timeout")

    def __init__(self, name: str, func: CheckFunc, timeout: float | None, required: bool) -> None:
        self.name = name
        self.func = func
        self.timeout = timeout
        self.required = required
        self.is_async = _is_async_callable(func)
        # Set while a sync call runs in its thread; a call that outlives its timeout is not
        # started again until it returns, so a hung dependency cannot pile up threads.
        self.busy_since: float | None = None


def _is_async_callable(func: Any) -> bool:
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - an instance with an async __call__
    )


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text if len(text) <= _ERROR_MAX else text[: _ERROR_MAX - 3] + "..."


def _judge(value: object) -> str | None:
    """Return None when *value* means "passed", else the error text."""
    if value is None or value is True:
        return None
    if value is False:
        return "check returned False"
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return (
        f"check returned {shown} ({type(value).__name__}); "
        "a check must return None or True to pass, False to fail, or raise"
    )


_REGISTRIES: weakref.WeakSet[Readiness] = weakref.WeakSet()


class Readiness:
    """
    A registry of named readiness checks and the single-flight, cached evaluation behind ``/ready``.

    A check is a callable taking no argument, sync or ``async``.  It passes by returning None or
    True; it fails by returning False or raising (the exception text is reported).  Anything else
    it returns is reported as a failure that names the bad value.

    Sync checks run in their own daemon thread, never on an event loop.  Async checks run on the
    event loop of the caller that starts the evaluation; when a sync caller (WSGI, the standalone
    server) starts it, they run on *loop* if given, else on a private background loop.

    All checks run concurrently.  Each is cut off at its own *timeout*, and all of them shortly
    before *budget*, so the answer arrives within the budget.  An answer is reused for *ttl*
    seconds, and callers that arrive while an evaluation runs wait for that one.

    Example::

        readiness = Readiness()
        readiness.add("redis", redis_check("redis://127.0.0.1:6379/0"))

        @readiness.add("queue", required=False)
        def queue_depth_ok() -> bool:
            return queue.qsize() < 10_000

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        *,
        budget: float = DEFAULT_BUDGET,
        ttl: float = DEFAULT_TTL,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        """
        Create an empty registry.

        Args:
            budget: Seconds within which an evaluation finishes (default 1 s).
            ttl: Seconds for which an answer is reused (default 1 s; 0 disables the cache but
                concurrent callers still share one evaluation).
            loop: Event loop for async checks started by sync callers; default a private one.

        Raises:
            ValueError: If *budget* is not positive or *ttl* is negative.
        """
        if not budget > 0:
            msg = f"budget must be a positive number of seconds, got {budget!r}"
            raise ValueError(msg)
        if not ttl >= 0:
            msg = f"ttl must be zero or a positive number of seconds, got {ttl!r}"
            raise ValueError(msg)
        self.budget = float(budget)
        self.ttl = float(ttl)
        self._loop = loop
        self._cutoff = self.budget - min(_MARGIN_MAX, self.budget * 0.1)
        self._checks: dict[str, _Check] = {}
        self._reset_state()
        _REGISTRIES.add(self)

    def _reset_state(self) -> None:
        self._lock = threading.Lock()
        self._cached: ReadyReport | None = None
        self._expires = 0.0
        self._inflight: concurrent.futures.Future[ReadyReport] | None = None
        self._inflight_started = 0.0
        self._tasks: set[asyncio.Task[ReadyReport]] = set()
        self._last_status: dict[str, str] = {}
        for check in self._checks.values() if hasattr(self, "_checks") else ():
            check.busy_since = None

    # ----------------------------------------------------------------- registration

    def add(
        self,
        name: str,
        func: CheckFunc | None = None,
        *,
        timeout: float | None = None,
        required: bool = True,
    ) -> Any:
        """
        Register a check under *name*; without *func*, return a decorator that registers it.

        Args:
            name: Unique name, shown as the key in the ``/ready`` body.
            func: The check (sync or async callable without arguments).
            timeout: Seconds after which this check counts as failed; never more than the
                budget (default: the budget).
            required: When False, a failure is reported but the answer stays 200.

        Returns:
            *func*, or a decorator when *func* is omitted.

        Raises:
            ValueError: On an empty or duplicate name, or a non-positive timeout.
            TypeError: If *func* is not callable.
        """
        if func is None:

            def decorator(f: CheckFunc) -> CheckFunc:
                self.add(name, f, timeout=timeout, required=required)
                return f

            return decorator
        if not isinstance(name, str) or not name:
            msg = f"a check name must be a non-empty string, got {name!r}"
            raise ValueError(msg)
        if not callable(func):
            msg = f"check {name!r} must be a callable taking no argument, got {func!r}"
            raise TypeError(msg)
        if timeout is not None and not timeout > 0:
            msg = f"timeout must be a positive number of seconds, got {timeout!r}"
            raise ValueError(msg)
        with self._lock:
            if name in self._checks:
                msg = f"a readiness check named {name!r} is already registered"
                raise ValueError(msg)
            self._checks[name] = _Check(name, func, timeout, required)
            self._cached = None
        return func

    def remove(self, name: str) -> None:
        """
        Unregister the check named *name*.

        Raises:
            KeyError: If no check has that name.
        """
        with self._lock:
            del self._checks[name]
            self._cached = None

    def names(self) -> list[str]:
        """Return the registered check names in registration order."""
        with self._lock:
            return list(self._checks)

    # ----------------------------------------------------------------- evaluation

    def _claim(self) -> tuple[ReadyReport | None, concurrent.futures.Future[ReadyReport], bool]:
        now = monotonic()
        with self._lock:
            if self._cached is not None and now < self._expires:
                return self._cached, None, False  # type: ignore[return-value]
            fut = self._inflight
            if fut is not None and now - self._inflight_started < self.budget + _STALE_GRACE:
                return None, fut, False
            fut = concurrent.futures.Future()
            self._inflight = fut
            self._inflight_started = now
            return None, fut, True

    def _finish(
        self, fut: concurrent.futures.Future[ReadyReport], report: ReadyReport, cache: bool = True
    ) -> None:
        with self._lock:
            if cache:
                self._cached = report
                self._expires = monotonic() + self.ttl
            if self._inflight is fut:
                self._inflight = None
        if not fut.done():
            fut.set_result(report)

    def _failed(self, error: str) -> ReadyReport:
        with self._lock:
            checks = list(self._checks.values())
        elapsed = (monotonic() - self._inflight_started) * 1000.0
        return ReadyReport.build(
            (CheckResult(c.name, "timeout", c.required, round(elapsed, 3), error) for c in checks),
            elapsed,
        )

    def check(self) -> ReadyReport:
        """
        Return the readiness answer, evaluating the checks unless a fresh one is cached.

        Blocks for at most about the budget.  Safe to call from many threads at once: they
        share one evaluation.

        Returns:
            The report (its ``status_code`` is 200 or 503).

        Raises:
            RuntimeError: If called on the event loop that runs the async checks (use
                :meth:`check_async` there).
        """
        cached, fut, owner = self._claim()
        if cached is not None:
            return cached
        if owner:
            return self._evaluate_here(fut)
        try:
            return fut.result(timeout=self.budget + _STALE_GRACE)
        except concurrent.futures.TimeoutError:
            return self._failed("readiness evaluation did not finish in time")

    def _evaluate_here(self, fut: concurrent.futures.Future[ReadyReport]) -> ReadyReport:
        report: ReadyReport | None = None
        cache = False
        try:
            loop = self._loop if self._loop is not None else _background_loop()
            if _running_loop() is loop:
                msg = "Readiness.check() would block its own event loop; await check_async()"
                raise RuntimeError(msg)
            cf = asyncio.run_coroutine_threadsafe(self._evaluate(), loop)
            try:
                report = cf.result(timeout=self.budget + _STALE_GRACE)
                cache = True
            except concurrent.futures.TimeoutError:
                cf.cancel()
                report = self._failed("readiness evaluation did not finish in time")
            except Exception as exc:  # e.g. a closed loop: still an answer, never an error
                report = self._failed(f"readiness evaluation failed: {_error_text(exc)}")
            return report
        finally:
            # Always release the callers waiting on this evaluation, even on the way out of an
            # exception (a misuse, or KeyboardInterrupt while waiting).
            if report is None:
                report = self._failed("readiness evaluation failed")
            self._finish(fut, report, cache=cache)

    async def check_async(self) -> ReadyReport:
        """
        Return the readiness answer without blocking the running event loop.

        Concurrent callers, async or sync, share one evaluation.  Cancelling one caller does not
        cancel the evaluation the others wait for.

        Returns:
            The report (its ``status_code`` is 200 or 503).
        """
        cached, fut, owner = self._claim()
        if cached is not None:
            return cached
        if owner:
            task = asyncio.get_running_loop().create_task(self._evaluate())
            self._tasks.add(task)
            task.add_done_callback(lambda t: self._task_done(t, fut))
        try:
            return await asyncio.wait_for(
                asyncio.shield(asyncio.wrap_future(fut)), self.budget + _STALE_GRACE
            )
        except asyncio.TimeoutError:
            return self._failed("readiness evaluation did not finish in time")

    def _task_done(
        self, task: asyncio.Task[ReadyReport], fut: concurrent.futures.Future[ReadyReport]
    ) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            self._finish(fut, self._failed("readiness evaluation was cancelled"), cache=False)
        elif task.exception() is not None:
            error = _error_text(task.exception())  # type: ignore[arg-type]
            self._finish(fut, self._failed(error), cache=False)
        else:
            self._finish(fut, task.result())

    async def _evaluate(self) -> ReadyReport:
        with self._lock:
            checks = list(self._checks.values())
        start = monotonic()
        deadline = start + self._cutoff
        results = await asyncio.gather(*(self._run_one(c, deadline) for c in checks))
        report = ReadyReport.build(results, (monotonic() - start) * 1000.0)
        self._log_changes(report)
        return report

    async def _run_one(self, check: _Check, deadline: float) -> CheckResult:
        start = monotonic()
        timeout = deadline - start
        if check.timeout is not None:
            timeout = min(timeout, check.timeout)
        try:
            if check.is_async:
                value = await asyncio.wait_for(check.func(), max(timeout, 0.0))  # type: ignore[arg-type]
            else:
                if check.busy_since is not None:
                    running = (start - check.busy_since) * 1000.0
                    return CheckResult(
                        check.name,
                        "timeout",
                        check.required,
                        0.0,
                        f"previous call has not returned yet (running for {running:.0f} ms)",
                    )
                value = await asyncio.wait_for(self._in_thread(check), max(timeout, 0.0))
                if inspect.isawaitable(value):
                    value = await asyncio.wait_for(value, max(deadline - monotonic(), 0.0))
        except (asyncio.TimeoutError, concurrent.futures.TimeoutError):
            elapsed = (monotonic() - start) * 1000.0
            return CheckResult(
                check.name,
                "timeout",
                check.required,
                round(elapsed, 3),
                f"timed out after {elapsed:.0f} ms",
            )
        except Exception as exc:  # a failing check is an answer, never an error of /ready
            elapsed = (monotonic() - start) * 1000.0
            return CheckResult(
                check.name, "fail", check.required, round(elapsed, 3), _error_text(exc)
            )
        elapsed = round((monotonic() - start) * 1000.0, 3)
        error = _judge(value)
        status = "ok" if error is None else "fail"
        return CheckResult(check.name, status, check.required, elapsed, error)

    @staticmethod
    def _in_thread(check: _Check) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()

        def deliver(value: Any, exc: BaseException | None) -> None:
            if fut.done():
                return
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(value)

        def run() -> None:
            value, exc = None, None
            try:
                value = check.func()
            except BaseException as e:  # reported as the check's error text
                exc = e
            finally:
                check.busy_since = None
            with contextlib.suppress(RuntimeError):  # the loop may be closed by now
                loop.call_soon_threadsafe(deliver, value, exc)

        check.busy_since = monotonic()
        thread = threading.Thread(target=run, name=f"obslog-ready-{check.name}", daemon=True)
        try:
            thread.start()
        except BaseException:
            check.busy_since = None
            raise
        return fut

    def _log_changes(self, report: ReadyReport) -> None:
        for r in report.checks:
            before = self._last_status.get(r.name)
            self._last_status[r.name] = r.status
            if r.ok and before not in (None, "ok"):
                _log.info("readiness check recovered", extra={"check": r.name})
            elif not r.ok and before != r.status:
                _log.warning(
                    "readiness check failed",
                    extra={"check": r.name, "check_status": r.status, "error": r.error},
                )


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


_bg_lock = threading.Lock()
_bg_state: tuple[int, asyncio.AbstractEventLoop] | None = None


def _background_loop() -> asyncio.AbstractEventLoop:
    """Return the private event loop (started on first use, again after a fork)."""
    global _bg_state
    pid = os.getpid()
    state = _bg_state
    if state is not None and state[0] == pid:
        return state[1]
    with _bg_lock:
        if _bg_state is not None and _bg_state[0] == pid:
            return _bg_state[1]
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="obslog-ready-loop", daemon=True)
        thread.start()
        _bg_state = (pid, loop)
        return loop


def _after_fork_in_child() -> None:
    global _bg_lock, _bg_state
    _bg_lock = threading.Lock()
    _bg_state = None
    for registry in list(_REGISTRIES):
        registry._reset_state()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# --------------------------------------------------------------------------- core


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
            return _NOT_FOUND
        return self.respond(tier, method, accept)

    async def handle_async(
        self, path: str, method: str = "GET", accept: str | None = None
    ) -> Response:
        """Like :meth:`handle`, but never blocks the running event loop."""
        tier = self.match(path)
        if tier is None:
            return _NOT_FOUND
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
            text = f"rendering metrics failed: {_error_text(exc)}\n".encode()
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


def _endpoints(
    target: HealthEndpoints | Readiness | None, options: dict[str, Any]
) -> HealthEndpoints:
    if isinstance(target, HealthEndpoints):
        if options:
            msg = f"options {sorted(options)} apply only when no HealthEndpoints is passed"
            raise TypeError(msg)
        return target
    if target is not None and not isinstance(target, Readiness):
        msg = f"expected a Readiness or HealthEndpoints, got {target!r}"
        raise TypeError(msg)
    return HealthEndpoints(target, **options)


def _with_length(headers: list[tuple[str, str]], body: bytes) -> list[tuple[str, str]]:
    if any(k == "Content-Length" for k, _ in headers):
        return headers
    return [*headers, ("Content-Length", str(len(body)))]


# --------------------------------------------------------------------------- ASGI


def make_asgi_app(
    target: HealthEndpoints | Readiness | None = None,
    *,
    app: Callable[..., Awaitable[None]] | None = None,
    **options: Any,
) -> Callable[..., Awaitable[None]]:
    """
    Return an ASGI app serving the three tiers.

    Mount it (``fastapi_app.mount("/ops", make_asgi_app(readiness))``) or wrap an app as
    middleware (``make_asgi_app(readiness, app=asgi_app)``): requests for other paths then go
    to *app*.  A mount's ``root_path`` is honoured.

    Args:
        target: A :class:`Readiness` (*options* build the endpoints) or a
            :class:`HealthEndpoints`.
        app: ASGI app that receives every other request (and lifespan events).
        **options: Keyword arguments of :class:`HealthEndpoints` (``prefix``, ``*_path``,
            ``metrics``).

    Returns:
        The ASGI application.

    .. versionadded:: 0.1.0
    """
    endpoints = _endpoints(target, options)

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
                status, headers, body = _NOT_FOUND
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
                        for k, v in _with_length(headers, body)
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


# --------------------------------------------------------------------------- WSGI


def make_wsgi_app(
    target: HealthEndpoints | Readiness | None = None,
    *,
    app: Callable[..., Iterable[bytes]] | None = None,
    **options: Any,
) -> Callable[..., Iterable[bytes]]:
    """
    Return a WSGI app serving the three tiers.

    Mount it (werkzeug ``DispatcherMiddleware``) or wrap an app as middleware
    (``flask_app.wsgi_app = make_wsgi_app(readiness, app=flask_app.wsgi_app)``): requests for
    other paths then go to *app*.  Paths are matched against ``PATH_INFO``.

    Args:
        target: A :class:`Readiness` (*options* build the endpoints) or a
            :class:`HealthEndpoints`.
        app: WSGI app that receives every other request.
        **options: Keyword arguments of :class:`HealthEndpoints`.

    Returns:
        The WSGI application.

    .. versionadded:: 0.1.0
    """
    endpoints = _endpoints(target, options)

    def health_wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        tier = endpoints.match(environ.get("PATH_INFO") or "/")
        if tier is None and app is not None:
            return app(environ, start_response)
        if tier is None:
            status, headers, body = _NOT_FOUND
        else:
            status, headers, body = endpoints.respond(
                tier, environ.get("REQUEST_METHOD", "GET"), environ.get("HTTP_ACCEPT")
            )
        start_response(f"{status} {http.HTTPStatus(status).phrase}", _with_length(headers, body))
        return [body]

    health_wsgi.endpoints = endpoints  # type: ignore[attr-defined]
    return health_wsgi


# --------------------------------------------------------------------------- aiohttp


def _aiohttp_web() -> Any:
    try:
        from aiohttp import web
    except ImportError:
        msg = "the aiohttp adapter needs aiohttp: pip install 'obslog[aiohttp]'"
        raise ImportError(msg) from None
    return web


def make_aiohttp_handler(
    target: HealthEndpoints | Readiness | None = None, *, tier: str, **options: Any
) -> Callable[[Any], Awaitable[Any]]:
    """
    Return an aiohttp request handler that serves one tier.

    Args:
        target: A :class:`Readiness` or :class:`HealthEndpoints`.
        tier: ``"health"``, ``"ready"`` or ``"metrics"``.
        **options: Keyword arguments of :class:`HealthEndpoints`.

    Returns:
        ``async def handler(request) -> web.Response``.

    Raises:
        ImportError: If aiohttp is not installed.
        ValueError: On an unknown tier.

    .. versionadded:: 0.1.0
    """
    web = _aiohttp_web()
    if tier not in ("health", "ready", "metrics"):
        msg = f"tier must be 'health', 'ready' or 'metrics', got {tier!r}"
        raise ValueError(msg)
    endpoints = _endpoints(target, options)

    async def handler(request: Any) -> Any:
        status, headers, body = await endpoints.respond_async(
            tier, request.method, request.headers.get("Accept")
        )
        return web.Response(status=status, headers=dict(headers), body=body)

    return handler


def add_aiohttp_routes(
    app: Any, target: HealthEndpoints | Readiness | None = None, **options: Any
) -> HealthEndpoints:
    """
    Add GET (and HEAD) routes for the three tiers to an ``aiohttp.web.Application``.

    Args:
        app: The application (or a sub-application to mount with ``add_subapp``).
        target: A :class:`Readiness` or :class:`HealthEndpoints`.
        **options: Keyword arguments of :class:`HealthEndpoints` (``prefix``, ``*_path``, ...).

    Returns:
        The endpoints the routes serve.

    Raises:
        ImportError: If aiohttp is not installed.

    .. versionadded:: 0.1.0
    """
    endpoints = _endpoints(target, options)
    for path, tier in endpoints.routes.items():
        app.router.add_get(path, make_aiohttp_handler(endpoints, tier=tier))
    return endpoints


# --------------------------------------------------------------------------- standalone


class _Handler(BaseHTTPRequestHandler):
    endpoints: HealthEndpoints
    protocol_version = "HTTP/1.1"
    timeout = 10  # an idle keep-alive connection releases its thread
    # Headers and body go out in two writes; with Nagle on, a keep-alive client's delayed ACK
    # would hold the body back for ~40 ms.
    disable_nagle_algorithm = True
    server_version = "obslog"
    sys_version = ""

    def _serve(self) -> None:
        path = urlsplit(self.path).path or "/"
        accept = self.headers.get("Accept")
        status, headers, body = self.endpoints.handle(path, self.command, accept)
        self.send_response(status)
        for key, value in _with_length(headers, body):
            self.send_header(key, value)
        self.end_headers()
        if body:
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: probes arrive every few seconds."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class HealthServer:
    """
    A running standalone server (see :func:`serve`).

    Attributes:
        host: The address it listens on.
        port: The bound port (the real one when 0 was asked for).
        endpoints: The core it serves.
    """

    def __init__(self, server: ThreadingHTTPServer, endpoints: HealthEndpoints) -> None:
        self._server = server
        self.endpoints = endpoints
        self.host: str = server.server_address[0]  # type: ignore[assignment]
        self.port: int = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.25},
            name="obslog-health-server",
            daemon=True,
        )
        self._thread.start()
        self._closed = False

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:9102``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.endpoints.prefix}"

    def close(self) -> None:
        """Stop serving and release the port (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> HealthServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def serve(
    target: HealthEndpoints | Readiness | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    **options: Any,
) -> HealthServer:
    """
    Serve the three tiers from a stdlib HTTP server in a daemon thread, on a side port.

    For processes without an HTTP server of their own (queue workers, cron-like loops).  Each
    request gets its own thread, so a slow ``/ready`` never holds up ``/health``.

    Args:
        target: A :class:`Readiness` or :class:`HealthEndpoints`.
        host: Address to bind; the default accepts only local connections, use ``"0.0.0.0"``
            for probes from outside the container.
        port: Port to bind; 0 picks a free one (read it from ``.port``).
        **options: Keyword arguments of :class:`HealthEndpoints`.

    Returns:
        The running server; call ``.close()`` (or use it as a context manager) to stop it.

    Raises:
        OSError: If the address cannot be bound.

    .. versionadded:: 0.1.0
    """
    endpoints = _endpoints(target, options)
    handler = type("HealthRequestHandler", (_Handler,), {"endpoints": endpoints})
    server_class = _Server
    if ":" in host:
        server_class = _Server6
    server = server_class((host, port), handler)
    return HealthServer(server, endpoints)
