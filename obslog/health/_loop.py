"""
The private event loop that runs async checks for sync callers, rebuilt after a fork.
"""

from __future__ import annotations

import asyncio
import os
import threading

from collections.abc import Callable


def running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


_bg_lock = threading.Lock()
_bg_state: tuple[int, asyncio.AbstractEventLoop] | None = None


def background_loop() -> asyncio.AbstractEventLoop:
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



_fork_hooks: list[Callable[[], None]] = []


def on_fork_in_child(hook: Callable[[], None]) -> None:
    """Run *hook* in a forked child, after the private loop is forgotten."""
    _fork_hooks.append(hook)


def _after_fork_in_child() -> None:
    global _bg_lock, _bg_state
    _bg_lock = threading.Lock()
    _bg_state = None
    for hook in _fork_hooks:
        hook()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
