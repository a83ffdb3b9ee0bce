"""
The canonical stream: the one stream label that every shipping path and every rule agree on.

Canonical ``request``, ``task`` and ``runtime`` lines carry the stream label ``obslog`` whose
value is their event; ordinary lines carry no ``obslog`` label.  The label takes only the values
of :data:`CANONICAL_EVENTS`, whatever the lines hold, so it adds at most three streams per
combination of the other labels.
"""

from __future__ import annotations


__all__ = ["CANONICAL_EVENTS", "CANONICAL_LABEL", "canonical_stream_of"]

#: The stream label of canonical lines; its value is the line's event.
CANONICAL_LABEL = "obslog"
#: The events of canonical lines: the only values :data:`CANONICAL_LABEL` ever takes.
CANONICAL_EVENTS: tuple[str, ...] = ("request", "task", "runtime")

_VALUE_OF = {event: event for event in CANONICAL_EVENTS}


def canonical_stream_of(event: object) -> str | None:
    """
    Return the canonical stream label value for an event, or None for an ordinary line.

    The value returned is one of obslog's own constants, never the caller's object.
    """
    if type(event) is not str:
        return None
    return _VALUE_OF.get(event)
