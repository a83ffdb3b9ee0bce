"""
The readiness engine behind ``/ready``: a registry of named checks and its single-flight,
cached, time-bounded evaluation.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import logging
import threading
import weakref

from collections.abc import Awaitable, Callable
from time import monotonic
from typing import Any

from ._loop import background_loop, on_fork_in_child, running_loop
from ._report import CheckResult, ReadyReport, error_text, judge


__all__ = ["DEFAULT_BUDGET", "DEFAULT_TTL", "CheckFunc", "Readiness"]

DEFAULT_BUDGET = 1.0
"""Seconds within which ``/ready`` answers, whatever its checks do."""

DEFAULT_TTL = 1.0
"""Seconds for which a readiness answer is reused."""

CheckFunc = Callable[[], Awaitable[bool | None] | bool | None]

_log = logging.getLogger("obslog.health")

# Checks are cut off a little before the budget so the HTTP answer itself arrives within it
# (Kubernetes probes default to a 1 s timeout).
_MARGIN_MAX = 0.05
# A waiter gives up on an evaluation this long after the budget (it can only be late if the
# event loop running it is blocked or gone).
_STALE_GRACE = 0.5


class _Check:
    __slots__ = ("busy_since", "func", "is_async", "name", "required", "run", "timeout")

    def __init__(self, name: str, func: CheckFunc, timeout: float | None, required: bool) -> None:
        self.name = name
        self.func = func
        self.timeout = timeout
        self.required = required
        self.is_async = _is_async_callable(func)
        # A run that outlives its timeout is not started again until it ends, so a hung
        # dependency cannot pile up threads or tasks: busy_since is set while a sync call runs
        # in its thread, run holds the task of an async one (and its start time).
        self.busy_since: float | None = None
        self.run: tuple[asyncio.Future[Any], float] | None = None

    def still_running(self, now: float) -> str | None:
        """Return why a new run may not start (the previous one is still going), or None."""
        if self.busy_since is not None:
            running = (now - self.busy_since) * 1000.0
            return f"previous call has not returned yet (running for {running:.0f} ms)"
        run = self.run
        if run is None:
            return None
        task, since = run
        if task.done() or task.get_loop().is_closed():
            self.run = None
            return None
        running = (now - since) * 1000.0
        return (
            f"previous run has not finished (running for {running:.0f} ms; "
            "it was cancelled at its timeout and has not stopped)"
        )

    def release(self, task: asyncio.Future[Any]) -> None:
        """Forget *task* once it has ended, and retrieve its outcome so none goes unreported."""
        if self.run is not None and self.run[0] is task:
            self.run = None
        if not task.cancelled():
            task.exception()


def _is_async_callable(func: Any) -> bool:
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - an instance with an async __call__
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

    A check cut off at its timeout is reported as ``"timeout"`` and left behind, never waited
    for: an async one is cancelled (if it ignores the cancellation it runs on, abandoned), a sync
    one keeps its thread until it returns.  It is not started again while that run goes on, so
    at most one run per check is ever outstanding, whatever the probe rate.

    Example::

        readiness = Readiness()
        readiness.add("redis", redis_check("redis://127.0.0.1:6379/0"))

        @readiness.add("queue", required=False)
        def queue_depth_ok() -> bool:
            return queue.qsize() < 10_000

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       An async check is no longer awaited past its timeout (one that swallowed
       ``CancelledError`` held every answer past the budget).
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
            check.run = None

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

        A check that holds process-wide state gives it back: a
        :class:`~obslog.checks.ShutdownCheck` restores the signal handlers it replaced.

        Raises:
            KeyError: If no check has that name.

        .. versionchanged:: 0.2.0 releases what the removed check holds.
        """
        with self._lock:
            check = self._checks.pop(name)
            self._cached = None
        release = getattr(check.func, "_obslog_removed", None)
        if release is not None:
            release()

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
            loop = self._loop if self._loop is not None else background_loop()
            if running_loop() is loop:
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
                report = self._failed(f"readiness evaluation failed: {error_text(exc)}")
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
            error = error_text(task.exception())  # type: ignore[arg-type]
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
        busy = check.still_running(start)
        if busy is not None:
            return CheckResult(check.name, "timeout", check.required, 0.0, busy)
        try:
            if check.is_async:
                value = await self._bounded(check, check.func(), timeout)
            else:
                value = await asyncio.wait_for(self._in_thread(check), max(timeout, 0.0))
                if inspect.isawaitable(value):
                    value = await self._bounded(check, value, deadline - monotonic())
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
                check.name, "fail", check.required, round(elapsed, 3), error_text(exc)
            )
        elapsed = round((monotonic() - start) * 1000.0, 3)
        error = judge(value)
        status = "ok" if error is None else "fail"
        return CheckResult(check.name, status, check.required, elapsed, error)

    @staticmethod
    async def _bounded(check: _Check, awaitable: Any, timeout: float) -> Any:
        """
        Await *awaitable* as a task for at most *timeout* seconds.

        At the timeout the task is cancelled and left behind, not awaited: ``asyncio.wait_for``
        would wait for the cancellation to complete, and a check that swallows
        ``CancelledError`` would hold the answer past the budget.  The task stays registered on
        *check* until it ends, so at most one run per check is ever outstanding.
        """
        task = asyncio.ensure_future(awaitable)
        check.run = (task, monotonic())
        task.add_done_callback(check.release)
        try:
            done, _ = await asyncio.wait((task,), timeout=max(timeout, 0.0))
        except asyncio.CancelledError:
            task.cancel()
            raise
        if not done:
            task.cancel()
            raise asyncio.TimeoutError
        return task.result()

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



def _forget_state_in_child() -> None:
    for registry in list(_REGISTRIES):
        registry._reset_state()


on_fork_in_child(_forget_state_in_child)
