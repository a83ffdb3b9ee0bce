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
- The text scrubber replaces credentials with an unambiguous shape by ``[REDACTED]``: URL userinfo
  passwords, ``Bearer``/``Basic`` credentials, ``<secret key>=value`` pairs, and
  ``'<secret key>': '...'``, ``('<secret key>', '...')`` and ``<secret key>='...'`` in reprs.
  Bearer/Basic credentials are looked for in each string as the line is built (:func:`has_scheme`,
  :func:`scrub_value`); the other shapes on the finished line (:func:`finish_json`), which also
  escapes U+2028, U+2029 and U+0085 so that a line is one line for every reader.
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

# Each pattern starts with a literal, so that the regex engine skips to its candidates instead of
# trying every position, and keeps the credential inside one JSON string: none matches a bare
# ``"`` or ``\`` (an escaped ``\"`` or ``\\`` inside a password is read as part of it).
# scheme://user:password@host -> scheme://user:[REDACTED]@host
_URL = re.compile(r"(?P<head>://[^\s/?#@\"\\:']*:)(?P<secret>(?:[^\s/?#\"\\']|\\[\\\"])+)(?=@)")
# Authorization-style credentials: Bearer <token>, Basic <base64>
_SCHEME = re.compile(r"(?P<head>[Bb](?P<kind>earer|asic) +)(?P<secret>[A-Za-z0-9\-._~+/]+=*)")
# <secret key>=value as in query strings and key=value text, <secret key>='...' as in the repr of
# a dataclass or namedtuple; the key is read backwards from the "=".
_PAIR = re.compile(r"=(?P<secret>'(?:[^'\\]|\\.)*'|[^\s&\"\\';,)]+)")
# '<secret key>': '...' in a dict's repr, ('<secret key>', '...') in a list of pairs
_REPR = re.compile(r"'(?P<key>[A-Za-z][A-Za-z0-9_.\-]*)'[:,] '(?P<secret>(?:[^'\\]|\\.)*)(?=')")
_KEY_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"
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


def _redact_url(match: re.Match[str]) -> str:
    return match.group("head") + REDACTED


def _redact_scheme(match: re.Match[str]) -> str:
    start = match.start()
    if start and match.string[start - 1].isalpha():  # "xbearer ...": not the word
        return match.group(0)
    check = _basic_credential if match.group("kind") == "asic" else _bearer_token
    return match.group("head") + REDACTED if check(match.group("secret")) else match.group(0)


def _secret_before(text: str, end: int) -> bool:
    # Whether the key that ends at *end* (just before an "=") is a secret one; rstrip finds where
    # the key starts without a Python loop.
    head = text[max(0, end - 64) : end]
    key = head[len(head.rstrip(_KEY_CHARS)) :]
    return bool(key) and key[0].isalpha() and is_secret(key)


def _redact_pair(match: re.Match[str]) -> str:
    if not _secret_before(match.string, match.start()):
        return match.group(0)
    return f"='{REDACTED}'" if match.group("secret")[:1] == "'" else "=" + REDACTED


def _pair_gate(names: Iterable[str]) -> re.Pattern[str]:
    # A cheap test for "a secret name right before an '='", run on the reversed line so that the
    # pattern starts with the literal "=" and the engine jumps from one "=" to the next.  It may
    # say yes when no key is secret (the exact test follows), never no when one is: each "_" of
    # a name may be any run of "_", "-", "." or nothing, in any case (api_key, X-Api-Key, apiKey).
    alternatives = sorted(
        r"[_.\-]*".join(re.escape(part[::-1]) for part in name.split("_")[::-1])
        for name in names
        if name
    )
    if not alternatives:
        return re.compile(r"(?!)")
    return re.compile("=(?:" + "|".join(alternatives) + ")", re.IGNORECASE)


def _scrub_pairs(text: str) -> str:
    # Most "=" in a line belong to no secret (user=42): look before substituting.
    search = _PAIR.search
    match = search(text)
    while match is not None:
        if _secret_before(text, match.start()):
            return _PAIR.sub(_redact_pair, text)
        match = search(text, match.end())
    return text


def _redact_repr(match: re.Match[str]) -> str:
    if not is_secret(match.group("key")):
        return match.group(0)
    return match.group(0)[: match.start("secret") - match.start()] + REDACTED


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
    """The text patterns: ``scrubber(text)`` runs every one that may match."""

    __slots__ = ("_pair_gate", "_user")

    def __init__(self, patterns: Iterable[re.Pattern[str]]) -> None:
        self._user = tuple(patterns)
        self._pair_gate = _pair_gate(getattr(CONFIG, "redact_keys", ()))

    def __call__(self, text: str) -> str:
        if "earer " in text or "asic " in text:
            text = _SCHEME.sub(_redact_scheme, text)
        return self.line(text)

    def line(self, text: str) -> str:
        # Whole lines are tested with single characters first, which CPython finds with memchr:
        # a multi-character test over every line would cost more than the rest of the scrubbing.
        # Bearer/Basic credentials are found in the strings themselves, as the line is built.
        if "@" in text and "://" in text:
            text = _URL.sub(_redact_url, text)
        if "=" in text and self._pair_gate.search(text[::-1]) is not None:
            text = _scrub_pairs(text)
        if "'" in text:
            text = _REPR.sub(_redact_repr, text)
        for pattern in self._user:
            text = pattern.sub(_replace_user, text)
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
