"""
Runtime state of the current process: one cheap reading, and an opt-in periodic ``runtime`` line.

:func:`sample` returns one reading as a flat dict of numbers -- the operating system's view through
psutil (CPU, memory, threads, file descriptors, context switches) beside the interpreter's own
(``threading.active_count()``, ``gc.get_count()``, ``gc.get_stats()`` and the time spent in garbage
collection, measured with :data:`gc.callbacks`).  A reading costs a few tens of microseconds: it
never walks live objects unless asked with ``objects=True``.

:class:`RuntimeLogger` is an opt-in daemon thread that logs such a reading as one ``runtime`` line
through the stdlib logger ``obslog.runtime`` at a fixed interval (60 s by default).

Process identity is read with :func:`os.getpid` at every sample.  After a fork (a gunicorn master
forking its workers, a ``multiprocessing`` child) the per-process state -- the
:class:`psutil.Process` handle and the CPU baselines -- is rebuilt in the child, and a
:class:`RuntimeLogger` that was running in the parent is restarted in the child.

Field reference (all numbers; ``None`` where the platform has no such figure):

========================================  ==========================================================
``pid``                                   :func:`os.getpid` at the time of the reading
``cpu_percent``                           user+system CPU since this sampler's previous reading, in
                                          percent of one core (the first reading: since the
                                          process started)
``cpu_user_s``, ``cpu_system_s``          cumulative CPU seconds of the process
``rss_bytes``, ``vms_bytes``              resident and virtual memory
``threads``                               OS threads (psutil)
``threads_active``                        live :class:`threading.Thread` objects
``fds``                                   open file descriptors (handles on Windows)
``ctx_switches_voluntary`` / ``_involuntary``  cumulative context switches
``gc_count_gen{0,1,2}``                   :func:`gc.get_count` (allocations since the last run)
``gc_collections`` (+ ``_gen{0,1,2}``)    :func:`gc.get_stats` collections, total and per generation
``gc_collected`` (+ ``_gen{0,1,2}``)      objects collected, total and per generation
``gc_uncollectable``                      uncollectable objects found, total
``gc_pauses``                             collections timed since pause tracking started
``gc_pause_ms_total``                     total time spent in those collections
``gc_pause_ms_max``                       longest single pause since this sampler's previous reading
``uptime_s``                              seconds since the process started
``start_time``                            process start, seconds since the epoch
``objects``                               ``len(gc.get_objects())``, only with ``objects=True``
========================================  ==========================================================

Per-generation figures are separate flat fields rather than lists so that LogQL's ``json`` stage
extracts each of them.  Pause tracking is obslog's one entry in :data:`gc.callbacks`: it is added
by the first reading of a :class:`Sampler` (also of a running :class:`RuntimeLogger`, of
:func:`sample` and of :mod:`obslog.metrics` at a scrape or publish) and removed when the last
sampler that took a reading is closed or garbage collected (:func:`sample`'s own sampler lives as
long as the process).  Creating a sampler changes nothing.  ``gc_pauses`` and
``gc_pause_ms_total`` count the collections timed while it was there; like :func:`gc.get_stats`,
gc figures carry over into a forked child.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import logging
import os
import threading
import time
import weakref

from collections.abc import Callable, Mapping
from typing import Any

import psutil

from obslog import _stats


__all__ = [
    "RuntimeLogger",
    "Sampler",
    "sample",
    "start_runtime_logger",
    "stop_runtime_logger",
]

_GENERATIONS = range(len(gc.get_stats()))
_HAS_FDS = hasattr(psutil.Process, "num_fds")
_HAS_HANDLES = hasattr(psutil.Process, "num_handles")

# -- gc pause timing ------------------------------------------------------------------------------
# A collection cannot nest or overlap another (the interpreter serialises them), so one start
# timestamp is enough.  The callback runs inside every collection: it must stay tiny and never
# raise.
_gc_started = [0.0]
_gc_totals = [0, 0.0]  # [pauses, total_ms]
# One window per live Sampler: each sampler reports the longest pause since its own previous
# reading, independently of the others.  The tuple is replaced, never mutated, so the callback can
# iterate it without a lock and without allocating.
_gc_windows: tuple[_Window, ...] = ()
# Reentrant: a sampler collected while the lock is held drops its window from its finalizer.
_gc_windows_lock = threading.RLock()
_perf_counter = time.perf_counter


class _Window:
    __slots__ = ("max_ms",)

    def __init__(self) -> None:
        self.max_ms = 0.0


def _add_window(window: _Window) -> None:
    # Called with _gc_windows_lock held.
    global _gc_windows  # copy-on-write, see above
    _gc_windows = (*_gc_windows, window)
    if _gc_callback not in gc.callbacks:
        gc.callbacks.append(_gc_callback)


def _drop_window(window: _Window) -> None:
    global _gc_windows
    with _gc_windows_lock:
        _gc_windows = tuple(w for w in _gc_windows if w is not window)
        if not _gc_windows:
            # The last sampler is gone: leave gc.callbacks as it was before the first one.
            with contextlib.suppress(ValueError):
                gc.callbacks.remove(_gc_callback)
            _gc_started[0] = 0.0


def _gc_callback(phase: str, info: Mapping[str, Any]) -> None:
    if phase == "start":
        _gc_started[0] = _perf_counter()
        return
    started = _gc_started[0]
    if not started:
        return
    _gc_started[0] = 0.0
    pause = (_perf_counter() - started) * 1000.0
    _gc_totals[0] += 1
    _gc_totals[1] += pause
    for window in _gc_windows:
        if pause > window.max_ms:
            window.max_ms = pause


# -- sampling -------------------------------------------------------------------------------------
class Sampler:
    """
    Take readings of the current process; each sampler keeps its own CPU and gc-pause window.

    ``cpu_percent`` and ``gc_pause_ms_max`` describe the time since *this* sampler's previous
    reading, so two consumers with different rhythms (a periodic log line, a metrics scrape) each
    get figures for their own interval.  The process id is checked on every reading and the
    per-process state rebuilt after a fork.

    The first reading adds obslog's gc-pause callback to :data:`gc.callbacks` (once for all
    samplers); :meth:`close` -- or the sampler being garbage collected -- removes it when no other
    sampler is left.  ``gc_pause_ms_max`` of the first reading is 0: pauses are timed from then on.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0 :meth:`close`; the gc callback goes with the last sampler.
    """

    __slots__ = (
        "__weakref__", "_closed", "_closer", "_cpu", "_pid", "_proc", "_start", "_wall",
        "_window",
    )

    def __init__(self) -> None:
        self._pid = 0
        self._proc: psutil.Process | None = None
        self._start = 0.0
        self._cpu = 0.0
        self._wall = 0.0
        self._window = _Window()
        self._closer: weakref.finalize[Any, Any] | None = None
        self._closed = False

    def _track_pauses(self) -> None:
        with _gc_windows_lock:  # two threads may take the first reading at once
            if self._closer is not None or self._closed:
                return
            _add_window(self._window)
            self._closer = weakref.finalize(self, _drop_window, self._window)

    def close(self) -> None:
        """
        Stop timing gc pauses for this sampler; safe to call more than once.

        The last sampler closed removes obslog's callback from :data:`gc.callbacks`.  Readings
        still work afterwards, with ``gc_pause_ms_max`` 0.
        """
        self._closed = True
        if self._closer is not None:
            self._closer()

    def __enter__(self) -> Sampler:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _rebuild(self, pid: int) -> psutil.Process:
        proc = psutil.Process(pid)
        self._pid = pid
        self._proc = proc
        self._start = proc.create_time()
        self._cpu = -1.0
        self._wall = 0.0
        return proc

    def sample(self, *, objects: bool = False) -> dict[str, Any]:
        """
        Take one reading.

        Args:
            objects: Also count live objects with ``len(gc.get_objects())``.  This walks every
                tracked object and costs milliseconds on a large heap: never on a hot path.

        Returns:
            A flat dict of numbers; see the module documentation for the fields.

        Raises:
            psutil.Error: The process table could not be read (for example a hardened ``/proc``).
        """
        if self._closer is None and not self._closed:
            self._track_pauses()
        pid = os.getpid()
        proc = self._proc if pid == self._pid else None
        if proc is None:
            proc = self._rebuild(pid)
        with proc.oneshot():
            cpu_times = proc.cpu_times()
            mem = proc.memory_info()
            threads = proc.num_threads()
            ctx = proc.num_ctx_switches()
            if _HAS_FDS:
                fds: int | None = proc.num_fds()
            elif _HAS_HANDLES:  # pragma: no cover - Windows
                fds = proc.num_handles()  # type: ignore[attr-defined]  # stubs: win32 only
            else:  # pragma: no cover
                fds = None
        now = time.time()
        wall = time.monotonic()
        cpu = cpu_times.user + cpu_times.system
        if self._cpu < 0.0:
            elapsed = now - self._start
            used = cpu
        else:
            elapsed = wall - self._wall
            used = cpu - self._cpu
        self._cpu = cpu
        self._wall = wall
        cpu_percent = round(max(used, 0.0) / elapsed * 100.0, 2) if elapsed > 0 else 0.0

        window = self._window
        pause_max = window.max_ms
        window.max_ms = 0.0
        count0, count1, count2 = gc.get_count()
        result: dict[str, Any] = {
            "pid": pid,
            "cpu_percent": cpu_percent,
            "cpu_user_s": cpu_times.user,
            "cpu_system_s": cpu_times.system,
            "rss_bytes": mem.rss,
            "vms_bytes": mem.vms,
            "threads": threads,
            "threads_active": threading.active_count(),
            "fds": fds,
            "ctx_switches_voluntary": ctx.voluntary,
            "ctx_switches_involuntary": ctx.involuntary,
            "gc_count_gen0": count0,
            "gc_count_gen1": count1,
            "gc_count_gen2": count2,
        }
        collections = collected = uncollectable = 0
        for gen, stat in zip(_GENERATIONS, gc.get_stats(), strict=False):
            result[f"gc_collections_gen{gen}"] = stat["collections"]
            result[f"gc_collected_gen{gen}"] = stat["collected"]
            collections += stat["collections"]
            collected += stat["collected"]
            uncollectable += stat["uncollectable"]
        result["gc_collections"] = collections
        result["gc_collected"] = collected
        result["gc_uncollectable"] = uncollectable
        result["gc_pauses"] = _gc_totals[0]
        result["gc_pause_ms_total"] = round(_gc_totals[1], 3)
        result["gc_pause_ms_max"] = round(pause_max, 3)
        result["uptime_s"] = round(max(now - self._start, 0.0), 3)
        result["start_time"] = self._start
        if objects:
            result["objects"] = len(gc.get_objects())
        return result


_default_sampler: Sampler | None = None


def sample(*, objects: bool = False) -> dict[str, Any]:
    """
    Take one reading of the current process with the process-wide default :class:`Sampler`.

    Args:
        objects: Also count live objects (``len(gc.get_objects())``); expensive, only on demand.

    Returns:
        A flat dict of numbers; see the module documentation for the fields.

    Raises:
        psutil.Error: The process table could not be read.

    .. versionadded:: 0.1.0
    """
    global _default_sampler  # one lazily built sampler per process
    sampler = _default_sampler
    if sampler is None:
        sampler = _default_sampler = Sampler()
    return sampler.sample(objects=objects)


# -- background threads ---------------------------------------------------------------------------
_running: set[_Periodic] = set()
_running_lock = threading.Lock()
_fork_hook_installed = False


def _before_fork() -> None:
    # Wait for any thread in the middle of its work: forking while it holds a lock (logging's,
    # prometheus_client's, obslog's counters') would leave that lock held forever in the child.
    for periodic in list(_running):
        periodic._fork_held = periodic._run_lock.acquire(timeout=1.0)


def _after_fork_in_parent() -> None:
    for periodic in list(_running):
        if periodic._fork_held:
            periodic._fork_held = False
            periodic._run_lock.release()


def _restart_in_child() -> None:
    global _running_lock  # a lock held at fork time is unusable in the child
    _running_lock = threading.Lock()
    for periodic in list(_running):
        periodic._after_fork_in_child()


class _Periodic:
    """
    Call *fn* every *interval* seconds on a daemon thread.

    Starts once, stops on :meth:`stop` or at interpreter exit, survives exceptions from *fn*
    (counted in ``obslog.stats()[error_counter]``) and restarts in a forked child.
    """

    def __init__(
        self,
        fn: Callable[[], object],
        interval: float,
        *,
        name: str,
        error_counter: str,
        on_error: Callable[[BaseException], object] | None = None,
        immediately: bool = True,
    ) -> None:
        if not interval > 0:
            msg = f"interval must be a positive number of seconds, not {interval!r}"
            raise ValueError(msg)
        self.fn = fn
        self.interval = float(interval)
        self.name = name
        self._error_counter = error_counter
        self._on_error = on_error
        self._immediately = immediately
        self._lock = threading.Lock()
        self._run_lock = threading.Lock()
        self._fork_held = False
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self) -> bool:
        global _fork_hook_installed
        with self._lock:
            if self._thread is not None:
                return False
            self._stop_event = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(self._stop_event,), name=self.name, daemon=True
            )
            with _running_lock:
                _running.add(self)
                if not _fork_hook_installed and hasattr(os, "register_at_fork"):
                    os.register_at_fork(
                        before=_before_fork,
                        after_in_parent=_after_fork_in_parent,
                        after_in_child=_restart_in_child,
                    )
                    _fork_hook_installed = True
            atexit.unregister(self.stop)
            atexit.register(self.stop)
            self._thread.start()
            return True

    def stop(self, timeout: float | None = 5.0) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop_event.set()
            with _running_lock:
                _running.discard(self)
            atexit.unregister(self.stop)
        if thread is not None and thread is not threading.current_thread() and thread.is_alive():
            thread.join(timeout)

    def _after_fork_in_child(self) -> None:
        # The parent's thread does not exist in the child; its lock may have been held at fork.
        self._lock = threading.Lock()
        self._run_lock = threading.Lock()
        self._fork_held = False
        self._thread = None
        _running.discard(self)
        self.start()

    def _run(self, stop: threading.Event) -> None:
        if self._immediately:
            self.run_once()
        while not stop.wait(self.interval):
            self.run_once()

    def run_once(self) -> bool:
        """Call *fn* once; return False (after counting it) when it raised."""
        try:
            with self._run_lock:
                self.fn()
        # A background thread must outlive any failure of the work it repeats.
        except Exception as exc:
            _stats.incr(self._error_counter)
            if self._on_error is not None:
                try:
                    self._on_error(exc)
                except Exception:
                    _stats.incr(self._error_counter)
            return False
        return True


class RuntimeLogger:
    """
    Log one ``runtime`` line with a :func:`sample` reading every *interval* seconds.

    The line goes through the stdlib logger ``obslog.runtime`` with the message ``"runtime"`` and
    the reading's numbers as ``extra`` fields, so obslog's formatter renders them as top-level JSON
    fields (``pid`` comes from the formatter itself).  The first line is logged as soon as the
    thread starts.  A failing reading is counted in ``obslog.stats()["runtime_errors"]``, logged
    at WARNING, and the thread carries on.

    Example::

        runtime = RuntimeLogger(interval=30).start()
        ...
        runtime.close()

    Args:
        interval: Seconds between lines (default 60).
        logger: The logger or its name.
        level: The level of the ``runtime`` line.
        objects: Also count live objects (expensive; see :meth:`Sampler.sample`).
        sampler: Where the readings come from; a new :class:`Sampler` by default.

    Raises:
        ValueError: *interval* is not a positive number.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        interval: float = 60.0,
        *,
        logger: logging.Logger | str = "obslog.runtime",
        level: int = logging.INFO,
        objects: bool = False,
        sampler: Sampler | None = None,
    ) -> None:
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger
        self.level = level
        self.objects = objects
        self._own_sampler = sampler is None
        self.sampler = sampler if sampler is not None else Sampler()
        self._periodic = _Periodic(
            self.log_once,
            interval,
            name="obslog-runtime",
            error_counter="runtime_errors",
            on_error=self._log_failure,
        )

    @property
    def interval(self) -> float:
        """Seconds between two lines."""
        return self._periodic.interval

    @property
    def running(self) -> bool:
        """Whether the background thread is alive."""
        return self._periodic.running

    def start(self) -> RuntimeLogger:
        """
        Start the background thread; a second call while it runs does nothing.

        Returns:
            This logger, so that ``RuntimeLogger().start()`` can be kept in one name.
        """
        self._periodic.start()
        return self

    def close(self, timeout: float | None = 5.0) -> None:
        """
        Stop the thread and wait up to *timeout* seconds for it; safe to call more than once.

        Also called at interpreter exit.  A sampler the logger made itself is closed too (its gc
        callback goes); one passed in is the caller's to close.
        """
        self._periodic.stop(timeout)
        if self._own_sampler:
            self.sampler.close()

    def log_once(self) -> None:
        """
        Take one reading and log it as a ``runtime`` line (what the thread does every interval).

        Raises:
            Exception: Whatever the sampler raised; the thread counts and logs it instead.
        """
        fields = self.sampler.sample(objects=self.objects)
        fields.pop("pid", None)
        self.logger.log(self.level, "runtime", extra=fields)

    def _log_failure(self, exc: BaseException) -> None:
        self.logger.warning(
            "runtime sample failed",
            exc_info=(type(exc), exc, exc.__traceback__),
        )

    def __enter__(self) -> RuntimeLogger:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_process_logger: RuntimeLogger | None = None
_process_logger_lock = threading.Lock()


def start_runtime_logger(interval: float = 60.0, **kwargs: Any) -> RuntimeLogger:
    """
    Start the process-wide :class:`RuntimeLogger`, once.

    A second call returns the logger already running and ignores its arguments.

    Args:
        interval: Seconds between ``runtime`` lines.
        **kwargs: Passed to :class:`RuntimeLogger`.

    Returns:
        The running process-wide logger.

    .. versionadded:: 0.1.0
    """
    global _process_logger  # the one process-wide instance
    with _process_logger_lock:
        if _process_logger is None:
            _process_logger = RuntimeLogger(interval, **kwargs)
        return _process_logger.start()


def stop_runtime_logger() -> None:
    """
    Stop the process-wide :class:`RuntimeLogger` started by :func:`start_runtime_logger`.

    .. versionadded:: 0.1.0
    """
    global _process_logger
    with _process_logger_lock:
        runtime_logger, _process_logger = _process_logger, None
    if runtime_logger is not None:
        runtime_logger.close()
