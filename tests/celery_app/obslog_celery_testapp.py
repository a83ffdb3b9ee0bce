"""
Celery app run by the worker subprocess of ``tests/test_celery.py``.

Configured from the environment so that each test run gets its own broker database, queue and
log file: ``OBSLOG_TEST_BROKER``, ``OBSLOG_TEST_QUEUE``, ``OBSLOG_TEST_LOG`` (``-`` for stdout).
"""

from __future__ import annotations

import logging
import os
import sys
import time

from celery import Celery

import obslog
import obslog.celery


__all__ = ["app", "boom", "flaky", "inflight", "slow", "spawn", "work"]

_LOG = os.environ["OBSLOG_TEST_LOG"]  # "-": the worker's own stdout
obslog.configure(
    service="celery-test",
    level="INFO",
    stream=sys.stdout
    if _LOG == "-"
    else open(_LOG, "a", buffering=1, encoding="utf-8"),  # noqa: SIM115
)

app = Celery("obslog_celery_testapp", broker=os.environ["OBSLOG_TEST_BROKER"])
app.conf.update(
    task_default_queue=os.environ["OBSLOG_TEST_QUEUE"],
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=1,
)
obslog.celery.install(app)
obslog.celery.enable_events(app)
# One line per task: the canonical ``task`` line replaces Celery's own "received" / "succeeded in" /
# "raised unexpected" lines (internal errors are logged at CRITICAL and still show).
logging.getLogger("celery.app.trace").setLevel(logging.CRITICAL)
logging.getLogger("celery.worker.strategy").setLevel(logging.WARNING)

log = logging.getLogger("shop.tasks")


@app.task(name="obslog_test.work")
def work(n: int) -> int:
    """Log one line and time one block."""
    with obslog.timed("db_query"):
        time.sleep(0.005)
    log.info("working", extra={"n": n})
    return n


@app.task(name="obslog_test.boom")
def boom() -> None:
    """Fail."""
    log.info("about to fail")
    raise ValueError("boom")


@app.task(name="obslog_test.flaky", bind=True, max_retries=2)
def flaky(self: object) -> str:
    """Ask for one retry, then succeed."""
    if self.request.retries < 1:  # type: ignore[attr-defined]
        raise self.retry(exc=ConnectionError("upstream down"), countdown=0)  # type: ignore[attr-defined]
    log.info("flaky done")
    return "done"


@app.task(name="obslog_test.spawn")
def spawn() -> None:
    """Queue a child task from inside a task."""
    work.delay(7)


@app.task(name="obslog_test.inflight")
def inflight() -> None:
    """Log how many task runs this process has open (this one included)."""
    log.info("inflight", extra={"open_runs": obslog.celery.active_tasks()})


@app.task(name="obslog_test.slow")
def slow(seconds: float) -> None:
    """Sleep, so that a snapshot sees the task running."""
    time.sleep(seconds)
