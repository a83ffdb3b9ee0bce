"""
``obslog loki rules``: print rule files; ``python -m obslog.loki.rules``: regenerate or check the
shipped ones.

.. versionadded:: 0.2.0
   Split out of ``obslog.loki._rules``.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .files import build_files, check, command_header, merge, render, timer_file, write
from .groups import DEFAULT_TIMERS, Streams
from .lint import lint
from .logql import CANONICAL_LABEL, SERVICE_LABELS


__all__ = ["main", "module_main"]

PROG = "obslog loki rules"


def _parser(prog: str, epilog: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Print Loki ruler rules for obslog timers (or every obslog rule).",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--service",
        help='select one service (default: every service, service_name=~".+")',
    )
    parser.add_argument(
        "--timer",
        action="append",
        default=[],
        metavar="NAME",
        help="a timer name as given to obslog.timed(); repeat for several",
    )
    parser.add_argument(
        "--service-label",
        choices=SERVICE_LABELS,
        default="service_name",
        help="stream label that names the service (default: service_name)",
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help="print every obslog rule group (requests, latency, tasks, runtime, timers, alerts)",
    )
    parser.add_argument(
        "--no-canonical-stream",
        dest="canonical_stream",
        action="store_false",
        help=f"select every stream of the service, not only the canonical lines' stream "
        f'({CANONICAL_LABEL}="request" ...): for shippers that cannot add the '
        f"{CANONICAL_LABEL} label (rules then cost as much as the service's whole log volume)",
    )
    parser.add_argument(
        "--task-timers",
        action="store_true",
        help="also the timer rules over Celery task lines (per task_name), for timers used in "
        "tasks",
    )
    parser.add_argument("--output", "-o", help="write to this file instead of standard output")
    return parser


def _with_task_timers(document: dict[str, Any], options: argparse.Namespace) -> dict[str, Any]:
    """Append the task-timer group (:mod:`obslog.loki.task_timers`) when asked."""
    if not options.task_timers:
        return document
    from ..task_timers import task_timer_group

    timers = options.timer or list(DEFAULT_TIMERS)
    streams = Streams(options.service, options.service_label, options.canonical_stream)
    name = "obslog-task-timers" + (f"-{options.service}" if options.service else "")
    return {"groups": [*document["groups"], task_timer_group(streams, timers, name)]}


def main(argv: Sequence[str], prog: str = PROG, epilog: str | None = None) -> int:
    """
    Run ``obslog loki rules [options]``: print a Loki rule file.

    Args:
        argv: The arguments after ``obslog loki rules``.
        prog: The command's name in messages.
        epilog: Extra text for ``--help`` (the dispatcher lists further actions there).

    Returns:
        The exit status: 0 on success, 1 when the output cannot be written, 2 on a usage error.
    """
    parser = _parser(prog, epilog)
    try:
        options = parser.parse_args(list(argv))
    except SystemExit as exc:  # argparse exits on --help and on errors
        return int(exc.code or 0)
    header = command_header(" ".join([prog, *map(shlex.quote, argv)]))
    try:
        if options.all:
            timers = options.timer or list(DEFAULT_TIMERS)
            files = build_files(
                timers,
                options.service,
                options.service_label,
                canonical_stream=options.canonical_stream,
            )
            text = render(_with_task_timers(merge(files), options), header)
        else:
            if not options.timer:
                parser.print_usage(sys.stderr)
                sys.stderr.write(f"{prog}: error: give at least one --timer NAME (or --all)\n")
                return 2
            document = timer_file(
                options.timer,
                options.service,
                options.service_label,
                canonical_stream=options.canonical_stream,
            )
            text = render(_with_task_timers(document, options), header)
    except ValueError as exc:
        sys.stderr.write(f"{prog}: error: {exc}\n")
        return 2
    try:
        if options.output is None:
            sys.stdout.write(text)
        else:
            Path(options.output).write_text(text, encoding="utf-8")
    except OSError as exc:
        sys.stderr.write(f"{prog}: error: {exc}\n")
        return 1
    return 0


def module_main(
    argv: Sequence[str] | None = None, prog: str = "python -m obslog.loki.rules"
) -> int:
    """
    Run ``python -m obslog.loki.rules --write DIR | --check DIR`` (the shipped files).

    Args:
        argv: The arguments; default ``sys.argv[1:]``.
        prog: The command's name in messages.

    Returns:
        0 when written or up to date, 1 when a file is outdated or fails the lint.
    """
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Regenerate or check the rule files shipped in loki/rules/fake.",
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", metavar="DIR", help="write the shipped rule files into DIR")
    action.add_argument(
        "--check", metavar="DIR", help="fail if DIR differs from the generator or fails lint"
    )
    options = parser.parse_args(argv)
    if options.write:
        for path in write(options.write):
            sys.stdout.write(f"wrote {path}\n")
        return 0
    stale = check(options.check)
    for name in stale:
        sys.stderr.write(f"outdated: {Path(options.check) / name}\n")
    problems = [
        f"{name}: {problem}"
        for name, document in build_files().items()
        for problem in lint(document)
    ]
    for problem in problems:
        sys.stderr.write(f"lint: {problem}\n")
    return 1 if stale or problems else 0
