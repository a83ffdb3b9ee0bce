"""
A linter for Loki rule files: what the ruler's validation rejects, and what Loki rejects although
Grafana's LogQL grammar accepts it.

.. versionadded:: 0.2.0
   Split out of ``obslog.loki._rules``.
"""

from __future__ import annotations

import re

from collections.abc import Mapping
from typing import Any


__all__ = ["NO_GROUPING", "lint", "lint_logql"]

#: Range functions on which Loki forbids a direct ``by``/``without`` (wrap them in ``sum by``).
NO_GROUPING = (
    "rate",
    "rate_counter",
    "count_over_time",
    "sum_over_time",
    "bytes_rate",
    "bytes_over_time",
    "absent_over_time",
)
_LOG_RANGE_ONLY = ("count_over_time", "bytes_rate", "bytes_over_time")
_UNWRAP_ONLY = (
    "rate_counter",
    "sum_over_time",
    "avg_over_time",
    "max_over_time",
    "min_over_time",
    "first_over_time",
    "last_over_time",
    "stdvar_over_time",
    "stddev_over_time",
    "quantile_over_time",
)
_RANGE_FUNCTIONS = tuple(sorted({*NO_GROUPING, *_UNWRAP_ONLY}, key=len, reverse=True))
_STAGES_NEEDING_ERROR_FILTER = re.compile(
    r"\|\s*(json|logfmt|regexp|pattern|unpack|unwrap|label_format|line_format)\b"
)
_NUMERIC_FILTER = re.compile(r"\|\s*[A-Za-z_][A-Za-z0-9_]*\s*(>=|<=|==|>|<)")
_ERROR_FILTER_END = re.compile(r'\|\s*__error__\s*=\s*""\s*$')
_CALL = re.compile(r"\b(" + "|".join(_RANGE_FUNCTIONS) + r")\s*\(")
_MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_RULE_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_GROUP_KEYS = {"name", "interval", "limit", "rules"}
_RULE_KEYS = {"record", "alert", "expr", "for", "labels", "annotations"}


def _mask_strings(expr: str) -> str:
    """Replace the inside of "..." and `...` strings with spaces, keeping every offset."""
    out = list(expr)
    i, n = 0, len(expr)
    while i < n:
        quote = expr[i]
        if quote in '"`':
            j = i + 1
            while j < n and expr[j] != quote:
                if quote == '"' and expr[j] == "\\":
                    out[j] = " "
                    j += 1
                out[j] = " " if j < n else ""
                j += 1
            i = j + 1
        else:
            i += 1
    return "".join(out)


def _closing(masked: str, open_at: int) -> int:
    depth = 0
    for k in range(open_at, len(masked)):
        if masked[k] == "(":
            depth += 1
        elif masked[k] == ")":
            depth -= 1
            if depth == 0:
                return k
    return -1


def lint_logql(expr: str) -> list[str]:
    """
    Find forms that Loki rejects or that break obslog's conventions, beyond the grammar.

    Checks: a ``by``/``without`` directly on :data:`NO_GROUPING` functions; a metric pipeline
    with a parser, formatter, unwrap or numeric filter that does not end with ``| __error__=""``;
    ``unwrap`` inside ``count_over_time``/``bytes_*``; an unwrap-only function without
    ``unwrap``; a stream selector whose matchers all match the empty string.

    Args:
        expr: A LogQL expression.

    Returns:
        One message per problem; empty when none is found.
    """
    problems: list[str] = []
    masked = _mask_strings(expr)
    for call in _CALL.finditer(masked):
        function = call.group(1)
        close = _closing(masked, call.end() - 1)
        if close < 0:
            problems.append(f"{function}: unbalanced parentheses")
            continue
        after = masked[close + 1 :].lstrip()
        if function in NO_GROUPING and re.match(r"(by|without)\b", after):
            problems.append(
                f"grouping directly on {function}(...) is not allowed: use sum by (...)"
            )
        body, masked_body = expr[call.end() : close], masked[call.end() : close]
        bracket = masked_body.rfind("[")
        if bracket < 0:
            problems.append(f"{function}: no [range]")
            continue
        pipeline, masked_pipeline = body[:bracket], masked_body[:bracket]
        has_unwrap = re.search(r"\|\s*unwrap\b", masked_pipeline) is not None
        if function in _LOG_RANGE_ONLY and has_unwrap:
            problems.append(f"{function} does not take an unwrap")
        if function in _UNWRAP_ONLY and not has_unwrap:
            problems.append(f"{function} needs an unwrap")
        needs_filter = _STAGES_NEEDING_ERROR_FILTER.search(
            masked_pipeline
        ) or _NUMERIC_FILTER.search(masked_pipeline)
        if needs_filter and not _ERROR_FILTER_END.search(pipeline.rstrip()):
            problems.append(f'{function}: the pipeline must end with | __error__="" before [range]')
    for selector_match in re.finditer(r"\{([^{}]*)\}", masked):
        # `{{ ... }}` templates sit inside strings and are masked away.
        inner = expr[selector_match.start(1) : selector_match.end(1)]
        matchers = _MATCHER.findall(inner)
        if not matchers:
            problems.append(f"stream selector {{{inner}}} has no matcher")
            continue
        if not any(_matches_something(op, value) for _, op, value in matchers):
            problems.append(
                f"stream selector {{{inner}}} needs a matcher that excludes the empty value"
            )
    return problems


def _matches_something(op: str, value: str) -> bool:
    """True when the matcher does not match the empty value (Loki demands one such matcher)."""
    if op == "=":
        return value != ""
    if op == "=~":
        try:
            return re.fullmatch(value.replace("\\\\", "\\"), "") is None
        except re.error:
            return True
    return False


def lint(document: Mapping[str, Any]) -> list[str]:
    """
    Check a Loki rule file document the way the ruler's validation does, plus :func:`lint_logql`.

    Args:
        document: A parsed rule file (``{"groups": [...]}``).

    Returns:
        One message per problem; empty when the file is fine.
    """
    problems: list[str] = []
    if not isinstance(document, Mapping) or set(document) != {"groups"}:
        return ["a rule file has exactly one top-level key: groups"]
    names: set[str] = set()
    for group in document["groups"]:
        name = group.get("name")
        where = f"group {name!r}"
        if not name:
            problems.append("a group needs a non-empty name")
        elif name in names:
            problems.append(f"{where}: name used twice in the file")
        names.add(name)
        problems += [f"{where}: unknown key {key!r}" for key in set(group) - _GROUP_KEYS]
        if not group.get("rules"):
            problems.append(f"{where}: no rules")
        for rule in group.get("rules") or []:
            problems += [f"{where}: {p}" for p in _lint_rule(rule)]
    return problems


def _lint_rule(rule: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    what = rule.get("record") or rule.get("alert") or "?"
    problems += [f"{what}: unknown key {key!r}" for key in set(rule) - _RULE_KEYS]
    if ("record" in rule) == ("alert" in rule):
        problems.append(f"{what}: a rule has exactly one of record and alert")
    if "record" in rule:
        record = str(rule["record"])
        if not _METRIC_NAME.fullmatch(record) or ":" not in record:
            problems.append(f"{what}: record must be a metric name with ':' (level:metric:ops)")
        problems += [
            f"{what}: a recording rule has no {key}"
            for key in ("for", "annotations")
            if key in rule
        ]
    labels = rule.get("labels") or {}
    for label in labels:
        if not _RULE_LABEL.fullmatch(str(label)) or label == "__name__":
            problems.append(f"{what}: invalid label name {label!r}")
    expr = rule.get("expr")
    if not isinstance(expr, str) or not expr.strip():
        problems.append(f"{what}: expr is missing")
    else:
        problems += [f"{what}: {p}" for p in lint_logql(expr)]
    return problems
