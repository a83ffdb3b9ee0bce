"""
Reading back the JSON lines obslog writes into an in-memory stream, and waiting for them.
"""

from __future__ import annotations

import io
import json
import time

from collections.abc import Callable


def parse(stream: io.StringIO) -> list[dict]:
    """Every line written to *stream* so far, each one JSON object."""
    return [json.loads(raw) for raw in stream.getvalue().splitlines()]


def parse_nonblank(stream: io.StringIO) -> list[dict]:
    """The JSON lines written to *stream* so far, blank lines passed over."""
    return [json.loads(line) for line in stream.getvalue().splitlines() if line]


def canonical(lines: list[dict]) -> list[dict]:
    """Return the canonical request lines."""
    return [line for line in lines if line["event"] == "request" and line["logger"] == "obslog"]


def wait_for(
    read: Callable[[], list[dict]],
    predicate: Callable[[list[dict]], object],
    timeout: float = 5.0,
) -> list[dict]:
    """Poll *read* until *predicate(lines)* holds (the server writes from its own thread)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = read()
        if predicate(lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.01) -> bool:
    """Poll *predicate* until it is true or *timeout* passes; return its last value as a bool."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
