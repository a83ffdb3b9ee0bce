"""
Checks of the values users give scopes and timers: names, HTTP statuses, levels.

Each check returns the value to keep or raises a ``TypeError``/``ValueError`` that says what is
valid, where the value is given rather than where it is used.
"""

from __future__ import annotations

import logging
import re


__all__ = ["check_level", "check_name", "check_status", "valid_names"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
# Names already checked; bounded, so that unbounded dynamic names cannot grow it.
valid_names: set[str] = set()


def check_name(name: object, what: str) -> str:
    """Return *name* if it is a valid field and Loki label name; *what* names it in errors."""
    if type(name) is str and name in valid_names:
        return name
    if not isinstance(name, str):
        msg = f"{what} must be a str, not {type(name).__name__}"
        raise TypeError(msg)
    if _NAME.fullmatch(name) is None:
        msg = (
            f"invalid {what} {name!r}: use 1-64 characters [A-Za-z0-9_], not starting with a "
            "digit, so that it stays a valid field and Loki label name"
        )
        raise ValueError(msg)
    if len(valid_names) < 4096:
        valid_names.add(name)
    return name


def check_status(value: object) -> int | None:
    """Return *value* as an HTTP status (an ``int`` from 100 to 599) or ``None``."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        msg = f"status must be an int from 100 to 599 or None, not {type(value).__name__}"
        raise TypeError(msg)
    if not 100 <= value <= 599:  # the HTTP status range
        msg = f"status must be an int from 100 to 599 or None, not {value!r}"
        raise ValueError(msg)
    return int(value)  # an HTTPStatus becomes a plain int


def check_level(value: object) -> int | None:
    """Return *value* as a logging level: an ``int``, a level name (any case) or ``None``."""
    if value is None:
        return None
    if isinstance(value, str):
        level = logging.getLevelName(value.upper())
        if isinstance(level, int):
            return level
        msg = (
            f"unknown level name {value!r}: use a logging level name (DEBUG, INFO, WARNING, "
            "ERROR, CRITICAL) or an int"
        )
        raise ValueError(msg)
    if not isinstance(value, int) or isinstance(value, bool):
        msg = f"level must be an int, a level name or None, not {type(value).__name__}"
        raise TypeError(msg)
    if value < 0:
        msg = f"level must not be negative, not {value!r}"
        raise ValueError(msg)
    return int(value)
