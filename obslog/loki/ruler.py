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
import difflib
import sys

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ._ruler_client import (
    DEFAULT_NAMESPACE,
    RULES_PATH,
    Plan,
    RulerClient,
    RulerError,
    load_yaml_module,
    normalize,
    plan,
)


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

Group = dict[str, Any]


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
            document = load_yaml_module().safe_load(Path(path).read_text(encoding="utf-8"))
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
    action: str, argv: Sequence[str], prog: str | None, unread: str = ""
) -> tuple[str, argparse.Namespace, RulerClient, list[Group], dict[str, Group]] | int:
    """
    Parse *argv*, build the client and the local groups, and read the server's groups.

    Returns:
        ``(prog, options, client, local groups, the server's groups by name)``, or the exit
        status when that failed: 2 on a usage error, 1 when the server cannot be read (the
        error, then *unread* if given, is written to stderr).
    """
    prog = prog or f"obslog loki rules {action}"
    try:
        options = _parser(action, prog).parse_args(list(argv))
    except SystemExit as exc:  # argparse exits on --help and on errors
        return int(exc.code or 0)
    try:
        load_yaml_module()  # every action reads the server's YAML answers
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
    try:
        remote = client.groups(options.namespace)
    except RulerError as exc:
        sys.stderr.write(f"{prog}: error: {exc.describe()}\n")
        if unread:
            sys.stderr.write(f"{prog}: {unread}\n")
        return 1
    return prog, options, client, groups, remote


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")


def _each(
    prog: str, verb: str, names: list[str], act: Callable[[str], None]
) -> tuple[list[str], list[RulerError]]:
    """
    Call *act* on each name in turn, stopping at the first systemic error, then report.

    Returns:
        ``(names done, errors)``.
    """
    done: list[str] = []
    failed: list[RulerError] = []
    pending = list(names)
    while pending:
        name = pending.pop(0)
        try:
            act(name)
        except RulerError as exc:
            failed.append(exc)
            if exc.systemic:
                break
            continue
        done.append(name)
    _summary(prog, verb, done, failed, pending)
    return done, failed


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
    setup = _setup("push", argv, prog, unread="nothing was sent")
    if isinstance(setup, int):
        return setup
    prog, options, client, groups, remote = setup
    namespace = options.namespace
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

    def send(name: str) -> None:
        client.set_group(namespace, by_name[name])
        created = name in todo.create
        _out(
            f"{'+' if created else '~'} {namespace}/{name}: {'created' if created else 'replaced'}"
        )

    done, failed = _each(prog, "applied", todo.to_send(), send)
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
    prog, options, _, groups, remote = setup
    namespace = options.namespace
    yaml = load_yaml_module()

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
    setup = _setup("delete", argv, prog, unread="nothing was deleted")
    if isinstance(setup, int):
        return setup
    prog, options, client, groups, remote = setup
    namespace = options.namespace
    present = [g["name"] for g in groups if g["name"] in remote]
    for name in (g["name"] for g in groups if g["name"] not in remote):
        _out(f"  {namespace}/{name}: not on the server")
    if options.dry_run:
        for name in present:
            _out(f"- {namespace}/{name}: would delete")
        _out(f"dry run: {len(present)} groups would be deleted")
        return 0

    def delete(name: str) -> None:
        client.delete_group(namespace, name)
        _out(f"- {namespace}/{name}: deleted")

    _, failed = _each(prog, "deleted", present, delete)
    return 1 if failed else 0
