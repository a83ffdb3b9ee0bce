"""The ``obslog`` command (also ``python -m obslog``)."""

from __future__ import annotations

import argparse
import sys

from collections.abc import Callable, Sequence


__all__ = ["UsageError", "main"]


class UsageError(Exception):
    """
    A user error on the command line: printed as one ``obslog CMD: error: ...`` line, exit 2.

    Raised by the commands' own modules (a port that cannot be bound, a bad ``OBSLOG_LEVEL``);
    :func:`main` turns it into the message, never a traceback.
    """


def _loki(argv: list[str]) -> int:
    from .loki.cli import main as loki_main

    return loki_main(argv)


def _celery_events(argv: list[str]) -> int:
    from ._celery_events import main as events_main

    return events_main(argv)


# Commands with their own parser: everything after the command name goes to them untouched, so
# their options and their --help work (argparse.REMAINDER as a subparser's first positional
# would hand them nothing).
_DELEGATED: dict[str, Callable[[list[str]], int]] = {
    "loki": _loki,
    "celery-events": _celery_events,
}


def _demo_epilog() -> str:
    from ._demo import ROUTES

    lines = ["the shop's routes:"]
    lines += [f"  {method:<5} {template:<14} {what}" for method, template, what in ROUTES]
    lines.append("  any other path answers 404 and is logged with route <unmatched>")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="obslog", description="Structured-logging correlation for Python services."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="serve a demo shop on localhost and drive load through it",
        description="Serve a small shop on 127.0.0.1 and drive requests through it; every line "
        "it prints is a real obslog line. Needs no outside service.",
        epilog=_demo_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--requests",
        type=int,
        default=None,
        metavar="N",
        help="stop after N requests (default: run until interrupted)",
    )
    demo.add_argument(
        "--format", choices=("json", "console"), default="json", help="line format (default: json)"
    )
    demo.add_argument(
        "--port",
        type=int,
        default=0,
        metavar="P",
        help="listen on 127.0.0.1:P, 1-65535 (default: a free port)",
    )
    demo.add_argument("--hold", action="store_true", help="keep serving after the load loop ends")
    demo.add_argument(
        "--concurrency",
        type=int,
        default=4,
        metavar="C",
        help="concurrent clients, >= 1 (default: 4)",
    )
    demo.add_argument("--seed", type=int, default=None, help="random seed, for repeatable runs")
    demo.add_argument(
        "--service", default="shop", help="service name on every line (default: shop)"
    )

    pretty = sub.add_parser("pretty", help="read JSON lines on stdin, print them readably")
    pretty.add_argument("file", nargs="?", default="-", help="file to read (default: stdin)")

    # Listed for `obslog --help`; parsed by their own modules (see _DELEGATED).
    sub.add_parser("loki", help="Loki tooling: `obslog loki rules --help`", add_help=False)
    sub.add_parser(
        "celery-events",
        help="log Celery task events as JSON lines: `obslog celery-events --help`",
        add_help=False,
    )

    sub.add_parser("version", help="print the version")
    return parser


def _demo(args: argparse.Namespace) -> int:
    if args.requests is not None and args.requests < 0:
        raise UsageError(f"--requests must be >= 0, not {args.requests}")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be 1-65535 (or 0 for a free port), not {args.port}")
    if args.concurrency < 1:
        raise UsageError(f"--concurrency must be >= 1, not {args.concurrency}")
    from ._demo import run

    return run(
        requests=args.requests,
        fmt=args.format,
        port=args.port,
        concurrency=args.concurrency,
        seed=args.seed,
        service=args.service,
        hold=args.hold,
    )


def _pretty(args: argparse.Namespace) -> int:
    from ._pretty import pretty

    if args.file == "-":
        return pretty(sys.stdin, sys.stdout)
    try:
        source = open(args.file, encoding="utf-8", errors="replace")  # noqa: SIM115
    except OSError as exc:
        raise UsageError(f"cannot read {args.file!r}: {exc.strerror or exc}") from None
    with source:
        return pretty(source, sys.stdout)


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the command line; return the exit status.

    Args:
        argv: The arguments after ``obslog``; ``None`` reads ``sys.argv[1:]``.

    Returns:
        ``0`` on success, ``2`` for a usage error (one ``obslog CMD: error: ...`` line on
        standard error), or the command's own status.
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    command = args_list[0] if args_list else None
    try:
        delegated = _DELEGATED.get(command or "")
        if delegated is not None:
            return delegated(args_list[1:])
        args = _parser().parse_args(args_list)
        if args.command == "demo":
            return _demo(args)
        if args.command == "pretty":
            return _pretty(args)
        if args.command != "version":  # pragma: no cover - argparse allows only the above
            raise UsageError(f"unknown command {args.command!r}")
    except UsageError as exc:
        sys.stderr.write(f"obslog {command}: error: {exc}\n")
        return 2
    except KeyboardInterrupt:  # Ctrl-C, e.g. in `obslog pretty` reading a terminal
        return 130
    import obslog

    print(obslog.__version__)
    return 0
