"""
``LogRecord``\\ s made without ``LogRecord.__init__``'s per-record path arithmetic: the same
attributes, in the same order, with the same values.

Used where no caller is looked for: by :class:`obslog.ObslogLogger` (the stdlib path) and by
:mod:`obslog.processors` (the structlog path), only where :data:`FAST` (checked against a real
``LogRecord`` at import) and the record factory is ``logging.LogRecord`` itself.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

from collections.abc import Callable
from typing import Any


__all__ = ["FAST", "UNKNOWN_FILE", "make_record_maker", "unknown_caller_record"]

#: What the stdlib records as the file when it does not look for the caller.
UNKNOWN_FILE = "(unknown file)"
_UNKNOWN_FUNCTION = "(unknown function)"
# The attributes LogRecord.__init__ sets, in its order, on the versions this module knows
# (3.10 and 3.11 set these, 3.12 adds taskName; 3.13 computes the time otherwise, and gets its
# records from the factory).
_RECORD_KEYS = (
    "name", "msg", "args", "levelname", "levelno", "pathname", "filename", "module", "exc_info",
    "exc_text", "stack_info", "lineno", "funcName", "created", "msecs", "relativeCreated",
    "thread", "threadName", "processName", "process",
)  # fmt: skip


def _same_as_logrecord() -> bool:
    """Return whether the records made here are what ``logging.LogRecord`` makes here."""
    probe = logging.LogRecord("probe", logging.INFO, UNKNOWN_FILE, 0, "", None, None)
    start = getattr(logging, "_startTime", None)
    if start is None or tuple(probe.__dict__) not in (_RECORD_KEYS, (*_RECORD_KEYS, "taskName")):
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
# Python 3.12+: the name of the asyncio task logging.
_TASK_NAMES = (
    "taskName" in logging.LogRecord("probe", logging.INFO, UNKNOWN_FILE, 0, "", None, None).__dict__
)
# Each thread's own Thread object (threading.current_thread() looks it up on every call).
_THIS_THREAD = threading.local()


def _task_name() -> str | None:
    """Return the current asyncio task's name, as LogRecord does on Python 3.12+."""
    if not logging.logAsyncioTasks:  # type: ignore[attr-defined,unused-ignore]
        return None
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return None
    try:
        return asyncio.current_task().get_name()  # type: ignore[no-any-return]
    except Exception:  # no running loop, or no task: as LogRecord
        return None


def make_record_maker(
    pathname: str, func: str | None, *, from_factory: bool
) -> Callable[[str, int], logging.LogRecord]:
    """
    Return ``make_record(name, levelno)``, which returns the ``LogRecord`` that
    ``logging.LogRecord(name, levelno, pathname, 0, "", None, None, func)`` would make, attribute
    for attribute.

    The attributes the stdlib computes the same way for every record of a level (``levelno``,
    ``pathname``, ``filename``, ``module``...) are copied from one it made for the level; the
    others are computed here, as it does, every time.  With *from_factory*, the record factory
    makes the record where it is not ``logging.LogRecord`` or not :data:`FAST`; without, the
    caller has checked both.
    """
    # Per level: the attributes LogRecord computes the same for every record of that level.
    templates: dict[int, dict[str, Any]] = {}

    def make_record(name: str, levelno: int) -> logging.LogRecord:
        if from_factory:
            factory = logging.getLogRecordFactory()
            if factory is not logging.LogRecord or not FAST:
                return factory(name, levelno, pathname, 0, "", None, None, func)
        template = templates.get(levelno)
        if template is None:
            made = logging.LogRecord("", levelno, pathname, 0, "", None, None, func)
            template = templates[levelno] = dict(made.__dict__)
        fields = template.copy()
        fields["name"] = name
        fields["levelname"] = logging.getLevelName(levelno)  # addLevelName() may rename it
        fields["created"] = created = time.time()
        fields["msecs"] = int((created - int(created)) * 1000) + 0.0
        fields["relativeCreated"] = (created - _START_TIME) * 1000
        if logging.logThreads:
            fields["thread"] = threading.get_ident()
            try:
                thread = _THIS_THREAD.thread
            except AttributeError:  # this thread's first record
                thread = _THIS_THREAD.thread = threading.current_thread()
            fields["threadName"] = thread.name  # read each time: a thread may be renamed
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
        if _TASK_NAMES:
            fields["taskName"] = _task_name()
        record: logging.LogRecord = object.__new__(logging.LogRecord)
        record.__dict__ = fields
        return record

    return make_record


#: ``unknown_caller_record(name, levelno)``: the ``LogRecord`` that ``logging.LogRecord(name,
#: levelno, "(unknown file)", 0, "", None, None, "(unknown function)")`` would make, for
#: :class:`obslog.ObslogLogger`, which has checked the record factory and :data:`FAST` and sets
#: ``msg``, ``args`` and ``exc_info`` itself.
unknown_caller_record = make_record_maker(UNKNOWN_FILE, _UNKNOWN_FUNCTION, from_factory=False)
