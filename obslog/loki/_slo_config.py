"""
Objectives for ``obslog loki slo``: the SLO value, command-line flags and the YAML file format.

A YAML file holds a list of objectives under ``slos``::

    slos:
      - name: checkout               # [a-z0-9][a-z0-9_-]*, unique in the file
        service: shop                # service_name of the lines
        routes: [/checkout, /cart]   # or route: /checkout; or task(s): for Celery task lines
        per_route: true              # one SLI per route (default: true when routes are given)
        period: 30d                  # 7d to 90d (default 30d)
        availability: 99.9           # percent of requests that must not fail
        error_statuses: [5xx]        # optional: statuses that fail instead of outcome="error"
        latency_ms: 300              # with latency_objective: percent of requests at most this slow
        latency_objective: 99
        runbook_url: https://runbooks.example.com/checkout

Each ``availability`` or ``latency_*`` pair gives one SLO, named ``<name>-availability`` or
``<name>-latency``.  Every error names the file and the key.
"""

from __future__ import annotations

import importlib
import re

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


__all__ = ["SLO", "ConfigError", "from_flags", "load_config", "parse_duration"]

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_STATUS = re.compile(r"[1-5](?:[0-9]{2}|[0-9]x|xx)")
_DURATION = re.compile(r"([1-9][0-9]*)([mhdw])")
_UNIT_S = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_MIN_PERIOD_S = 7 * 86400
_MAX_PERIOD_S = 90 * 86400
_KEYS = {
    "name",
    "service",
    "route",
    "routes",
    "task",
    "tasks",
    "per_route",
    "period",
    "availability",
    "error_statuses",
    "latency_ms",
    "latency_objective",
    "runbook_url",
}
RUNBOOK_PLACEHOLDER = "https://runbooks.example.com/obslog-slo/{slo}"


class ConfigError(ValueError):
    """An objective is invalid; the message names the file (or flag) and the key."""


@dataclass(frozen=True)
class SLO:
    """
    One service level objective over canonical lines.

    Attributes:
        name: Unique name, the ``slo`` label of every series and alert.
        sli: ``availability`` or ``latency``.
        service: The ``service_name`` of the lines.
        kind: ``request`` or ``task`` (the canonical line's event).
        targets: Routes or task names selected (empty: the whole service).
        group_label: ``route`` / ``task_name`` when there is one SLI per route or task, else None.
        objective: Target share of good events, e.g. ``0.999``.
        period: The SLO period, e.g. ``30d``.
        threshold_ms: Latency threshold (latency SLIs only).
        error_statuses: Status codes or classes counted as errors (availability of requests).
        runbook_url: Link put on every alert.

    .. versionadded:: 0.2.0
    """

    name: str
    sli: str
    service: str
    kind: str
    targets: tuple[str, ...]
    group_label: str | None
    objective: float
    period: str
    threshold_ms: float = 0.0
    error_statuses: tuple[str, ...] = ()
    runbook_url: str = ""

    def describe(self) -> str:
        """Return one sentence saying what the objective promises."""
        what = "requests" if self.kind == "request" else "task runs"
        scope = f"of {self.service}"
        if self.targets:
            noun = "route" if self.kind == "request" else "task"
            scope += f" ({noun} {', '.join(self.targets)})"
        percent = f"{self.objective * 100:.10g}%"
        if self.sli == "latency":
            return f"{percent} of the {what} {scope} take at most {self.threshold_ms:g} ms"
        bad = (
            f"status {'/'.join(self.error_statuses)}" if self.error_statuses else 'outcome="error"'
        )
        return f"{percent} of the {what} {scope} succeed (failure: {bad})"


def parse_duration(text: str) -> int:
    """
    Return a Prometheus-style duration (``30d``, ``6h``, ``5m``, ``2w``) in seconds.

    Raises:
        ConfigError: *text* is not one number followed by m, h, d or w.
    """
    match = _DURATION.fullmatch(str(text))
    if match is None:
        msg = f"{text!r} is not a duration such as 30d, 28d or 4w"
        raise ConfigError(msg)
    return int(match.group(1)) * _UNIT_S[match.group(2)]


def _percent(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        msg = f"{where}: must be a percentage such as 99.9, not {value!r}"
        raise ConfigError(msg)
    if not 0 < value < 100:
        msg = (
            f"{where}: must be above 0 and below 100 (a percentage such as 99.9; 100 leaves "
            f"no error budget), not {value!r}"
        )
        raise ConfigError(msg)
    return round(float(value) / 100, 12)


def _names(value: Any, where: str) -> tuple[str, ...]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values:
        msg = f"{where}: must be a non-empty string or list of strings, not {value!r}"
        raise ConfigError(msg)
    for item in values:
        if not isinstance(item, str) or not item or item != item.strip():
            msg = f"{where}: {item!r} is not a non-empty name without surrounding spaces"
            raise ConfigError(msg)
    if len(set(values)) != len(values):
        msg = f"{where}: names given twice in {values!r}"
        raise ConfigError(msg)
    return tuple(values)


def _objectives(entry: Mapping[str, Any], where: str) -> list[SLO]:
    """Validate one entry (from a file or flags) and return its SLOs."""

    def at(key: str) -> str:
        return f"{where}: {key}"

    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        msg = f"{at(unknown[0])}: unknown key; valid keys are {', '.join(sorted(_KEYS))}"
        raise ConfigError(msg)
    service = entry.get("service")
    if not isinstance(service, str) or not service:
        msg = f"{at('service')}: required, the service_name of the lines (e.g. shop)"
        raise ConfigError(msg)
    route_keys = [k for k in ("route", "routes") if entry.get(k) is not None]
    task_keys = [k for k in ("task", "tasks") if entry.get(k) is not None]
    if len(route_keys) + len(task_keys) > 1:
        msg = f"{at(', '.join(route_keys + task_keys))}: give only one of route, routes, task, "
        msg += "tasks"
        raise ConfigError(msg)
    kind = "task" if task_keys else "request"
    key = (route_keys + task_keys)[0] if route_keys or task_keys else None
    targets = _names(entry[key], at(key)) if key else ()
    per_route = entry.get("per_route")
    if per_route is not None and not isinstance(per_route, bool):
        msg = f"{at('per_route')}: must be true or false, not {per_route!r}"
        raise ConfigError(msg)
    if kind == "task":
        if per_route is not None:
            msg = f"{at('per_route')}: only for requests (task SLIs are always per task)"
            raise ConfigError(msg)
        group_label: str | None = "task_name"
    else:
        group_label = "route" if (bool(targets) if per_route is None else per_route) else None
    period = entry.get("period", "30d")
    try:
        period_s = parse_duration(period)
    except ConfigError as exc:
        raise ConfigError(f"{at('period')}: {exc}") from None
    if not _MIN_PERIOD_S <= period_s <= _MAX_PERIOD_S:
        msg = f"{at('period')}: must be from 7d to 90d (the longest alert window is 3d), "
        msg += f"not {period!r}"
        raise ConfigError(msg)
    base = entry.get("name") or _default_name(service, targets)
    if not isinstance(base, str) or not _NAME.fullmatch(base):
        msg = f"{at('name')}: {base!r} is not a name of [a-z0-9_-] starting with a letter or digit"
        raise ConfigError(msg)
    runbook = entry.get("runbook_url")
    if runbook is not None and (not isinstance(runbook, str) or not runbook.strip()):
        msg = f"{at('runbook_url')}: must be a URL string, not {runbook!r}"
        raise ConfigError(msg)
    common: dict[str, Any] = {
        "service": service,
        "kind": kind,
        "targets": targets,
        "group_label": group_label,
        "period": period,
    }
    slos: list[SLO] = []
    if entry.get("availability") is not None:
        statuses: tuple[str, ...] = ()
        if entry.get("error_statuses") is not None:
            if kind == "task":
                msg = f"{at('error_statuses')}: only for requests (tasks fail by outcome)"
                raise ConfigError(msg)
            statuses = _names(entry["error_statuses"], at("error_statuses"))
            for status in statuses:
                if not _STATUS.fullmatch(status):
                    msg = f"{at('error_statuses')}: {status!r} is not a status such as 503, "
                    msg += "50x or 5xx"
                    raise ConfigError(msg)
        name = f"{base}-availability"
        slos.append(
            SLO(
                name=name,
                sli="availability",
                objective=_percent(entry["availability"], at("availability")),
                error_statuses=statuses,
                runbook_url=(runbook or RUNBOOK_PLACEHOLDER).replace("{slo}", name),
                **common,
            )
        )
    elif entry.get("error_statuses") is not None:
        msg = f"{at('error_statuses')}: only with availability"
        raise ConfigError(msg)
    latency_ms, latency_objective = entry.get("latency_ms"), entry.get("latency_objective")
    if (latency_ms is None) != (latency_objective is None):
        missing, given = (
            ("latency_objective", "latency_ms")
            if latency_objective is None
            else ("latency_ms", "latency_objective")
        )
        msg = f"{at(missing)}: required with {given}"
        raise ConfigError(msg)
    if latency_ms is not None:
        if (
            isinstance(latency_ms, bool)
            or not isinstance(latency_ms, (int, float))
            or not 0 < latency_ms < 86_400_000
        ):
            msg = f"{at('latency_ms')}: must be a number of milliseconds above 0, not "
            msg += f"{latency_ms!r}"
            raise ConfigError(msg)
        name = f"{base}-latency"
        slos.append(
            SLO(
                name=name,
                sli="latency",
                objective=_percent(latency_objective, at("latency_objective")),
                threshold_ms=float(latency_ms),
                runbook_url=(runbook or RUNBOOK_PLACEHOLDER).replace("{slo}", name),
                **common,
            )
        )
    if not slos:
        msg = f"{where}: give availability and/or latency_ms with latency_objective"
        raise ConfigError(msg)
    return slos


def _default_name(service: str, targets: Sequence[str]) -> str:
    parts = [re.sub(r"[^a-z0-9_]+", "-", p.lower()).strip("-_") for p in (service, *targets[:1])]
    name = "-".join(p for p in parts if p)
    return name[:63].strip("-_") or "slo"


def _unique(slos: list[SLO], where: str) -> list[SLO]:
    seen: set[str] = set()
    for slo in slos:
        if slo.name in seen:
            msg = f"{where}: SLO name {slo.name!r} is used twice; give each objective a name"
            raise ConfigError(msg)
        seen.add(slo.name)
    return slos


def from_flags(
    *,
    name: str | None,
    service: str | None,
    routes: Sequence[str],
    tasks: Sequence[str],
    per_route: bool | None,
    availability: float | None,
    error_statuses: Sequence[str],
    latency_ms: float | None,
    latency_objective: float | None,
    period: str,
    runbook_url: str | None,
) -> list[SLO]:
    """
    Return the SLOs of one objective given on the command line.

    Raises:
        ConfigError: An option is missing or invalid; the message names the flag.
    """
    entry: dict[str, Any] = {
        "name": name,
        "service": service,
        "routes": list(routes) or None,
        "tasks": list(tasks) or None,
        "per_route": per_route,
        "availability": availability,
        "error_statuses": list(error_statuses) or None,
        "latency_ms": latency_ms,
        "latency_objective": latency_objective,
        "period": period,
        "runbook_url": runbook_url,
    }
    try:
        return _objectives({k: v for k, v in entry.items() if v is not None}, "flags")
    except ConfigError as exc:
        # "flags: latency_ms: ..." reads better as "--latency-ms: ...".
        text = re.sub(r"^flags: (\w+)", lambda m: "--" + m.group(1).replace("_", "-"), str(exc))
        raise ConfigError(text) from None


def load_config(path: str | Path) -> list[SLO]:
    """
    Read a YAML file of objectives (format in the module docstring).

    Args:
        path: The file.

    Returns:
        The SLOs, in file order.

    Raises:
        ConfigError: The file is unreadable, not YAML, or an objective is invalid; the message
            names the file, the entry and the key.
        ImportError: PyYAML is not installed (``pip install 'obslog[loki]'``).
    """
    try:
        # Imported by name: PyYAML is optional and ships no type information.
        yaml: Any = importlib.import_module("yaml")
    except ImportError:
        msg = "reading an SLO file needs PyYAML: pip install 'obslog[loki]'"
        raise ImportError(msg, name="yaml") from None
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read: {exc.strerror or exc}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from None
    if not isinstance(document, dict) or set(document) != {"slos"}:
        keys = sorted(document) if isinstance(document, dict) else []
        extra = f" (found: {', '.join(map(str, keys))})" if keys else ""
        msg = f"{where}: the file needs exactly one top-level key, slos{extra}"
        raise ConfigError(msg)
    entries = document["slos"]
    if not isinstance(entries, list) or not entries:
        msg = f"{where}: slos: must be a non-empty list of objectives"
        raise ConfigError(msg)
    slos: list[SLO] = []
    for index, entry in enumerate(entries):
        label = f"{where}: slos[{index}]"
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            label += f" ({entry['name']})"
        if not isinstance(entry, dict):
            msg = f"{label}: must be a mapping of keys such as name, service, availability"
            raise ConfigError(msg)
        slos += _objectives(entry, label)
    return _unique(slos, where)
