"""
``obslog loki rules push|diff|delete``: obslog's rule groups on a Loki ruler, through its HTTP API.

Loki's ruler API (Loki HTTP API reference, "Ruler"): ``GET /loki/api/v1/rules/{namespace}``
answers the namespace's groups as YAML (``{namespace: [group, ...]}``, or 404 "no rule groups
found"), ``POST /loki/api/v1/rules/{namespace}`` creates or replaces one group sent as a YAML
body (202), ``DELETE /loki/api/v1/rules/{namespace}/{group}`` deletes one (202).  The tenant goes
in ``X-Scope-OrgID``.  Writes need a ruler storage that accepts them (object storage such as S3 or
the ``filesystem`` backend of ``ruler_storage``); ``ruler.storage.type: local`` is read-only.

Each group is sent on its own, so a failure can leave some groups applied: every run ends with a
summary naming the groups applied, failed and not sent.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import argparse
import base64
import difflib
import importlib
import sys
import urllib.error
import urllib.parse
import urllib.request

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


__all__ = [
    "RULES_PATH",
    "Plan",
    "RulerClient",
    "RulerError",
    "delete_main",
    "diff_main",
    "local_groups",
    "normalize",
    "plan",
    "push_main",
]

RULES_PATH = "/loki/api/v1/rules"
DEFAULT_NAMESPACE = "obslog"
_NO_GROUPS = "no rule groups found"
_GROUP_KEYS = ("name", "interval", "limit", "rules")
_RULE_KEYS = ("record", "alert", "expr", "for", "labels", "annotations")

Group = dict[str, Any]


def _yaml() -> Any:
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
        document = _yaml().safe_load(text) or {}
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
        body = _yaml().safe_dump(normalize(group), sort_keys=False, allow_unicode=True)
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


# --------------------------------------------------------------------------------------------
# which groups: shipped rules, SLO rules, rule files
# --------------------------------------------------------------------------------------------


def local_groups(
    *,
    shipped: bool = True,
    timers: Sequence[str] = (),
    task_timers: bool = False,
    service: str | None = None,
    canonical_stream: bool = True,
    slo_configs: Sequence[str] = (),
    files: Sequence[str] = (),
) -> list[Group]:
    """
    Return the rule groups to deliver, checked with obslog's rule lint.

    Args:
        shipped: Include every group obslog ships (requests, latency, tasks, runtime, timers,
            alerts).
        timers: Timer names for the timer group (default: the demo's timers).
        task_timers: Include the timer group over Celery task lines
            (:mod:`obslog.loki.task_timers`).
        service: One service's rules, or None for every service.
        canonical_stream: Rules read the canonical stream (see :mod:`obslog.loki.rules`).
        slo_configs: SLO files (``obslog loki slo --config``) whose Loki groups to add.
        files: Loki rule files (``groups: [...]``) whose groups to add.

    Returns:
        The groups, with unique names.

    Raises:
        ValueError: A file is unreadable or invalid, the lint finds a problem, or two groups
            share a name.
    """
    from . import rules
    from ._slo_config import load_config
    from .slo import build as build_slos

    groups: list[Group] = []
    if shipped:
        files_by_name = rules.build_files(
            list(timers) or list(rules.DEFAULT_TIMERS),
            service,
            canonical_stream=canonical_stream,
        )
        groups += [g for document in files_by_name.values() for g in document["groups"]]
    if task_timers:
        from .task_timers import task_timer_group

        streams = rules.Streams(service, canonical_stream=canonical_stream)
        name = "obslog-task-timers" + (f"-{service}" if service else "")
        groups.append(task_timer_group(streams, list(timers) or list(rules.DEFAULT_TIMERS), name))
    for config in slo_configs:
        loki, _ = build_slos(load_config(config), canonical_stream)
        groups += loki["groups"]
    for path in files:
        try:
            document = _yaml().safe_load(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            msg = f"{path}: cannot read: {exc.strerror or exc}"
            raise ValueError(msg) from None
        except Exception as exc:  # PyYAML's YAMLError, without importing it at module level
            msg = f"{path}: not valid YAML: {exc}"
            raise ValueError(msg) from None
        problems = rules.lint(document)
        if problems:
            msg = f"{path}: " + "; ".join(problems)
            raise ValueError(msg)
        groups += document["groups"]
    if not groups:
        msg = "no rule groups: drop --no-shipped, or give --slo-config or --file"
        raise ValueError(msg)
    problems = rules.lint({"groups": groups})
    if problems:
        raise ValueError("; ".join(problems))
    return groups


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------


def _parser(action: str, prog: str) -> argparse.ArgumentParser:
    what = {
        "push": "Upload obslog's rule groups to a Loki ruler (create or replace each group).",
        "diff": "Show how obslog's rule groups differ from those on a Loki ruler.",
        "delete": "Delete obslog's rule groups from a Loki ruler.",
    }[action]
    parser = argparse.ArgumentParser(prog=prog, description=what)
    parser.add_argument("--url", required=True, help="Loki's URL, e.g. http://loki:3100")
    parser.add_argument(
        "--namespace",
        default=DEFAULT_NAMESPACE,
        help=f"rule namespace on the server (default: {DEFAULT_NAMESPACE})",
    )
    parser.add_argument("--tenant", help="tenant id, sent as X-Scope-OrgID")
    parser.add_argument("--bearer-token-file", metavar="FILE", help="file holding a bearer token")
    parser.add_argument("--basic-auth-user", metavar="USER", help="basic auth user name")
    parser.add_argument(
        "--basic-auth-password-file", metavar="FILE", help="file holding the basic auth password"
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    groups = parser.add_argument_group("which groups")
    groups.add_argument(
        "--no-shipped",
        dest="shipped",
        action="store_false",
        help="leave out the rule groups obslog ships (requests, latency, tasks, runtime, "
        "timers, alerts)",
    )
    groups.add_argument(
        "--timer", action="append", default=[], metavar="NAME", help="timer names (repeatable)"
    )
    groups.add_argument(
        "--task-timers",
        action="store_true",
        help="add the timer rules over Celery task lines (per task_name)",
    )
    groups.add_argument("--service", help="rules of one service (default: every service)")
    groups.add_argument(
        "--no-canonical-stream",
        dest="canonical_stream",
        action="store_false",
        help="rules read every stream of the service, not only the canonical stream",
    )
    groups.add_argument(
        "--slo-config",
        action="append",
        default=[],
        metavar="FILE",
        help="add the Loki SLO groups of this `obslog loki slo` file (repeatable)",
    )
    groups.add_argument(
        "--file",
        action="append",
        default=[],
        metavar="FILE",
        help="add the groups of this Loki rule file (repeatable)",
    )
    if action in ("push", "delete"):
        parser.add_argument(
            "--dry-run", action="store_true", help="only say what would change (reads the server)"
        )
    if action == "diff":
        parser.add_argument(
            "--exit-code", action="store_true", help="exit 1 when there are differences"
        )
    return parser


def _read_secret(path: str, flag: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        msg = f"{flag}: cannot read {path}: {exc.strerror or exc}"
        raise ValueError(msg) from None
    if not text:
        msg = f"{flag}: {path} is empty"
        raise ValueError(msg)
    return text


def _client(options: argparse.Namespace) -> RulerClient:
    token = basic = None
    if options.bearer_token_file and (options.basic_auth_user or options.basic_auth_password_file):
        msg = "--bearer-token-file and --basic-auth-* exclude each other"
        raise ValueError(msg)
    if options.bearer_token_file:
        token = _read_secret(options.bearer_token_file, "--bearer-token-file")
    if bool(options.basic_auth_user) != bool(options.basic_auth_password_file):
        msg = "--basic-auth-user and --basic-auth-password-file go together"
        raise ValueError(msg)
    if options.basic_auth_user:
        password = _read_secret(options.basic_auth_password_file, "--basic-auth-password-file")
        basic = (options.basic_auth_user, password)
    return RulerClient(
        options.url,
        tenant=options.tenant,
        bearer_token=token,
        basic_auth=basic,
        timeout=options.timeout,
    )


def _setup(
    action: str, argv: Sequence[str], prog: str | None
) -> tuple[str, argparse.Namespace, RulerClient, list[Group]] | int:
    prog = prog or f"obslog loki rules {action}"
    try:
        options = _parser(action, prog).parse_args(list(argv))
    except SystemExit as exc:  # argparse exits on --help and on errors
        return int(exc.code or 0)
    try:
        _yaml()  # every action reads the server's YAML answers
        client = _client(options)
        groups = local_groups(
            shipped=options.shipped,
            timers=options.timer,
            task_timers=options.task_timers,
            service=options.service,
            canonical_stream=options.canonical_stream,
            slo_configs=options.slo_config,
            files=options.file,
        )
    except (ValueError, ImportError) as exc:
        sys.stderr.write(f"{prog}: error: {exc}\n")
        return 2
    return prog, options, client, groups


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")


def _summary(
    prog: str, verb: str, done: list[str], failed: list[RulerError], skipped: list[str]
) -> None:
    for error in failed:
        sys.stderr.write(f"{prog}: error: {error.describe()}\n")
    if failed:
        parts = [f"{verb}: {', '.join(done) or 'none'}"]
        parts.append(f"failed: {', '.join(e.group or '?' for e in failed)}")
        if skipped:
            parts.append(f"not sent: {', '.join(skipped)}")
        sys.stderr.write(f"{prog}: incomplete -- " + "; ".join(parts) + "\n")


def push_main(argv: Sequence[str], prog: str | None = None) -> int:
    """
    Run ``obslog loki rules push``: create or replace each group that differs on the server.

    Returns:
        0 when every group is in place, 1 when the server refused something (the summary names
        what was applied and what was not), 2 on a usage error.
    """
    setup = _setup("push", argv, prog)
    if isinstance(setup, int):
        return setup
    prog, options, client, groups = setup
    namespace = options.namespace
    try:
        remote = client.groups(namespace)
    except RulerError as exc:
        sys.stderr.write(f"{prog}: error: {exc.describe()}\n{prog}: nothing was sent\n")
        return 1
    todo = plan(groups, remote)
    by_name = {g["name"]: g for g in groups}
    verb = "would " if options.dry_run else ""
    for name in todo.unchanged:
        _out(f"= {namespace}/{name}: unchanged")
    if options.dry_run:
        for name in todo.create:
            _out(f"+ {namespace}/{name}: {verb}create")
        for name in todo.update:
            _out(f"~ {namespace}/{name}: {verb}replace")
        _out(f"dry run: {len(todo.to_send())} of {len(groups)} groups would be sent")
        return 0
    done: list[str] = []
    failed: list[RulerError] = []
    pending = todo.to_send()
    while pending:
        name = pending.pop(0)
        try:
            client.set_group(namespace, by_name[name])
        except RulerError as exc:
            failed.append(exc)
            if exc.systemic:
                break
            continue
        done.append(name)
        created = name in todo.create
        _out(
            f"{'+' if created else '~'} {namespace}/{name}: {'created' if created else 'replaced'}"
        )
    _summary(prog, "applied", done, failed, pending)
    if not failed:
        _out(f"{len(done)} sent, {len(todo.unchanged)} unchanged")
    return 1 if failed else 0


def diff_main(argv: Sequence[str], prog: str | None = None) -> int:
    """
    Run ``obslog loki rules diff``: print how local groups differ from the server's.

    Groups on the server in the same namespace that obslog would not push are listed too.

    Returns:
        0 (or 1 with ``--exit-code`` when something differs), 1 when the server cannot be read,
        2 on a usage error.
    """
    setup = _setup("diff", argv, prog)
    if isinstance(setup, int):
        return setup
    prog, options, client, groups = setup
    namespace = options.namespace
    try:
        remote = client.groups(namespace)
    except RulerError as exc:
        sys.stderr.write(f"{prog}: error: {exc.describe()}\n")
        return 1
    yaml = _yaml()

    def text(group: Group) -> list[str]:
        dumped: str = yaml.safe_dump(normalize(group), sort_keys=False, allow_unicode=True)
        return dumped.splitlines(keepends=True)

    todo = plan(groups, remote)
    local_names = {g["name"] for g in groups}
    for group in groups:
        name = group["name"]
        if name in todo.create:
            _out(f"+ {namespace}/{name}: only here")
        elif name in todo.update:
            _out(f"~ {namespace}/{name}: differs")
            sys.stdout.writelines(
                difflib.unified_diff(
                    text(remote[name]), text(group), f"server/{name}", f"local/{name}"
                )
            )
    extra = sorted(set(remote) - local_names)
    for name in extra:
        _out(f"- {namespace}/{name}: only on the server")
    differs = bool(todo.create or todo.update or extra)
    _out(
        f"{len(todo.unchanged)} equal, {len(todo.update)} differ, {len(todo.create)} only here, "
        f"{len(extra)} only on the server"
    )
    return 1 if differs and options.exit_code else 0


def delete_main(argv: Sequence[str], prog: str | None = None) -> int:
    """
    Run ``obslog loki rules delete``: delete obslog's groups (those push would send).

    Groups of the namespace that obslog does not make are left alone.

    Returns:
        0 when none of the groups is left, 1 when the server refused something (the summary
        names what was deleted and what was not), 2 on a usage error.
    """
    setup = _setup("delete", argv, prog)
    if isinstance(setup, int):
        return setup
    prog, options, client, groups = setup
    namespace = options.namespace
    try:
        remote = client.groups(namespace)
    except RulerError as exc:
        sys.stderr.write(f"{prog}: error: {exc.describe()}\n{prog}: nothing was deleted\n")
        return 1
    present = [g["name"] for g in groups if g["name"] in remote]
    for name in (g["name"] for g in groups if g["name"] not in remote):
        _out(f"  {namespace}/{name}: not on the server")
    if options.dry_run:
        for name in present:
            _out(f"- {namespace}/{name}: would delete")
        _out(f"dry run: {len(present)} groups would be deleted")
        return 0
    done: list[str] = []
    failed: list[RulerError] = []
    pending = list(present)
    while pending:
        name = pending.pop(0)
        try:
            client.delete_group(namespace, name)
        except RulerError as exc:
            failed.append(exc)
            if exc.systemic:
                break
            continue
        done.append(name)
        _out(f"- {namespace}/{name}: deleted")
    _summary(prog, "deleted", done, failed, pending)
    return 1 if failed else 0
