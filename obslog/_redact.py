"""
Redaction: values under secret keys in any container at any depth, and credentials in free text.

Two mechanisms, both applied to every line on both logging paths:

- :func:`redact` walks a field's value.  A value under a secret key (see
  :func:`obslog._config.is_secret`) is replaced by ``[REDACTED]`` whatever the container: ``dict``
  and its subclasses, any ``Mapping`` (``MappingProxyType``, Starlette ``Headers``), mapping-like
  objects with ``items()`` and ``keys()`` (werkzeug ``Headers``), dataclass instances and
  namedtuples (written as objects of their fields), lists, tuples and sets.  Past
  :data:`MAX_DEPTH` levels a container is replaced by ``"<too deep>"``, a cycle by ``"<cycle>"``:
  nothing below the limit is written raw.
- :func:`finish_json` scrubs the rendered line's text: credentials with an unambiguous shape (URL
  userinfo passwords, ``Bearer``/``Basic`` credentials, ``<secret key>=value`` pairs, and
  ``'<secret key>': '...'`` in dict reprs) become ``[REDACTED]``; U+2028, U+2029 and U+0085 are
  escaped so that a line is one line for every reader.
"""

from __future__ import annotations

import dataclasses
import re

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ._config import CONFIG, REDACTED, is_secret


__all__ = [
    "CYCLE",
    "MAX_DEPTH",
    "TOO_DEEP",
    "finish_json",
    "has_scheme",
    "reconfigure",
    "redact",
    "scrub_text",
    "scrub_value",
]

#: Containers nested deeper than this are replaced by :data:`TOO_DEEP`.
MAX_DEPTH = 32
TOO_DEEP = "<too deep>"
CYCLE = "<cycle>"

# How to walk a value, decided once per type.
_LEAF, _DICT, _MAPPING, _LIST, _SET, _DATACLASS, _NAMEDTUPLE = range(7)
_kinds: dict[type, int] = {
    str: _LEAF, int: _LEAF, float: _LEAF, bool: _LEAF, type(None): _LEAF, bytes: _LEAF,
    dict: _DICT, list: _LIST, tuple: _LIST, set: _SET, frozenset: _SET,
}  # fmt: skip

#: Exact types :func:`redact` returns unchanged; checked before any call on the hot path.
LEAF_TYPES = frozenset({str, int, float, bool, type(None), bytes})


def _kind_of(cls: type) -> int:
    kind = _kinds.get(cls)
    if kind is not None:
        return kind
    if issubclass(cls, (str, bytes, bytearray, int, float)):
        kind = _LEAF
    elif dataclasses.is_dataclass(cls):
        kind = _DATACLASS
    elif issubclass(cls, tuple) and hasattr(cls, "_fields"):
        kind = _NAMEDTUPLE
    elif issubclass(cls, dict):
        kind = _MAPPING
    elif issubclass(cls, Mapping) or all(
        callable(getattr(cls, name, None)) for name in ("items", "keys", "__getitem__")
    ):
        kind = _MAPPING  # Mapping ABC, or mapping-like (werkzeug Headers)
    elif issubclass(cls, (list, tuple, deque)):
        kind = _LIST
    elif issubclass(cls, (set, frozenset)):
        kind = _SET
    else:
        kind = _LEAF  # written by the encoder (isoformat, value, repr)
    if len(_kinds) < 4096:
        _kinds[cls] = kind
    return kind


def _secret_key(key: object) -> bool:
    if key.__class__ is str:
        return is_secret(key)
    if isinstance(key, (bytes, bytearray)):  # raw ASGI header names
        return is_secret(bytes(key).decode("latin-1"))
    return isinstance(key, str) and is_secret(str(key))


def redact(value: Any) -> Any:
    """
    Return *value* with every value under a secret key replaced by ``[REDACTED]``, at any depth.

    Plain ``dict``/``list``/``tuple``/``set`` values are copied only when something changes; other
    mappings become ``dict``, dataclass instances and namedtuples a ``dict`` of their fields.
    Containers below :data:`MAX_DEPTH` levels become ``"<too deep>"``, cycles ``"<cycle>"``.
    """
    if value.__class__ is str:
        return scrub_value(value)
    if value.__class__ in LEAF_TYPES:
        return value
    return _walk(value, 0, [])


def _walk(value: Any, depth: int, ancestors: list[int]) -> Any:
    kind = _kinds.get(value.__class__)
    if kind is None:
        kind = _kind_of(value.__class__)
    if kind == _LEAF:
        if value.__class__ is str and has_scheme(value):
            return scrub_text(value)
        return value
    if depth >= MAX_DEPTH:
        return TOO_DEEP
    ident = id(value)
    if ident in ancestors:
        return CYCLE
    ancestors.append(ident)
    try:
        if kind in (_DICT, _MAPPING):
            out: dict[Any, Any] = {}
            changed = kind == _MAPPING
            multi: set[Any] | None = None
            for key, item in value.items():
                new = REDACTED if _secret_key(key) else _walk(item, depth + 1, ancestors)
                if new is not item:
                    changed = True
                if kind == _MAPPING and key in out:  # a multi-dict (headers): keep every value
                    if multi is None:
                        multi = set()
                    if key in multi:
                        out[key].append(new)
                    else:
                        multi.add(key)
                        out[key] = [out[key], new]
                else:
                    out[key] = new
            return out if changed else value
        if kind == _DATACLASS:
            fields = {f.name: getattr(value, f.name, None) for f in dataclasses.fields(value)}
            return _walk(fields, depth, ancestors)
        if kind == _NAMEDTUPLE:
            return _walk(dict(zip(value._fields, value, strict=False)), depth, ancestors)
        items = [_walk(item, depth + 1, ancestors) for item in value]
        if kind == _SET or value.__class__ not in (list, tuple):
            return items
        for a, b in zip(items, value, strict=True):
            if a is not b:
                return items
        return value
    except Exception as exc:  # a container that cannot be read must not lose the line
        return f"<unreadable {type(value).__qualname__}: {type(exc).__name__}>"
    finally:
        ancestors.pop()


# --- Free text --------------------------------------------------------------------------------

# Each alternative keeps the credential inside one JSON string: none matches a bare ``"`` or ``\``
# (an escaped ``\"`` or ``\\`` inside a password is read as part of it).
_BUILTIN_TEXT = (
    # scheme://user:password@host -> scheme://user:[REDACTED]@host
    r"(?P<url>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s/?#@\"\\:']*:)"
    r"(?P<url_secret>(?:[^\s/?#\"\\']|\\[\\\"])+)(?=@)"
    # Authorization-style credentials: Bearer <token>, Basic <base64>
    r"|(?P<scheme>\b(?:[Bb]earer|[Bb]asic) +)(?P<scheme_secret>[A-Za-z0-9\-._~+/]+=*)"
    # <secret key>=value as in query strings and key=value logs, <secret key>='...' as in the repr
    # of a dataclass or namedtuple
    r"|(?P<pair>(?<![A-Za-z0-9_.\-])(?P<pair_key>[A-Za-z][A-Za-z0-9_.\-]*)=)"
    r"(?P<pair_secret>'(?:[^'\\]|\\.)*'|[^\s&\"\\';,)]+)"
    # '<secret key>': '...' in a dict's repr, ('<secret key>', '...') in a list of pairs
    r"|(?P<repr>'(?P<repr_key>[A-Za-z][A-Za-z0-9_.\-]*)'[:,] ')"
    r"(?P<repr_secret>(?:[^'\\]|\\.)*)(?=')"
)
_B64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def _basic_credential(token: str) -> bool:
    # Base64 of ``user:password``: a multiple of 4 characters, and not an ordinary word.
    return (
        len(token) >= 8
        and len(token) % 4 == 0
        and _B64.fullmatch(token) is not None
        and (token[1:] != token[1:].lower() or any(c in token for c in "0123456789+/="))
    )


def _bearer_token(token: str) -> bool:
    return len(token) >= 8 or not token.isalpha()


def _replace(match: re.Match[str]) -> str:
    group = match.lastgroup
    text = match.group(0)
    if group == "url_secret":
        return match.group("url") + REDACTED
    if group == "scheme_secret":
        token = match.group("scheme_secret")
        check = _basic_credential if match.group("scheme").strip().lower() == "basic" else (
            _bearer_token
        )
        return match.group("scheme") + REDACTED if check(token) else text
    if group == "pair_secret":
        if not is_secret(match.group("pair_key")):
            return text
        quoted = match.group("pair_secret")[:1] == "'"
        return match.group("pair") + (f"'{REDACTED}'" if quoted else REDACTED)
    if group == "repr_secret":
        return match.group("repr") + REDACTED if is_secret(match.group("repr_key")) else text
    return text


def _replace_user(match: re.Match[str]) -> str:
    # A configured pattern: its "secret" group if it has one, else the whole match.
    if "secret" not in match.re.groupindex:
        return REDACTED
    start, end = match.span("secret")
    if start < 0:
        return match.group(0)
    base = match.start()
    text = match.group(0)
    return text[: start - base] + REDACTED + text[end - base :]


def has_scheme(text: str) -> bool:
    """Return whether *text* may hold a ``Bearer``/``Basic`` credential (a cheap test)."""
    return "earer " in text or "asic " in text


class _TextScrubber:
    """The compiled text patterns: ``scrubber(text)`` runs them all."""

    __slots__ = ("_builtin", "_user")

    def __init__(self, patterns: Iterable[re.Pattern[str]]) -> None:
        self._builtin = re.compile(_BUILTIN_TEXT)
        self._user = tuple(patterns)

    def __call__(self, text: str) -> str:
        text = self._builtin.sub(_replace, text)
        for pattern in self._user:
            text = pattern.sub(_replace_user, text)
        return text

    def line(self, text: str) -> str:
        # Whole lines are tested with single characters only, which CPython finds with memchr:
        # every multi-character test over a whole line would cost more than the rest of the
        # scrubbing.  Bearer/Basic credentials are found in the strings themselves (has_scheme).
        if "@" in text or "=" in text or "'" in text or self._user:
            return self(text)
        return text


def _nothing(text: str) -> str:
    return text


#: Scrub credentials out of *text* (every pattern, no pre-test); see :func:`reconfigure`.
scrub_text: Callable[[str], str] = _TextScrubber(())
_scrub_line: Callable[[str], str] = _TextScrubber(()).line
#: No configured patterns: a line without ``@``, ``=`` or ``'`` needs no scrubbing.
no_user_patterns = True


def reconfigure() -> None:
    """Rebuild the scrubber from ``CONFIG.redact_text`` and ``CONFIG.redact_patterns``."""
    global scrub_text, _scrub_line, no_user_patterns
    enabled = getattr(CONFIG, "redact_text", True)
    patterns = getattr(CONFIG, "redact_patterns", ())
    no_user_patterns = not (enabled and patterns)
    if enabled:
        scrubber = _TextScrubber(patterns)
        scrub_text, _scrub_line = scrubber, scrubber.line
    else:
        scrub_text = _scrub_line = _nothing


def scrub_value(text: str) -> str:
    """Return the string *text* with credentials scrubbed if it may hold a Bearer/Basic one."""
    return scrub_text(text) if has_scheme(text) else text


def finish_json(text: str) -> str:
    """
    Return the JSON line *text* ready to write: credentials scrubbed, line separators escaped.
    """
    if not text.isascii():
        text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
        text = text.replace("\x85", "\\u0085")
    return _scrub_line(text)
