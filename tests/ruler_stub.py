"""
A stand-in for Loki's ruler API, for tests -- it is not Loki.

No Loki runs in the test environment, so this module implements what a client of the ruler API
sees, as Loki's HTTP API reference documents it (section "Ruler") and as a real Loki 3.x was seen
to answer:

- ``GET /loki/api/v1/rules/{namespace}`` -> 200, YAML ``{namespace: [group, ...]}``; 404 with the
  body ``no rule groups found`` when the namespace has none;
- ``GET /loki/api/v1/rules/{namespace}/{group}`` -> 200, YAML of the group; 404 when missing;
- ``POST /loki/api/v1/rules/{namespace}`` with one group as a YAML body -> 202
  ``{"status":"success",...}``; 400 with a plain-text message naming the rule and the group for
  an invalid group;
- ``DELETE /loki/api/v1/rules/{namespace}/{group}`` -> 202;
- every path answers ``404 page not found`` when the ruler API is off;
- the tenant comes from ``X-Scope-OrgID`` (``fake`` without it, as with ``auth_enabled: false``).

Authentication (bearer token or basic auth, checked by a gateway in front of Loki) answers 401.
The stand-in validates a group the way the ruler does for what tests need (name, exactly one of
record/alert, a non-empty expr, no ``for``/``annotations`` on recording rules) and can be scripted
to reject an expression with a parse error, to answer ``SetRuleGroup unsupported in rule local
store`` like a ruler on local storage, or to fail from the N-th write on.  It does not parse LogQL.
"""

from __future__ import annotations

import base64
import json
import threading
import urllib.parse

from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import yaml


__all__ = ["RulerStub"]

PREFIX = "/loki/api/v1/rules"
_SUCCESS = json.dumps({"status": "success", "data": None, "errorType": "", "error": ""})


@dataclass
class Call:
    """One request as the stand-in saw it (header names in lower case)."""

    method: str
    path: str
    headers: dict[str, str]
    body: str


@dataclass
class RulerStub:
    """A ruler API on a free loopback port; use as a context manager."""

    api_enabled: bool = True
    bearer_token: str | None = None
    basic_auth: tuple[str, str] | None = None
    local_storage: bool = False
    reject_expr: str | None = None
    fail_writes_from: int | None = None
    fail_status: int = 500
    rules: dict[str, dict[str, dict[str, dict[str, Any]]]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    writes: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8") if length else ""
                with stub._lock:
                    stub.calls.append(
                        Call(
                            self.command,
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                        )
                    )
                    status, content_type, text = stub.answer(
                        self.command, self.path, self.headers, body
                    )
                data = text.encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Base URL, like Loki's ``http://host:3100``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> RulerStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    # -- the API ----------------------------------------------------------------------------

    def _authorized(self, headers: Any) -> bool:
        given = headers.get("Authorization") or ""
        if self.bearer_token is not None:
            return given == f"Bearer {self.bearer_token}"
        if self.basic_auth is not None:
            expected = base64.b64encode(":".join(self.basic_auth).encode()).decode()
            return given == f"Basic {expected}"
        return True

    def answer(self, method: str, path: str, headers: Any, body: str) -> tuple[int, str, str]:
        """Return (status, content type, body) for one request."""
        plain, ok = "text/plain; charset=utf-8", "application/json"
        if not self._authorized(headers):
            return 401, plain, "Unauthorized\n"
        parts = [urllib.parse.unquote(p) for p in path.split("?")[0].split("/") if p]
        if not self.api_enabled or parts[:4] != ["loki", "api", "v1", "rules"]:
            return 404, plain, "404 page not found\n"
        tenant = headers.get("X-Scope-OrgID") or "fake"
        namespaces = self.rules.setdefault(tenant, {})
        args = parts[4:]
        if method == "GET" and len(args) == 1:
            groups = namespaces.get(args[0])
            if not groups:
                return 404, plain, "no rule groups found\n"
            return 200, "application/yaml", yaml.safe_dump({args[0]: list(groups.values())})
        if method == "GET" and len(args) == 2:
            group = namespaces.get(args[0], {}).get(args[1])
            if group is None:
                return 404, plain, "group does not exist\n"
            return 200, "application/yaml", yaml.safe_dump(group)
        if method == "POST" and len(args) == 1:
            if self.local_storage:
                return 500, plain, "SetRuleGroup unsupported in rule local store\n"
            self.writes += 1
            if self.fail_writes_from is not None and self.writes >= self.fail_writes_from:
                return self.fail_status, plain, "failed to store rule group: storage unavailable\n"
            try:
                group = yaml.safe_load(body)
            except yaml.YAMLError as exc:
                return 400, plain, f"unable to decode rule group: {exc}\n"
            problem = self._validate(group)
            if problem:
                return 400, plain, problem + "\n"
            namespaces.setdefault(args[0], {})[group["name"]] = group
            return 202, ok, _SUCCESS
        if method == "DELETE" and len(args) == 2:
            groups = namespaces.get(args[0], {})
            if args[1] not in groups:
                return 404, plain, "group does not exist\n"
            del groups[args[1]]
            return 202, ok, _SUCCESS
        if method == "DELETE" and len(args) == 1:
            namespaces.pop(args[0], None)
            return 202, ok, _SUCCESS
        return 404, plain, "404 page not found\n"

    def _validate(self, group: Any) -> str | None:
        if not isinstance(group, dict) or not group.get("name"):
            return "invalid rule group: a group needs a name"
        name = group["name"]
        for rule in group.get("rules") or []:
            what = "record" if "record" in rule else "alert"
            if ("record" in rule) == ("alert" in rule):
                return f"one of 'record' or 'alert' must be set in group '{name}'"
            if not str(rule.get("expr") or "").strip():
                return f"field 'expr' must be set in {what} '{rule[what]}' in group '{name}'"
            if what == "record" and ("for" in rule or "annotations" in rule):
                return f"invalid field 'for' or 'annotations' in recording rule '{rule[what]}'"
            if self.reject_expr is not None and self.reject_expr in rule["expr"]:
                return (
                    f"could not parse expression for {what} '{rule[what]}' in group '{name}': "
                    "parse error : grouping not allowed for count_over_time aggregation"
                )
        return None

    def groups(self, namespace: str, tenant: str = "fake") -> dict[str, dict[str, Any]]:
        """The groups stored in *namespace* of *tenant*."""
        with self._lock:
            return dict(self.rules.get(tenant, {}).get(namespace, {}))
