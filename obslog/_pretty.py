"""``obslog pretty``: read JSON lines and print them for a person (level colours, timings)."""

from __future__ import annotations

import json
import sys

from typing import IO

from ._render import render_console


__all__ = ["pretty"]


def pretty(source: IO[str], sink: IO[str], colors: bool | None = None) -> int:
    """
    Copy *source* to *sink*, rendering each obslog JSON line readably; other lines pass as is.

    *colors* defaults to whether *sink* is a terminal.
    """
    if colors is None:
        colors = bool(getattr(sink, "isatty", lambda: False)())
    for raw in source:
        text = raw.rstrip("\n")
        try:
            line = json.loads(text)
        except ValueError:
            line = None
        if isinstance(line, dict):
            text = render_console(line, colors)
        try:
            sink.write(text + "\n")
            # Each line at once: `tail -f app.log | obslog pretty` shows lines as they come.
            sink.flush()
        except BrokenPipeError:
            return 0
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pretty(sys.stdin, sys.stdout))
