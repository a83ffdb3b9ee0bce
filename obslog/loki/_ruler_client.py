"""
The client side of Loki's ruler API: requests, errors that say what to check, and comparison.

Used by :mod:`obslog.loki.ruler` (the ``obslog loki rules push|diff|delete`` commands), which
re-exports the public names.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import base64
import importlib
import urllib.error
import urllib.parse
import urllib.request

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


__all__ = [
    "DEFAULT_NAMESPACE",
    "RULES_PATH",
    "Plan",
    "RulerClient",
    "RulerError",
    "load_yaml_module",
    "normalize",
    "plan",
]

RULES_PATH = "/loki/api/v1/rules"
DEFAULT_NAMESPACE = "obslog"
_NO_GROUPS = "no rule groups found"
_GROUP_KEYS = ("name", "interval", "limit", "rules")
_RULE_KEYS = ("record", "alert", "expr", "for", "labels", "annotations")

Group = dict[str, Any]


def load_yaml_module() -> Any:
    """
    Return the ``yaml`` module (PyYAML), imported on first use.

    Raises:
        ImportError: PyYAML is not installed; the message names the ``loki`` extra.
    """
    try:
        # Imported by name: PyYAML is optional and ships no type information.
        return importlib.import_module("yaml")
    except ImportError:
        msg = "talking to the Loki ruler needs PyYAML: pip install 'obslog[loki]'"
        raise ImportError(msg, name="yaml") from None


class RulerError(Exception):
    """
    The ruler answered with an error, or could not be reached.

    Attributes:
        status: The HTTP status, or None when there was no answer.
        message: What the server said (or why there was no answer), with a hint.
        group: The rule group concerned, when there is one.

    .. versionadded:: 0.2.0
    """

    def __init__(self, message: str, status: int | None = None, group: str | None = None):
        self.message = message
        self.status = status
        self.group = group
        super().__init__(self.describe())

    def describe(self) -> str:
        """Return one line saying what failed, for which group, and what to check."""
        where = f"group {self.group!r}: " if self.group else ""
        status = f"HTTP {self.status}: " if self.status is not None else ""
        return f"{where}{status}{self.message}"

    @property
    def systemic(self) -> bool:
        """True when every further request would fail the same way (auth, no API, no server)."""
        return self.status in (None, 401, 403, 404) or (
            self.status is not None and self.status >= 500 and "local store" in self.message
        )


def _explain(status: int, body: str, url: str) -> str:
    text = " ".join(body.split())[:500] or "(empty body)"
    if status == 400:
        return f"Loki rejected the rule group: {text}"
    if status in (401, 403):
        return (
            f"{'unauthorized' if status == 401 else 'forbidden'}: {text} -- check "
            "--bearer-token-file or --basic-auth-user/--basic-auth-password-file, and --tenant"
        )
    if status == 404:
        return (
            f"no ruler API at {url}: {text} -- is the URL Loki's (or its gateway's), is the "
            "ruler running with its API enabled (ruler.enable_api: true)?"
        )
    if "local store" in text:
        return (
            f"{text} -- the ruler reads rules from local storage, which is read-only: copy the "
            "files into its rules directory instead, or use object storage (see loki/scalable)"
        )
    return text


@dataclass
class RulerClient:
    """
    A small client of Loki's ruler API.

    Args:
        url: Loki's base URL, e.g. ``http://loki:3100`` (a path prefix is kept).
        tenant: Sent as ``X-Scope-OrgID`` (multi-tenant Loki).
        bearer_token: Sent as ``Authorization: Bearer ...``.
        basic_auth: ``(user, password)`` for ``Authorization: Basic ...``.
        timeout: Seconds per request.
        opener: What sends a request (for tests); default :func:`urllib.request.urlopen`.

    .. versionadded:: 0.2.0
    """

    url: str
    tenant: str | None = None
    bearer_token: str | None = None
    basic_auth: tuple[str, str] | None = None
    timeout: float = 10.0
    opener: Callable[..., Any] = field(default=urllib.request.urlopen, repr=False)

    def __post_init__(self) -> None:
        parsed = urllib.parse.urlsplit(self.url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            msg = f"--url must be an http(s) URL such as http://loki:3100, not {self.url!r}"
            raise ValueError(msg)
        if self.bearer_token is not None and self.basic_auth is not None:
            msg = "give a bearer token or basic auth, not both"
            raise ValueError(msg)
        self.url = self.url.rstrip("/")

    def _request(
        self, method: str, path: str, body: bytes | None = None, group: str | None = None
    ) -> tuple[int, str]:
        headers = {"Accept": "application/yaml, application/json;q=0.9, */*;q=0.1"}
        if body is not None:
            headers["Content-Type"] = "application/yaml"
        if self.tenant:
            headers["X-Scope-OrgID"] = self.tenant
        if self.bearer_token is not None:
            headers["Authorization"] = f"Bearer {self.bearer_token}"
        elif self.basic_auth is not None:
            token = base64.b64encode(":".join(self.basic_auth).encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        url = self.url + path
        request = urllib.request.Request(url, data=body, headers=headers, method=method)
        try:
            with self.opener(request, timeout=self.timeout) as response:
                return int(response.status), response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", "replace")
            if exc.code == 404 and _NO_GROUPS in text:
                return 404, text
            raise RulerError(_explain(exc.code, text, self.url), exc.code, group) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RulerError(f"cannot reach {url}: {reason}", None, group) from None

    @staticmethod
    def _path(*parts: str) -> str:
        return RULES_PATH + "".join("/" + urllib.parse.quote(p, safe="") for p in parts)

    def groups(self, namespace: str) -> dict[str, Group]:
        """
        Return the groups of *namespace* on the server, by name (empty when there is none).

        Raises:
            RulerError: The server answered with an error or could not be reached.
        """
        status, text = self._request("GET", self._path(namespace))
        if status == 404:
            return {}
        document = load_yaml_module().safe_load(text) or {}
        if not isinstance(document, dict):
            msg = f"unexpected answer to GET {self._path(namespace)}: {text[:200]!r}"
            raise RulerError(msg, status)
        return {group["name"]: group for group in document.get(namespace) or []}

    def set_group(self, namespace: str, group: Mapping[str, Any]) -> None:
        """
        Create or replace one group in *namespace*.

        Raises:
            RulerError: The server refused the group (naming it) or could not be reached.
        """
        body = load_yaml_module().safe_dump(normalize(group), sort_keys=False, allow_unicode=True)
        self._request("POST", self._path(namespace), body.encode("utf-8"), group["name"])

    def delete_group(self, namespace: str, name: str) -> None:
        """
        Delete one group from *namespace*.

        Raises:
            RulerError: The server refused or could not be reached.
        """
        self._request("DELETE", self._path(namespace, name), group=name)


def normalize(group: Mapping[str, Any]) -> Group:
    """
    Return *group* with only the keys Loki stores, in a fixed order, without empty values.

    Loki keeps per group ``name``, ``interval``, ``limit`` and ``rules`` and per rule ``record``
    or ``alert``, ``expr``, ``for``, ``labels`` and ``annotations``; two groups are the same on the
    server when their normalized forms are equal.
    """
    out: Group = {}
    for key in _GROUP_KEYS:
        value = group.get(key)
        if key == "rules":
            out["rules"] = [
                {
                    k: (dict(rule[k]) if isinstance(rule[k], Mapping) else str(rule[k]))
                    for k in _RULE_KEYS
                    if rule.get(k) not in (None, "", {}, "0s")
                }
                for rule in value or []
            ]
        elif value not in (None, "", 0, "0s"):
            out[key] = value if key == "limit" else str(value)
    return out


@dataclass(frozen=True)
class Plan:
    """What a push would do: groups to create, to replace, and those already equal."""

    create: list[str]
    update: list[str]
    unchanged: list[str]

    def to_send(self) -> list[str]:
        """Names of the groups to send, in order."""
        return [*self.create, *self.update]


def plan(local: Sequence[Group], remote: Mapping[str, Group]) -> Plan:
    """Compare local groups with the server's (see :func:`normalize`)."""
    create, update, unchanged = [], [], []
    for group in local:
        name = group["name"]
        if name not in remote:
            create.append(name)
        elif normalize(remote[name]) != normalize(group):
            update.append(name)
        else:
            unchanged.append(name)
    return Plan(create, update, unchanged)
