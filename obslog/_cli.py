"""The ``obslog`` command (also ``python -m obslog``)."""

from __future__ import annotations

import argparse
import sys

from collections.abc import Sequence


__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="obslog", description="Structured-logging correlation for Python services."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="serve a demo shop on localhost and drive load through it")
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
        help="listen on 127.0.0.1:P (default: a free port)",
    )
    demo.add_argument("--hold", action="store_true", help="keep serving after the load loop ends")
    demo.add_argument(
        "--concurrency", type=int, default=4, metavar="C", help="concurrent clients (default: 4)"
    )
    demo.add_argument("--seed", type=int, default=None, help="random seed, for repeatable runs")
    demo.add_argument(
        "--service", default="shop", help="service name on every line (default: shop)"
    )

    pretty = sub.add_parser("pretty", help="read JSON lines on stdin, print them readably")
    pretty.add_argument("file", nargs="?", default="-", help="file to read (default: stdin)")

    loki = sub.add_parser("loki", help="Loki tooling: `obslog loki rules --help`", add_help=False)
    loki.add_argument("args", nargs=argparse.REMAINDER)

    events = sub.add_parser(
        "celery-events", help="log Celery task events as JSON lines", add_help=False
    )
    events.add_argument("args", nargs=argparse.REMAINDER)

    sub.add_parser("version", help="print the version")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "demo":
        if args.requests is not None and args.requests < 0:
            print("obslog demo: --requests must be >= 0", file=sys.stderr)
            return 2
        from ._demo import run

        return run(
            requests=args.requests,
            fmt=args.format,
            port=args.port,
            concurrency=max(1, args.concurrency),
            seed=args.seed,
            service=args.service,
            hold=args.hold,
        )
    if args.command == "pretty":
        from ._pretty import pretty

        if args.file == "-":
            return pretty(sys.stdin, sys.stdout)
        with open(args.file, encoding="utf-8", errors="replace") as source:
            return pretty(source, sys.stdout)
    if args.command == "loki":
        from .loki._rules import main as loki_main

        return loki_main(args.args)
    if args.command == "celery-events":
        from ._celery_events import main as events_main

        return events_main(args.args)
    import obslog

    print(obslog.__version__)
    return 0
