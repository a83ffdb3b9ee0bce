"""
LogQL building blocks of obslog's rules: stream selectors and canonical-line pipelines.

:func:`stream_selector` is the one place that decides which streams a rule reads.  By default
it selects the *canonical stream* of an event: obslog's canonical ``request``, ``task`` and
``runtime`` lines carry the stream label ``obslog`` whose value is their event (set by
:class:`obslog.loki.LokiHandler` and by the Alloy and Promtail configs in ``loki/``), so a rule
reads only those lines instead of every line of every service.  Ordinary lines carry no
``obslog`` label.  ``canonical_stream=False`` gives the selector of obslog 0.1 (every stream of
the service), for shippers that cannot add the label.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import json

from collections.abc import Iterable, Sequence

from ..._schema import EVENT, SAMPLE_RATE
from .._stream import CANONICAL_EVENTS, CANONICAL_LABEL


__all__ = [
    "CANONICAL_EVENTS",
    "CANONICAL_LABEL",
    "INTERVAL",
    "RATE_RANGE",
    "RUNTIME_RANGE",
    "SERVICE_LABELS",
    "SLOW_RANGE",
    "selector",
    "stream_selector",
]

#: Stream labels that may name the service.
SERVICE_LABELS: tuple[str, ...] = ("service_name", "service")

#: Range of the rate rules; the record names say ``rate1m``.
RATE_RANGE = "1m"
#: Range of quantiles and ratios; the record names say ``5m``.
SLOW_RANGE = "5m"
#: Range of runtime rules: runtime lines come every 60 s by default.
RUNTIME_RANGE = "2m"
#: Evaluation interval of every group.
INTERVAL = "1m"


def selector(service: str | None = None, label: str = "service_name") -> str:
    """
    Return the service-only stream selector (every stream of the service or of all services).

    This is the selector of obslog 0.1's rules; rules now use :func:`stream_selector`.

    Args:
        service: One service's name, or None for every service (``=~".+"``).
        label: The stream label that names the service: ``service_name`` (default, derived by
            Loki from ``service``) or ``service``.

    Returns:
        A LogQL stream selector such as ``{service_name="shop"}``.

    Raises:
        ValueError: *label* is not one of the two service labels or *service* is empty.

    .. versionadded:: 0.1.0
    """
    return "{" + _service_matcher(service, label) + "}"


def stream_selector(
    event: str | Sequence[str] | None = None,
    service: str | None = None,
    *,
    label: str = "service_name",
    canonical_stream: bool = True,
) -> str:
    """
    Return the stream selector of a rule over canonical lines.

    Args:
        event: The canonical event the rule reads (``"request"``, ``"task"``, ``"runtime"``),
            several of them, or None for all three.
        service: One service's name, or None for every service.
        label: The stream label that names the service (see :func:`selector`).
        canonical_stream: Select the canonical stream (``obslog="<event>"``); ``False`` selects
            every stream of the service, as obslog 0.1 did.

    Returns:
        A LogQL stream selector, e.g. ``{service_name="shop", obslog="request"}`` or, with
        *canonical_stream* false, ``{service_name="shop"}``.

    Raises:
        ValueError: An unknown event, an invalid *label* or an empty *service*.

    .. versionadded:: 0.2.0
    """
    service_matcher = _service_matcher(service, label)
    events = _events(event)
    if not canonical_stream:
        return "{" + service_matcher + "}"
    if len(events) == 1:
        stream = f'{CANONICAL_LABEL}="{events[0]}"'
    else:
        stream = f'{CANONICAL_LABEL}=~"{"|".join(events)}"'
    return "{" + service_matcher + ", " + stream + "}"


def _service_matcher(service: str | None, label: str) -> str:
    if label not in SERVICE_LABELS:
        msg = f"service label must be one of {', '.join(SERVICE_LABELS)}, not {label!r}"
        raise ValueError(msg)
    if service is None:
        return label + '=~".+"'
    if not isinstance(service, str) or not service:
        msg = "service must be a non-empty name"
        raise ValueError(msg)
    return label + "=" + json.dumps(service, ensure_ascii=False)


def _events(event: str | Sequence[str] | None) -> tuple[str, ...]:
    if event is None:
        return CANONICAL_EVENTS
    events = (event,) if isinstance(event, str) else tuple(event)
    unknown = [e for e in events if e not in CANONICAL_EVENTS]
    if unknown or not events:
        msg = (
            f"canonical events are {', '.join(CANONICAL_EVENTS)}; "
            f"got {', '.join(map(repr, unknown)) or 'none'}"
        )
        raise ValueError(msg)
    return tuple(e for e in CANONICAL_EVENTS if e in events)


# -- pipelines (private: the group builders share them) ---------------------------------------


def by(*labels: str) -> str:
    """``by (service_name, env, ...)``: every result keeps the service and env."""
    return "by (service_name, env" + "".join(f", {name}" for name in labels) + ")"


def canonical(
    sel: str, event: str, fields: Iterable[str], *stages: str, contains: str | None = None
) -> str:
    """Pipeline of one kind of canonical line: line filters, json, exact event, extra stages."""
    parts = [sel, f'|= `"{EVENT}":"{event}"`']
    if contains is not None:
        parts.append(f"|= `{contains}`")
    parts.append("| json " + ", ".join([EVENT, *fields]))
    parts.append(f'| {EVENT}="{event}"')
    parts.extend(stages)
    return " ".join(parts)


def unwrapped(pipeline: str, unwrap: str, window: str) -> str:
    """Close a log pipeline into an unwrapped range: ``... | unwrap x | __error__="" [w]``."""
    return f'{pipeline} | unwrap {unwrap} | __error__="" [{window}]'


def weighted_rate(
    sel: str, event: str, fields: Sequence[str], *stages: str, window: str = RATE_RANGE
) -> str:
    """``rate`` over ``unwrap sample_rate``: weighted events per second (not yet grouped)."""
    pipeline = canonical(sel, event, [*fields, SAMPLE_RATE], *stages)
    return f"rate({unwrapped(pipeline, SAMPLE_RATE, window)})"


def weighted_sum_rate(
    sel: str, event: str, fields: Sequence[str], value: str, contains: str | None = None
) -> str:
    """``rate`` over ``unwrap value*sample_rate``: a weighted sum per second (not grouped)."""
    stage = f"| label_format weighted=`{{{{ mulf .{value} .{SAMPLE_RATE} }}}}`"
    pipeline = canonical(sel, event, [*fields, SAMPLE_RATE], stage, contains=contains)
    return f"rate({unwrapped(pipeline, 'weighted', RATE_RANGE)})"


def sum_by(grouping: str, inner: str) -> str:
    """``sum by (...) (inner)``."""
    return f"sum {grouping} ({inner})"


def ratio(numerator: str, denominator: str) -> str:
    """Ratio that is 0 (not absent) when the numerator has no series."""
    return f"({numerator} or 0 * {denominator})\n/\n{denominator}"
