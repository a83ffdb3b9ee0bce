"""
``obslog loki <command>``: one table of commands, each in its own module, imported on use.

To add a command, add a line to :data:`COMMANDS` (or, for ``obslog loki rules <action>``, to
:data:`RULES_ACTIONS`).  The function named there takes the arguments after the command's words
(``obslog loki rules push --url U`` calls it with ``["--url", "U"]``) and returns the exit status
(0 success, 1 failure, 2 usage error); it prints its own messages.  A command whose module is not
installed is reported as unavailable.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import importlib
import sys

from collections.abc import Callable, Sequence


__all__ = ["COMMANDS", "RULES_ACTIONS", "main"]

PROG = "obslog loki"

#: ``obslog loki <command>``: ``{command: ("module:function", one-line help)}``.
COMMANDS: dict[str, tuple[str, str]] = {
    "rules": (
        "obslog.loki.rules.cli:main",
        "print Loki rule files for obslog's canonical lines (rates, latency, timers, alerts)",
    ),
    "slo": (
        "obslog.loki.slo:main",
        "generate SLO burn-rate recording and alerting rules from canonical lines",
    ),
}

#: ``obslog loki rules <action>``: ``{action: ("module:function", one-line help)}``.
RULES_ACTIONS: dict[str, tuple[str, str]] = {
    "push": ("obslog.loki.ruler:push_main", "upload the rule groups through Loki's ruler API"),
    "diff": ("obslog.loki.ruler:diff_main", "show how the server's rule groups differ"),
    "delete": ("obslog.loki.ruler:delete_main", "delete obslog's rule groups from the server"),
}


def _load(target: str) -> Callable[[list[str]], int] | None:
    module_name, _, function = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            return None  # the command's own module is missing, not one of its imports
        raise
    found: Callable[[list[str]], int] | None = getattr(module, function, None)
    return found


def _usage(table: dict[str, tuple[str, str]], prog: str) -> str:
    width = max(map(len, table))
    lines = [f"usage: {prog} {{{','.join(table)}}} ...", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in table.items()]
    return "\n".join(lines) + "\n"


def _run(target: str, argv: list[str], prog: str) -> int:
    function = _load(target)
    if function is None:
        sys.stderr.write(f"{prog}: error: not available in this version of obslog\n")
        return 2
    return int(function(argv))


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run ``obslog loki <command> ...``.

    Args:
        argv: The arguments after ``obslog loki``; default ``sys.argv[1:]``.

    Returns:
        The command's exit status; 2 for an unknown or missing command, 0 for ``--help``.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        stream = sys.stdout if args else sys.stderr
        stream.write(_usage(COMMANDS, PROG))
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        sys.stderr.write(_usage(COMMANDS, PROG))
        sys.stderr.write(f"{PROG}: error: unknown command {command!r}\n")
        return 2
    prog = f"{PROG} {command}"
    if command == "rules":
        if rest and rest[0] in RULES_ACTIONS:
            return _run(RULES_ACTIONS[rest[0]][0], rest[1:], f"{prog} {rest[0]}")
        from .rules.cli import main as rules_main

        width = max(map(len, RULES_ACTIONS))
        epilog = "further actions (see `obslog loki rules ACTION --help`):\n" + "\n".join(
            f"  {name:<{width}}  {text}" for name, (_, text) in RULES_ACTIONS.items()
        )
        return rules_main(rest, prog, epilog)
    return _run(COMMANDS[command][0], rest, prog)
