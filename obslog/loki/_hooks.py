"""
LokiHandler's process hooks: an ``atexit`` flush, a fork hook, and the opt-in ``SIGTERM`` flush.

Nothing here runs unless a handler exists: the first :class:`~obslog.loki.LokiHandler` registers
the ``atexit`` and fork hooks (they act on live handlers only).  The ``SIGTERM`` handler is
installed only for a handler created with ``flush_on_sigterm=True``, and the handler that was
there before comes back when the last such handler is closed (unless something else replaced
ours in the meantime: then that one stays).

The ``SIGTERM`` handler itself does almost nothing, because a Python signal handler runs between
two bytecodes of the main thread, possibly in the middle of a ``print``: writing to a stream or
waiting there can fail (``RuntimeError: reentrant call``) or deadlock.  It writes one byte to a
pipe; a helper thread flushes every live handler, then sends ``SIGTERM`` again, and that second
delivery calls the previous handler (or the default action) in the main thread.  A second
``SIGTERM`` while the flush runs chains at once.  (An application handler installed after ours
that calls ours runs on both deliveries.)
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import threading
import weakref

from types import FrameType
from typing import TYPE_CHECKING, Any


if TYPE_CHECKING:
    from .handler import LokiHandler


__all__ = ["install_sigterm_flush", "register", "release_sigterm_flush", "unregister"]

_live: weakref.WeakSet[LokiHandler] = weakref.WeakSet()
_hooks_lock = threading.Lock()
_hooks_installed = False


def register(handler: LokiHandler) -> None:
    """Track *handler* for the ``atexit`` close and the fork hook (installed once)."""
    global _hooks_installed
    with _hooks_lock:
        _live.add(handler)
        if _hooks_installed:
            return
        _hooks_installed = True
    atexit.register(_close_all)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_in_child)


def unregister(handler: LokiHandler) -> None:
    """Forget *handler* (closed)."""
    with _hooks_lock:
        _live.discard(handler)


def _close_all() -> None:
    for handler in list(_live):
        with contextlib.suppress(Exception):  # exiting anyway
            handler.close()


def _after_fork_in_child() -> None:
    global _hooks_lock
    _hooks_lock = threading.Lock()
    for handler in list(_live):
        handler._after_fork_in_child()
    _SIGTERM.after_fork_in_child()


def _flush_all() -> None:
    for handler in list(_live):
        with contextlib.suppress(Exception):  # the signal must still reach the application
            handler.flush()


def _call_previous(previous: Any, signum: int, frame: FrameType | None) -> None:
    """Do what *signum* would have done without us."""
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_DFL:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    # SIG_IGN: nothing


def _signal_main_thread(signum: int) -> None:
    """Send *signum* to the main thread itself, so that its blocking call is interrupted."""
    main = threading.main_thread().ident
    if main is not None and hasattr(signal, "pthread_kill"):
        try:
            signal.pthread_kill(main, signum)
        except (OSError, ValueError):
            pass  # the main thread is gone: the process is exiting, signal it as a whole
        else:
            return
    with contextlib.suppress(OSError):
        os.kill(os.getpid(), signum)


class _SigtermFlush:
    """The one ``SIGTERM`` handler of the process, shared by every handler that asked for it."""

    def __init__(self) -> None:
        self.users: weakref.WeakSet[LokiHandler] = weakref.WeakSet()
        self.previous: Any = None
        self.installed = False
        self.flushing = False
        self.chain_due = False
        self.wake: tuple[int, int] | None = None
        self.thread: threading.Thread | None = None

    def install(self, handler: LokiHandler) -> bool:
        sigterm = getattr(signal, "SIGTERM", None)
        if sigterm is None or threading.current_thread() is not threading.main_thread():
            return False
        if self.installed:
            self.users.add(handler)
            return True
        try:
            previous = signal.getsignal(sigterm)
        except (ValueError, OSError):
            return False
        if previous is None:
            return False  # installed outside Python: we could not call it, so leave it alone
        if not self._start_helper():
            return False
        try:
            signal.signal(sigterm, self.on_signal)
        except (ValueError, OSError):
            self._stop_helper()
            return False
        self.previous, self.installed = previous, True
        self.users.add(handler)
        return True

    def release(self, handler: LokiHandler) -> None:
        if handler not in self.users:
            return
        self.users.discard(handler)
        if self.users or not self.installed:
            return
        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread may set signal handlers: keep flushing for the rest
        self.flushing = self.chain_due = False
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(signal.SIGTERM) == self.on_signal:
                signal.signal(signal.SIGTERM, self.previous)
            # else: someone replaced ours (and may chain to it): leave theirs in place
        self.installed = False
        self.previous = None
        self._stop_helper()

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        """The ``SIGTERM`` handler: hand the flush to the helper thread, or chain."""
        if self.chain_due or self.flushing or self.wake is None:
            # After the flush (the helper's second SIGTERM), or asked twice, or no helper.
            self.chain_due = self.flushing = False
            _call_previous(self.previous, signum, frame)
            return
        self.flushing = True
        try:
            os.write(self.wake[1], b"f")
        except OSError:
            self.flushing = False
            _call_previous(self.previous, signum, frame)

    def _run(self, read_fd: int) -> None:
        while True:
            try:
                command = os.read(read_fd, 1)
            except OSError:
                return
            if command != b"f":
                return  # b"q" or the pipe was closed
            _flush_all()
            if self.flushing and self.installed:  # not chained meanwhile, nor released
                self.chain_due = True
                _signal_main_thread(signal.SIGTERM)

    def _start_helper(self) -> bool:
        try:
            read_fd, write_fd = os.pipe()
        except OSError:
            return False
        thread = threading.Thread(
            target=self._run, args=(read_fd,), name="obslog-loki-sigterm", daemon=True
        )
        try:
            thread.start()
        except RuntimeError:
            os.close(read_fd)
            os.close(write_fd)
            return False
        self.wake, self.thread = (read_fd, write_fd), thread
        return True

    def _stop_helper(self) -> None:
        wake, thread = self.wake, self.thread
        self.wake = self.thread = None
        if wake is None:
            return
        with contextlib.suppress(OSError):
            os.write(wake[1], b"q")
        if thread is not None and thread is not threading.current_thread():
            thread.join(1.0)
        for fd in wake:
            with contextlib.suppress(OSError):
                os.close(fd)

    def after_fork_in_child(self) -> None:
        """The helper thread did not survive the fork: start the child's own."""
        self.flushing = self.chain_due = False
        if not self.installed:
            return
        wake = self.wake
        self.wake = self.thread = None
        if wake is not None:
            for fd in wake:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._start_helper()


_SIGTERM = _SigtermFlush()


def install_sigterm_flush(handler: LokiHandler) -> bool:
    """Flush every live handler on ``SIGTERM``, then chain; main thread only."""
    return _SIGTERM.install(handler)


def release_sigterm_flush(handler: LokiHandler) -> None:
    """Restore the previous ``SIGTERM`` handler once no open handler asked for ours."""
    _SIGTERM.release(handler)
