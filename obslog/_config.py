"""
Global state department: what obslog was configured with.

One :class:`_Configuration` instance, :data:`CONFIG`, read on the hot path by the renderers and the
scopes.  :func:`obslog.configure` writes it, and so does ``logging.config.dictConfig`` when it
applies a dict from :func:`obslog.dict_config` (which itself changes nothing);
:func:`reset_defaults` restores the built-in values (tests use it between cases).
"""

from __future__ import annotations

import logging
import os
import re

from typing import Any


__all__ = [
    "CONFIG",
    "DEFAULT_REDACT_KEYS",
    "get_config",
    "is_secret",
    "reset_defaults",
    "update",
]

DEFAULT_REDACT_KEYS: frozenset[str] = frozenset(
    {
        "password", "passwd", "pwd", "passphrase", "authorization", "cookie", "token", "secret",
        "api_key", "apikey", "private_key", "credentials",
    }
)  # fmt: skip
REDACTED = "[REDACTED]"
FORMATS = ("json", "console")

_BUILTIN: dict[str, Any] = {
    "service": None,
    "env": None,
    "version": None,
    "level": logging.INFO,
    "fmt": "json",
    "redact_keys": DEFAULT_REDACT_KEYS,
    "sample_rate": 1,
    "slow_ms": None,
    "canonical_logger": "obslog",
    "colors": False,
    "redact_text": True,
    "redact_patterns": (),
    "callsite": False,
}


class _Configuration:
    """The settings every part of obslog reads; see :func:`obslog.configure` for each one."""

    __slots__ = (
        "callsite",
        "canonical_logger",
        "colors",
        "env",
        "fmt",
        "level",
        "redact_keys",
        "redact_patterns",
        "redact_text",
        "sample_rate",
        "service",
        "slow_ms",
        "static",
        "version",
    )

    service: str | None
    env: str | None
    version: str | None
    level: int
    fmt: str
    redact_keys: frozenset[str]
    redact_text: bool
    redact_patterns: tuple[re.Pattern[str], ...]
    sample_rate: int
    slow_ms: float | None
    canonical_logger: str
    colors: bool
    static: dict[str, str]
    callsite: bool

    def __init__(self) -> None:
        for name, value in _BUILTIN.items():
            setattr(self, name, value)
        self.static = {}


CONFIG = _Configuration()


def parse_level(level: int | str) -> int:
    """Return the numeric level of *level* (``"info"``, ``"INFO"``, ``20``)."""
    if isinstance(level, bool) or not isinstance(level, (int, str)):
        msg = f"level must be a level name such as 'INFO' or an int, not {level!r}"
        raise TypeError(msg)
    if isinstance(level, int):
        return level
    value = logging.getLevelName(level.strip().upper())
    if not isinstance(value, int):
        msg = f"unknown log level {level!r}; valid: DEBUG, INFO, WARNING, ERROR, CRITICAL"
        raise ValueError(msg)
    return value


def _validated(name: str, value: Any) -> Any:
    if name == "level":
        return parse_level(value)
    if name == "fmt":
        if value not in FORMATS:
            msg = f"fmt must be one of {FORMATS}, not {value!r}"
            raise ValueError(msg)
        return value
    if name == "redact_keys":
        if isinstance(value, str):
            msg = "redact_keys must be an iterable of key names, not a single string"
            raise TypeError(msg)
        return frozenset(normalize_key(str(k)) for k in value)
    if name in ("redact_text", "callsite"):
        if not isinstance(value, bool):
            msg = f"{name} must be True or False, not {value!r}"
            raise TypeError(msg)
        return value
    if name == "redact_patterns":
        return _patterns(value)
    if name == "sample_rate":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            msg = f"sample_rate must be an int >= 1 (keep 1 in N lines), not {value!r}"
            raise ValueError(msg)
        return value
    if name == "slow_ms":
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            msg = f"slow_ms must be a number of milliseconds or None, not {value!r}"
            raise TypeError(msg)
        return value
    if name == "colors":
        return bool(value)
    if name in ("service", "env", "version", "canonical_logger"):
        if value is not None and not isinstance(value, str):
            msg = f"{name} must be a str, not {type(value).__name__}"
            raise TypeError(msg)
        return value
    msg = f"unknown setting {name!r}"  # pragma: no cover - guarded by callers
    raise TypeError(msg)


_ENV = {"level": "OBSLOG_LEVEL", "fmt": "OBSLOG_FORMAT", "service": "OBSLOG_SERVICE"}


def update(**settings: Any) -> None:
    """
    Validate and store *settings*; ``None`` leaves a setting unchanged.

    The environment wins over arguments for ``OBSLOG_LEVEL``, ``OBSLOG_FORMAT`` and
    ``OBSLOG_SERVICE``, so operators can change them without a code change.
    """
    from_env = {}
    for name, var in _ENV.items():
        env_value = os.environ.get(var)
        if env_value:
            settings[name] = env_value.lower() if name == "fmt" else env_value
            from_env[name] = var
    validated = {}
    for name, value in settings.items():
        if value is None:
            continue
        try:
            validated[name] = _validated(name, value)
        except ValueError as exc:
            if name not in from_env:
                raise
            # Name the variable: the caller's code never mentioned the bad value.
            msg = f"environment variable {from_env[name]}={value!r}: {exc}"
            raise ValueError(msg) from None
    for name, value in validated.items():
        setattr(CONFIG, name, value)
    _secret_cache.clear()
    _text_changed()
    CONFIG.static = {
        key: value
        for key, value in (
            ("service", CONFIG.service),
            ("env", CONFIG.env),
            ("version", CONFIG.version),
        )
        if value is not None
    }


_secret_cache: dict[str, bool] = {}
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NON_WORD = re.compile(r"[^a-z0-9]+")


def normalize_key(key: str) -> str:
    """Return *key* as redaction compares it: ``X-Api-Key``, ``xApiKey`` -> ``x_api_key``."""
    return _NON_WORD.sub("_", _CAMEL.sub("_", key).lower())


def _patterns(value: Any) -> tuple[re.Pattern[str], ...]:
    if isinstance(value, (str, re.Pattern)):
        value = (value,)
    out = []
    for item in value:
        if isinstance(item, str):
            try:
                item = re.compile(item)
            except re.error as exc:
                msg = f"redact_patterns: {item!r} is not a valid regular expression: {exc}"
                raise ValueError(msg) from None
        if not isinstance(item, re.Pattern) or not isinstance(item.pattern, str):
            msg = f"redact_patterns must be regular expressions (str or compiled), not {item!r}"
            raise TypeError(msg)
        out.append(item)
    return tuple(out)


def _text_changed() -> None:
    from . import _redact

    _redact.reconfigure()


def is_secret(key: object) -> bool:
    """
    Return whether values under *key* must be redacted.

    A key matches a redact name when, lower-cased with camelCase split and every other character
    than a letter or digit read as ``_``, it equals the name or ends in ``_<name>``:
    ``Authorization``, ``db_password``, ``X-Api-Key``, ``accessToken`` and ``set-cookie`` match;
    ``token_count`` does not.
    """
    if not isinstance(key, str):
        return False
    hit = _secret_cache.get(key)
    if hit is None:
        norm = normalize_key(key)
        hit = any(norm == name or norm.endswith("_" + name) for name in CONFIG.redact_keys)
        if len(_secret_cache) < 8192:
            _secret_cache[key] = hit
    return hit


def get_config() -> dict[str, Any]:
    """Return the current settings as a dict."""
    return {name: getattr(CONFIG, name) for name in _BUILTIN}


def reset_defaults() -> None:
    """Restore the built-in settings."""
    for name, value in _BUILTIN.items():
        setattr(CONFIG, name, value)
    CONFIG.static = {}
    _secret_cache.clear()
    _text_changed()
