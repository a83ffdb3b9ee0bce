"""
Bounded label values: route templates, timer names and scope kinds capped at a number of distinct
values, HTTP methods and status classes from fixed sets.
"""

from __future__ import annotations

import threading


__all__ = ["NONE", "OTHER", "UNMATCHED", "LabelCap", "method_label", "status_label"]

UNMATCHED = "<unmatched>"
OTHER = "<other>"
NONE = "<none>"

_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
)
_STATUS_CLASSES = {n: f"{n}xx" for n in range(1, 6)}
_MAX_LABEL_LENGTH = 256

class LabelCap:
    """Map raw values to at most *limit* distinct labels; the rest become ``"<other>"``."""

    __slots__ = ("_limit", "_lock", "_seen")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            msg = f"label limits must be at least 1, not {limit!r}"
            raise ValueError(msg)
        self._limit = limit
        self._seen: dict[str, str] = {}
        self._lock = threading.Lock()

    def __call__(self, value: object) -> str:
        """Return *value* as a label, or ``"<other>"`` past the cap or when it is no string."""
        if not isinstance(value, str):
            return OTHER
        label = self._seen.get(value)
        if label is not None:
            return label
        if not value or len(value) > _MAX_LABEL_LENGTH:
            return OTHER
        with self._lock:
            if len(self._seen) >= self._limit:
                return OTHER
            self._seen[value] = value
        return value

    def __len__(self) -> int:
        """Distinct values admitted so far."""
        return len(self._seen)


def method_label(method: object) -> str:
    """Return the upper-case standard HTTP method, or ``"<other>"``."""
    if isinstance(method, str):
        upper = method.upper()
        if upper in _METHODS:
            return upper
    return OTHER


def status_label(status: object) -> str:
    """Return the status class (``"2xx"``), or ``"<none>"`` without a valid status."""
    if isinstance(status, int) and 100 <= status <= 599:  # HTTP status range
        return _STATUS_CLASSES[status // 100]
    return NONE
