"""
One JSON encoding for every line: compact, UTF-8, never ``NaN``/``Infinity``, never raising.

orjson is the fast path.  Without it, the standard library renders the same data: same separators,
non-ASCII kept as is, ``NaN``/``Infinity`` as ``null``, unknown objects as their ``repr``.  Anything
neither can encode directly (lone surrogates, cycles, absurd depth, non-string keys) goes through
:func:`sanitize` first, so a line is always produced.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import math
import uuid

from typing import Any


__all__ = ["dumps", "sanitize"]

try:
    import orjson
except ImportError:  # pragma: no cover - exercised by forcing the fallback in tests
    orjson = None  # type: ignore[assignment]

MAX_DEPTH = 32
_SAFE_SCALARS = (str, int, float, bool, type(None))


def _default(obj: Any) -> Any:
    try:
        return _convert(obj)
    except Exception as exc:  # a broken attribute or __repr__ must not lose the line
        return f"<unrepresentable {type(obj).__qualname__}: {type(exc).__name__}>"


def _convert(obj: Any) -> Any:
    # The types orjson encodes natively, encoded the same way here.
    if isinstance(obj, (datetime.datetime, datetime.date, datetime.time)):
        return obj.isoformat()
    if isinstance(obj, uuid.UUID):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj).decode("utf-8", "backslashreplace")
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    return repr(obj)


def _key(key: Any) -> str:
    if isinstance(key, str):
        return _clean_str(key)
    if isinstance(key, (bytes, bytearray)):  # raw header names: written as text, like values
        return bytes(key).decode("utf-8", "backslashreplace")
    try:
        return _clean_str(str(key))
    except Exception as exc:  # a broken __str__ must not lose the line
        return f"<unrepresentable {type(key).__qualname__}: {type(exc).__name__}>"


def _clean_str(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def sanitize(obj: Any, _depth: int = 0, _seen: frozenset[int] = frozenset()) -> Any:
    """
    Return a copy of *obj* that both encoders accept.

    Strings with lone surrogates are escaped, ``NaN``/``Infinity`` become ``None``, keys become
    strings, cycles become ``"<cycle>"``, nesting below :data:`MAX_DEPTH` becomes
    ``"<too deep>"`` and other objects what the encoders make of them (sets as lists, Enums as
    their value, dataclasses as objects, anything else its ``repr``), sanitized in turn.
    """
    if isinstance(obj, str):
        return _clean_str(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (int, bool)) or obj is None:
        return obj
    if _depth >= MAX_DEPTH:
        return "<too deep>"
    if isinstance(obj, (dict, list, tuple)):
        if id(obj) in _seen:
            return "<cycle>"
        seen = _seen | {id(obj)}
        if isinstance(obj, dict):
            return {_key(k): sanitize(v, _depth + 1, seen) for k, v in obj.items()}
        return [sanitize(v, _depth + 1, seen) for v in obj]
    converted = _default(obj)
    if isinstance(converted, str):
        return _clean_str(converted)
    if id(obj) in _seen:
        return "<cycle>"
    # A set's items, an Enum's value, a dataclass's fields: sanitized like any other value.
    return sanitize(converted, _depth + 1, _seen | {id(obj)})


def _dumps_stdlib(obj: Any) -> str:
    try:
        text = json.dumps(
            obj, default=_default, ensure_ascii=False, allow_nan=False, separators=(",", ":")
        )
        text.encode("utf-8")  # lone surrogates pass json.dumps but cannot be written as UTF-8
        return text
    except (ValueError, TypeError, RecursionError):  # UnicodeEncodeError is a ValueError
        return json.dumps(sanitize(obj), ensure_ascii=False, separators=(",", ":"))


def _dumps_orjson(obj: Any) -> str:
    try:
        return orjson.dumps(obj, _default).decode()  # positional, default UTF-8: fewer steps
    except (TypeError, RecursionError):
        # orjson raises JSONEncodeError (a TypeError) on lone surrogates, cycles, deep nesting and
        # non-string keys and integers beyond 64 bits: render exactly as without orjson.
        return _dumps_stdlib(obj)


#: Encode an object as one compact JSON line (no trailing newline); never raises on content.
dumps = _dumps_stdlib if orjson is None else _dumps_orjson


def use_orjson(enabled: bool) -> None:
    """Switch the encoder (for tests and benchmarks); ``True`` needs orjson installed."""
    global dumps
    if enabled and orjson is None:
        msg = "orjson is not installed: pip install orjson"
        raise ImportError(msg)
    dumps = _dumps_orjson if enabled else _dumps_stdlib
