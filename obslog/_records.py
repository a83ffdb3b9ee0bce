"""
A stdlib record whose caller was not looked for, made without ``LogRecord.__init__``'s per-record
path arithmetic: the same attributes, in the same order, with the same values.

Used by :class:`obslog.ObslogLogger` only where :data:`FAST` (checked against a real
``LogRecord`` at import) and the record factory is ``logging.LogRecord`` itself.
"""

from __future__ import annotations

import collections.abc
import logging
import os
import sys
import threading
import time

from typing import Any


__all__ = ["FAST", "UNKNOWN_FILE", "unknown_caller_record"]

#: What the stdlib records as the file when it does not look for the caller.
UNKNOWN_FILE = "(unknown file)"
_UNKNOWN_FUNCTION = "(unknown function)"
# The attributes LogRecord.__init__ sets, in its order, on the versions this module knows
# (3.10 and 3.11; newer ones add some, and get their records from the factory).
_RECORD_KEYS = (
    "name", "msg", "args", "levelname", "levelno", "pathname", "filename", "module", "exc_info",
    "exc_text", "stack_info", "lineno", "funcName", "created", "msecs", "relativeCreated",
    "thread", "threadName", "processName", "process",
)  # fmt: skip


def _same_as_logrecord() -> bool:
    """Return whether :func:`unknown_caller_record` makes what ``logging.LogRecord`` makes here."""
    probe = logging.LogRecord("probe", logging.INFO, UNKNOWN_FILE, 0, "", (), None)
    start = getattr(logging, "_startTime", None)
    if start is None or tuple(probe.__dict__) != _RECORD_KEYS:
        return False
    created = probe.created
    # The time arithmetic differs between Python versions: check it against a real record.
    return bool(
        int((created - int(created)) * 1000) + 0.0 == probe.msecs
        and (created - start) * 1000 == probe.relativeCreated
    )


#: Decided once: where it is not the same, every record comes from the record factory.
FAST = _same_as_logrecord()
_START_TIME: float = getattr(logging, "_startTime", 0.0)
# Per level: the attributes LogRecord computes the same for every record without a caller.
_TEMPLATES: dict[int, dict[str, Any]] = {}


def unknown_caller_record(
    name: str, levelno: int, msg: object, args: Any, exc_info: Any
) -> logging.LogRecord:
    """
    Return the ``LogRecord`` that ``logging.LogRecord(name, levelno, "(unknown file)", 0, msg,
    args, exc_info, "(unknown function)")`` would make, attribute for attribute.

    The path attributes (``pathname``, ``filename``, ``module``...) are copied from one it made
    for the level; the others are computed here, as it does, every time.
    """
    template = _TEMPLATES.get(levelno)
    if template is None:
        made = logging.LogRecord("", levelno, UNKNOWN_FILE, 0, "", (), None, _UNKNOWN_FUNCTION)
        template = _TEMPLATES[levelno] = dict(made.__dict__)
    fields = template.copy()
    created = time.time()
    fields["name"] = name
    fields["msg"] = msg
    # As LogRecord: logger.info("%(a)s", {"a": 1}) formats with the mapping itself.
    if args and len(args) == 1 and isinstance(args[0], collections.abc.Mapping) and args[0]:
        args = args[0]
    fields["args"] = args
    fields["levelname"] = logging.getLevelName(levelno)  # addLevelName() may rename it
    fields["exc_info"] = exc_info
    fields["created"] = created
    fields["msecs"] = int((created - int(created)) * 1000) + 0.0
    fields["relativeCreated"] = (created - _START_TIME) * 1000
    if logging.logThreads:
        fields["thread"] = threading.get_ident()
        fields["threadName"] = threading.current_thread().name
    else:
        fields["thread"] = fields["threadName"] = None
    process_name: str | None = None
    if logging.logMultiprocessing:
        process_name = "MainProcess"
        mp = sys.modules.get("multiprocessing")
        if mp is not None:
            try:  # noqa: SIM105 - hot path: a try costs nothing, contextlib.suppress() does
                process_name = mp.current_process().name
            except Exception:  # as LogRecord: keep the default
                pass
    fields["processName"] = process_name
    fields["process"] = os.getpid() if logging.logProcesses else None
    record: logging.LogRecord = object.__new__(logging.LogRecord)
    record.__dict__ = fields
    return record
