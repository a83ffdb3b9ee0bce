"""
Helpers for testing code that logs through obslog.

:func:`capture_lines` collects the lines obslog would write, stdlib and structlog alike, canonical
lines included, as parsed dicts with the same schema and redaction as the real output:

.. code-block:: python

    from obslog.testing import capture_lines

    def test_checkout_logs_one_request_line(client):
        with capture_lines() as lines:
            client.post("/checkout")
        request = lines.canonical()[-1]
        assert "/checkout" == request["route"]
        assert 200 == request["status"]

:func:`reset` puts obslog's process-wide state back to its defaults; call it between tests (an
autouse fixture) when tests call :func:`obslog.configure`.

Neither is thread-safe against a concurrent :func:`obslog.configure`; lines written from other
threads while the block is open are captured.  When a server answers from its own thread (uvicorn,
werkzeug, a worker pool), :meth:`CapturedLines.wait_for` (or :meth:`CapturedLines.wait_for_async`
inside a running event loop) waits until the lines the test expects have been written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

from collections.abc import Callable, Iterator, Sequence
from typing import Any, overload

import structlog

from ._config import CONFIG, reset_defaults
from ._configure import configure_structlog
from ._stdlib import JsonFormatter
from .processors import render_to_stdlib


__all__ = ["CapturedLines", "capture_lines", "reset"]


class CapturedLines(Sequence[dict[str, Any]]):
    """
    The lines captured so far, each one parsed JSON object, in the order they were written.

    ``raw`` holds the text of each line as obslog rendered it.

    .. versionadded:: 0.2.0
    """

    def __init__(self) -> None:
        self.raw: list[str] = []
        self._parsed: list[dict[str, Any]] = []

    def _append(self, text: str) -> None:
        # Parsed first, raw second: a snapshot taken meanwhile sizes itself on raw.
        self._parsed.append(json.loads(text))
        self.raw.append(text)

    @property
    def text(self) -> str:
        """
        Every line as obslog rendered it, one per line (to assert a value appears nowhere).

        .. versionadded:: 0.2.0
        """
        return "".join(raw + "\n" for raw in self.raw)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        return self._parsed[index]

    def __len__(self) -> int:
        return len(self._parsed)

    def __repr__(self) -> str:
        return f"CapturedLines({self._parsed!r})"

    def find(self, **fields: Any) -> list[dict[str, Any]]:
        """Return the lines whose fields equal every one of *fields* (``event="order listed"``)."""
        items = fields.items()
        return [line for line in self._parsed if all(line.get(k, _MISSING) == v for k, v in items)]

    def one(self, **fields: Any) -> dict[str, Any]:
        """
        Return the only line matching *fields*.

        Raises:
            AssertionError: none or more than one line matches; the message lists the lines.
        """
        found = self.find(**fields)
        if len(found) != 1:
            msg = f"expected one line with {fields!r}, found {len(found)}: {self._parsed!r}"
            raise AssertionError(msg)
        return found[0]

    def canonical(self, kind: str = "request") -> list[dict[str, Any]]:
        """Return the canonical lines of *kind* (``request``, ``task``, ``job``, ...)."""
        return [
            line
            for line in self._parsed
            if line.get("event") == kind and line.get("logger") == CONFIG.canonical_logger
        ]

    def of_request(self, request_id: str) -> list[dict[str, Any]]:
        """Return every line of the request (or other scope) with *request_id*."""
        return self.find(request_id=request_id)

    def snapshot(self) -> CapturedLines:
        """
        Return a copy of the lines captured so far, unchanged by lines written later.

        .. versionadded:: 0.2.0
        """
        copy = CapturedLines()
        # Copy raw first: a line appended meanwhile by another thread is then left out of both.
        copy.raw = self.raw[:]
        copy._parsed = self._parsed[: len(copy.raw)]
        return copy

    def wait_for(
        self, predicate: Callable[[CapturedLines], object], timeout: float = 5.0
    ) -> CapturedLines:
        """
        Wait until *predicate* holds for the lines written so far; return those lines.

        For lines written by another thread (a server under test answers from its own thread, so
        its canonical line may land after the client has its response)::

            lines.wait_for(lambda ls: ls.canonical())

        Args:
            predicate: Called with a :meth:`snapshot` until it returns something true.
            timeout: Seconds to wait at most.

        Returns:
            The snapshot that satisfied *predicate*, or the last one when *timeout* passed: the
            test's own assertions then say what is missing.

        .. versionadded:: 0.2.0
        """
        deadline = time.monotonic() + timeout
        while True:
            lines = self.snapshot()
            if predicate(lines) or time.monotonic() > deadline:
                return lines
            time.sleep(_POLL_S)

    async def wait_for_async(
        self, predicate: Callable[[CapturedLines], object], timeout: float = 5.0
    ) -> CapturedLines:
        """
        :meth:`wait_for` for a test that runs the server in its own event loop (aiohttp).

        Sleeps with :func:`asyncio.sleep`, so the server keeps running while the test waits.

        .. versionadded:: 0.2.0
        """
        deadline = time.monotonic() + timeout
        while True:
            lines = self.snapshot()
            if predicate(lines) or time.monotonic() > deadline:
                return lines
            await asyncio.sleep(_POLL_S)


_POLL_S = 0.02


_MISSING = object()


class _CaptureHandler(logging.Handler):
    def __init__(self, lines: CapturedLines) -> None:
        super().__init__()
        self.lines = lines
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines._append(self.format(record))


@contextlib.contextmanager
def capture_lines(
    level: int | str = logging.DEBUG, *, logger: str | logging.Logger | None = None
) -> Iterator[CapturedLines]:
    """
    Capture every line obslog writes while the block runs, at *level* and above.

    A handler with :class:`obslog.JsonFormatter` is added to the root logger, whose level is
    lowered to *level* for the block.  structlog is routed through obslog for the block when it is
    not already (:func:`obslog.configure` does that).  Loggers that do not propagate to the root
    (``propagate = False``) are not captured, unless named as *logger*.  Everything is restored on
    exit.

    Args:
        level: The lowest level captured (a name or a number).
        logger: Capture at this logger (a name or a :class:`logging.Logger`) instead of the root:
            its lines and its children's, whether it propagates or not.

    Yields:
        CapturedLines: filled as lines are written.

    .. versionadded:: 0.2.0
    """
    lines = CapturedLines()
    handler = _CaptureHandler(lines)
    target = logger if isinstance(logger, logging.Logger) else logging.getLogger(logger)
    saved_level = target.level
    was_configured = structlog.is_configured()
    saved_structlog = structlog.get_config()
    routed = render_to_stdlib in saved_structlog["processors"]
    target.addHandler(handler)
    target.setLevel(level)
    if not routed:
        configure_structlog()
    try:
        yield lines
    finally:
        target.removeHandler(handler)
        target.setLevel(saved_level)
        if not routed and was_configured:
            structlog.configure(**saved_structlog)
        elif not routed:
            structlog.reset_defaults()


def reset() -> None:
    """
    Put obslog's settings, structlog's configuration and bound contextvars back to their defaults.

    Handlers that :func:`obslog.configure` added to the root logger stay; remove them in your
    fixture if your tests add their own.

    .. versionadded:: 0.2.0
    """
    reset_defaults()
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
