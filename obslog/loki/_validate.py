"""
Checks of LokiHandler's arguments, and the request headers and connection they make.

Every error message says what is valid.
"""

from __future__ import annotations

import base64
import http.client
import re
import ssl

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from .._schema import PER_RECORD_FIELDS
from ._stream import CANONICAL_LABEL


__all__ = [
    "PUSH_PATH",
    "connection_factory",
    "parse_url",
    "positive",
    "redact",
    "request_headers",
    "validate_labels",
]

PUSH_PATH = "/loki/api/v1/push"

# Loki's default max_label_names_per_series; the level and canonical-stream labels take theirs.
_MAX_LABELS = 15
_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Per-record fields of the obslog schema: as stream labels they would create a stream per value.
_PER_RECORD_FIELDS = PER_RECORD_FIELDS


def redact(url: str) -> str:
    """Return *url* with any ``user:password@`` replaced, without parsing the rest."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, tail = rest.partition("/")
    if not sep or "@" not in netloc:
        return url
    return f"{scheme}://***@{netloc.rpartition('@')[2]}{slash}{tail}"


def parse_url(url: Any) -> tuple[str, str, int | None, str, str | None, str | None]:
    example = f"'http://loki:3100{PUSH_PATH}'"
    if not isinstance(url, str) or not url.strip():
        msg = f"LokiHandler needs the URL of Loki's push API, such as {example}; got {url!r}"
        raise ValueError(msg)
    url = url.strip()
    shown = redact(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        msg = f"LokiHandler url {shown!r} is not a valid URL ({exc}); expected such as {example}"
        raise ValueError(msg) from None
    if parts.scheme not in ("http", "https"):
        msg = (
            f"LokiHandler url must start with http:// or https://, such as {example}; got {shown!r}"
        )
        raise ValueError(msg)
    host = parts.hostname
    if not host or any(c.isspace() for c in host):
        msg = f"LokiHandler url {shown!r} has no valid host; expected such as {example}"
        raise ValueError(msg)
    path = parts.path if parts.path not in ("", "/") else PUSH_PATH
    if parts.query:
        path = f"{path}?{parts.query}"
    return parts.scheme, host, port, path, parts.username, parts.password


def validate_labels(
    labels: Mapping[str, Any], level_label: bool, canonical_stream: bool
) -> dict[str, str]:
    """Return *labels* as a dict, or raise when one is invalid, per-record or reserved."""
    if not isinstance(labels, Mapping):
        msg = f"labels must be a mapping of label name to value, not {type(labels).__name__}"
        raise TypeError(msg)
    result: dict[str, str] = {}
    for name, value in labels.items():
        if not isinstance(name, str) or not _LABEL_NAME.match(name) or name.startswith("__"):
            msg = (
                f"invalid Loki label name {name!r}: use letters, digits and underscores, "
                "not starting with a digit or '__'"
            )
            raise ValueError(msg)
        if name in _PER_RECORD_FIELDS:
            msg = (
                f"{name!r} changes with every record and must not be a stream label (it would "
                "create one stream per value); keep it in the log line"
            )
            raise ValueError(msg)
        if name == "level" and level_label:
            msg = "the 'level' label is taken from each record; pass level_label=False to set it"
            raise ValueError(msg)
        if name == CANONICAL_LABEL and canonical_stream:
            msg = (
                f"the {CANONICAL_LABEL!r} label marks canonical lines (request, task, runtime); "
                "pass canonical_stream=False to set it yourself"
            )
            raise ValueError(msg)
        if not isinstance(value, str) or not value:
            msg = f"label {name!r} needs a non-empty str value, not {value!r}"
            raise ValueError(msg)
        result[name] = value
    most = _MAX_LABELS - level_label - canonical_stream
    if len(result) > most:
        msg = f"at most {most} static labels (Loki's per-stream limit is {_MAX_LABELS})"
        raise ValueError(msg)
    return result


def positive(name: str, value: Any, *, integer: bool = False, zero: bool = False) -> Any:
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    valid = not isinstance(value, bool) and isinstance(value, kinds)
    if not valid:
        kind = "an int" if integer else "a number"
        msg = f"{name} must be {kind}, not {value!r}"
        raise TypeError(msg)
    if value < 0 or (value == 0 and not zero):
        msg = f"{name} must be {'>= 0' if zero else '> 0'}, not {value!r}"
        raise ValueError(msg)
    return value


def request_headers(
    *,
    compress: bool,
    url_user: str | None,
    url_password: str | None,
    username: str | None,
    password: str | None,
    bearer_token: str | None,
    tenant_id: str | None,
    headers: Mapping[str, str] | None,
) -> dict[str, str]:
    """Return the headers of every push request; raise on conflicting or invalid auth."""
    request_headers = {"Content-Type": "application/json", "User-Agent": "obslog-loki"}
    if compress:
        request_headers["Content-Encoding"] = "gzip"
    if url_user is not None and username is not None:
        msg = "give the basic-auth user either in the url or as username, not both"
        raise TypeError(msg)
    if url_user is not None:
        username, password = url_user, url_password or ""
    if bearer_token is not None and username is not None:
        msg = "bearer_token and username/password are mutually exclusive"
        raise TypeError(msg)
    if password is not None and username is None:
        msg = "password needs a username"
        raise TypeError(msg)
    if username is not None:
        token = base64.b64encode(f"{username}:{password or ''}".encode()).decode("ascii")
        request_headers["Authorization"] = f"Basic {token}"
    elif bearer_token is not None:
        if not isinstance(bearer_token, str) or not bearer_token:
            msg = "bearer_token must be a non-empty str"
            raise TypeError(msg)
        request_headers["Authorization"] = f"Bearer {bearer_token}"
    if tenant_id is not None:
        if not isinstance(tenant_id, str) or not tenant_id:
            msg = "tenant_id must be a non-empty str"
            raise TypeError(msg)
        request_headers["X-Scope-OrgID"] = tenant_id
    request_headers.update({str(k): str(v) for k, v in (headers or {}).items()})
    return request_headers


def connection_factory(
    scheme: str, host: str, port: int | None, timeout: float, verify: bool | str
) -> Callable[[], http.client.HTTPConnection]:
    """Return a function that opens one new connection to Loki."""
    if scheme == "https":
        context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
        if verify is False:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return lambda: http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    return lambda: http.client.HTTPConnection(host, port, timeout=timeout)
