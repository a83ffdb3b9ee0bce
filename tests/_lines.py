"""
Reading back the JSON lines obslog writes into an in-memory stream, and polling for a condition.

Tests about the lines obslog writes use :mod:`obslog.testing` (the ``captured`` and ``lines``
fixtures); these read a stream for tests that are about the stream itself.
"""

from __future__ import annotations

import io
import json
import time

from collections.abc import Callable


def parse(stream: io.StringIO) -> list[dict]:
    """Every line written to *stream* so far, each one JSON object."""
    return [json.loads(raw) for raw in stream.getvalue().splitlines()]


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.01) -> bool:
    """Poll *predicate* until it is true or *timeout* passes; return its last value as a bool."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
