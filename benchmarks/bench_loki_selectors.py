"""
Bytes each Loki rule must read, with and without the canonical stream: no Loki needed.

Loki evaluates a rule by reading every chunk of every stream its selector matches, then drops
lines with the line filter; the cost of a rule follows the bytes of the streams it selects (on a
real Loki: ~250 ms per evaluation of the p99 rule over all streams at 20 ordinary lines per
request line, ~50-60 ms over the canonical stream alone).  This benchmark counts those bytes.

It writes a mix of ordinary lines and canonical ``request`` lines (plus ``task`` and ``runtime``
lines) with real obslog logging through a real :class:`obslog.loki.LokiHandler`, into the
stand-in push endpoint of ``tests/loki_stub.py`` (not Loki: it records what arrives), once with
the canonical stream (the default) and once without (``canonical_stream=False``, the layout of
obslog 0.1).  Then, for every shipped rule, it matches each stream selector of the rule against
the streams that arrived (Loki derives ``service_name`` from ``service``) and adds up the bytes
of the lines in the matched streams.  It also checks fidelity: the lines each selector keeps
after its line filter and its parsed ``event`` are the same under both layouts.

Run ``python -m benchmarks.bench_loki_selectors [RATIO ...]`` (default: 20 and 100 ordinary lines
per request line).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import sys
import uuid

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import obslog

from obslog.loki import LokiHandler
from obslog.loki.rules import build_files
from obslog.runtime import RuntimeLogger

from ._loki import load_stub


REQUESTS = 1_000
TASKS_PER_REQUEST = 0.1
RUNTIME_LINES = 20

_SELECTOR = re.compile(r"\{([^{}]*)\}\s*(\|[=~]\s*`([^`]*)`)?")
_MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Stream:
    """One stream as Loki stores it: its labels and its lines."""

    labels: dict[str, str]
    lines: tuple[str, ...]

    @property
    def size(self) -> int:
        """Bytes of the stream's lines (UTF-8), what a selector that matches it must read."""
        return sum(len(line.encode("utf-8")) for line in self.lines)


def write_mix(ratio: int, requests: int = REQUESTS) -> tuple[list[Stream], list[Stream]]:
    """
    Log *requests* request scopes with *ratio* ordinary lines each; return both layouts' streams.

    The same records go through two handlers at once, one per layout, so both layouts hold
    exactly the same lines.

    Args:
        ratio: Ordinary lines per canonical request line.
        requests: Number of request scopes.

    Returns:
        The streams without the canonical stream (obslog 0.1) and with it.
    """
    stub_module = load_stub()
    stubs = [stub_module.LokiStub().start() for _ in range(2)]
    canonical_logger = logging.getLogger(obslog.get_config()["canonical_logger"])
    app = logging.getLogger(f"bench.shop.{uuid.uuid4().hex}")
    handlers = [
        LokiHandler(
            stub.url,
            {"service": "shop", "env": "bench"},
            canonical_stream=canonical_stream,
            queue_size=requests * (ratio + 2) + RUNTIME_LINES + 10,
            batch_wait=5.0,
            flush_timeout=60.0,
        )
        for stub, canonical_stream in zip(stubs, (False, True), strict=True)
    ]
    saved = (canonical_logger.level, canonical_logger.propagate, app.propagate)
    for logger in (canonical_logger, app):
        for handler in handlers:
            logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
    try:
        for i in range(requests):
            with obslog.scope("request", route="/orders/{id}", method="GET") as s:
                for j in range(ratio):
                    app.debug(
                        "cache lookup", extra={"key": f"order:{i}:{j}", "hit": j % 3 == 0}
                    )
                s.status = 500 if i % 50 == 0 else 200
            if i % int(1 / TASKS_PER_REQUEST) == 0:
                with obslog.scope("task", task_name="send_receipt"):
                    app.info("receipt queued", extra={"order": i})
        runtime = RuntimeLogger(logger=app)
        for _ in range(RUNTIME_LINES):
            runtime.log_once()
        if not all(handler.flush(timeout=120) for handler in handlers):
            msg = "the stand-in did not receive every line"
            raise RuntimeError(msg)
        layouts = []
        for stub in stubs:
            streams: dict[tuple[tuple[str, str], ...], list[str]] = {}
            for entry in stub.entries():
                streams.setdefault(tuple(sorted(entry.labels.items())), []).append(entry.line)
            layouts.append([Stream(dict(k), tuple(lines)) for k, lines in streams.items()])
    finally:
        with contextlib.redirect_stderr(io.StringIO()):
            for handler in handlers:
                handler.close()
        for stub in stubs:
            stub.stop()
        for logger in (canonical_logger, app):
            for handler in handlers:
                logger.removeHandler(handler)
        canonical_logger.setLevel(saved[0])
        canonical_logger.propagate = saved[1]
        app.propagate = saved[2]
    return layouts[0], layouts[1]


def _matches(labels: dict[str, str], matchers: Iterable[tuple[str, str, str]]) -> bool:
    for name, op, value in matchers:
        actual = labels.get(name, "")
        value = json.loads(f'"{value}"')
        if op == "=" and actual != value:
            return False
        if op == "!=" and actual == value:
            return False
        if op == "=~" and re.fullmatch(value, actual) is None:
            return False
        if op == "!~" and re.fullmatch(value, actual) is not None:
            return False
    return True


def selectors(expr: str) -> list[tuple[list[tuple[str, str, str]], str | None]]:
    """Return each stream selector of *expr* as (matchers, first line filter or None)."""
    return [
        (_MATCHER.findall(match.group(1)), match.group(3))
        for match in _SELECTOR.finditer(expr)
        if _MATCHER.search(match.group(1))
    ]


def _event_of(line: str) -> Any:
    try:
        return json.loads(line).get("event")
    except (ValueError, AttributeError):
        return None


@dataclass(frozen=True)
class RuleCost:
    """What one rule reads under one layout."""

    rule: str
    bytes_read: int
    kept: tuple[str, ...]


def rule_costs(streams: Sequence[Stream], files: dict[str, dict[str, Any]]) -> list[RuleCost]:
    """
    Return, for every rule of *files*, the bytes its selectors read and the lines they keep.

    A line is kept when it passes the selector, the line filter after it (``|=`` or ``|~``),
    and has a canonical ``event`` the line filter names: what the rule's pipeline goes on with.
    """
    costs = []
    for document in files.values():
        for group in document["groups"]:
            for rule in group["rules"]:
                total, kept = 0, []
                for matchers, line_filter in selectors(rule["expr"]):
                    for stream in streams:
                        labels = {**stream.labels, "service_name": stream.labels["service"]}
                        if not _matches(labels, matchers):
                            continue
                        total += stream.size
                        for line in stream.lines:
                            if line_filter is None or _passes(line_filter, line):
                                kept.append(line)
                name = rule.get("record") or rule.get("alert")
                costs.append(RuleCost(f"{group['name']}/{name}", total, tuple(sorted(kept))))
    return costs


def _passes(line_filter: str, line: str) -> bool:
    events = re.findall(r"request|task|runtime", line_filter)
    return any(f'"event":"{e}"' in line for e in events) and _event_of(line) in events


def compare(ratio: int, requests: int | None = None) -> tuple[list[RuleCost], list[RuleCost]]:
    """Return the rule costs without and with the canonical stream, for one mix."""
    old_layout, new_layout = write_mix(ratio, REQUESTS if requests is None else requests)
    legacy = rule_costs(old_layout, build_files(canonical_stream=False))
    return legacy, rule_costs(new_layout, build_files())


def main(argv: Sequence[str] | None = None) -> int:
    """Print the bytes read per rule under both layouts, for each mix, and the ratio."""
    ratios = [int(a) for a in (sys.argv[1:] if argv is None else argv)] or [20, 100]
    print(
        "obslog Loki rules: bytes each rule's selectors read, all streams of the service "
        "(obslog 0.1, --no-canonical-stream) vs the canonical stream (obslog=\"<event>\")"
    )
    for ratio in ratios:
        legacy, canonical = compare(ratio)
        same = all(a.kept == b.kept for a, b in zip(legacy, canonical, strict=True))
        print(
            f"\n  mix {ratio}:1 ordinary:request lines ({REQUESTS} requests); lines kept after "
            f"the line filter identical in both layouts: {'yes' if same else 'NO'}"
        )
        width = max(len(c.rule) for c in legacy)
        print(f"    {'rule'.ljust(width)}  {'all streams':>12}  {'canonical':>10}  {'ratio':>7}")
        for a, b in zip(legacy, canonical, strict=True):
            print(
                f"    {a.rule.ljust(width)}  {a.bytes_read:12,d}  {b.bytes_read:10,d}"
                f"  {a.bytes_read / max(b.bytes_read, 1):6.1f}x"
            )
        total_a = sum(c.bytes_read for c in legacy)
        total_b = sum(c.bytes_read for c in canonical)
        print(
            f"    {'all rules'.ljust(width)}  {total_a:12,d}  {total_b:10,d}"
            f"  {total_a / max(total_b, 1):6.1f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
