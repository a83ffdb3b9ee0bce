"""
The multiprocess directory: where it is, dropping dead workers' series, and compacting their files.
"""

from __future__ import annotations

import contextlib
import os

from collections.abc import Iterator

import psutil

from prometheus_client import values as _pc_values
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.multiprocess import mark_process_dead as _pc_mark_process_dead


try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no compaction, mark_process_dead only
    fcntl = None  # type: ignore[assignment]


__all__ = [
    "cleanup_dead_processes",
    "dir_lock",
    "mark_process_dead",
    "multiprocess_dir",
    "values_are_multiprocess",
]

_LOCK_FILE = ".obslog.lock"


def multiprocess_dir() -> str | None:
    """
    Return the multiprocess directory in use, or ``None`` in single-process mode.

    Returns:
        ``PROMETHEUS_MULTIPROC_DIR`` (or the deprecated lower-case spelling) when it is set.
    """
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get(
        "prometheus_multiproc_dir"  # noqa: SIM112 - the deprecated spelling, still honoured
    )
    return path or None


def values_are_multiprocess() -> bool:
    """Whether prometheus_client writes its values to the multiprocess directory."""
    return bool(getattr(_pc_values.ValueClass, "_multiprocess", False))


def mark_process_dead(pid: int, path: str | None = None) -> None:
    """
    Drop a dead worker's ``live*`` gauge series at once (for a gunicorn ``child_exit`` hook).

    Its counters and histograms stay counted; :func:`cleanup_dead_processes` compacts them later.

    Args:
        pid: The dead worker's process id.
        path: The multiprocess directory; ``PROMETHEUS_MULTIPROC_DIR`` by default.
    """
    path = path or multiprocess_dir()
    if path:
        _pc_mark_process_dead(pid, path)


def _pid_of(filename: str) -> int | None:
    if not filename.endswith(".db"):
        return None
    tail = filename[:-3].rpartition("_")[2]
    return int(tail) if tail.isdigit() else None


@contextlib.contextmanager
def dir_lock(path: str, exclusive: bool) -> Iterator[None]:
    """Hold an ``flock`` on the directory *path*: *exclusive* to change it, shared to read it."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    fd = os.open(os.path.join(path, _LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _dead_pids(path: str) -> set[int]:
    me = os.getpid()
    pids = {_pid_of(name) for name in os.listdir(path)}
    return {pid for pid in pids if pid is not None and pid != me and not psutil.pid_exists(pid)}


def cleanup_dead_processes(path: str | None = None) -> list[int]:
    """
    Remove the series of worker processes that are gone from the multiprocess directory.

    For every pid that has files in *path* but no longer runs: its ``live*`` gauge files are
    deleted (its runtime series and its share of ``obslog_requests_active`` disappear), and its
    counter, histogram and summary files are merged into ``<type>_archive.db`` files so that
    totals are kept while the directory stops growing.  Runs under an exclusive ``flock`` on the
    directory; :func:`render_metrics` reads under a shared one, so no scrape sees a file counted
    twice or half removed.

    Args:
        path: The multiprocess directory; ``PROMETHEUS_MULTIPROC_DIR`` by default.

    Returns:
        The pids that were cleaned up (sorted).
    """
    path = path or multiprocess_dir()
    if not path or not os.path.isdir(path):
        return []
    if not _dead_pids(path):
        return []
    with dir_lock(path, exclusive=True):
        dead = _dead_pids(path)  # again, under the lock: another worker may have done it
        for pid in dead:
            _pc_mark_process_dead(pid, path)
        if fcntl is not None and dead:
            _archive(path, dead)
    return sorted(dead)


def _archive(path: str, dead: set[int]) -> None:
    # prometheus_client documents MultiProcessCollector.merge(files, accumulate=False) for
    # writing merged values back to mmap files; MmapedDict / mmap_key are its file format.
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    by_type: dict[str, list[str]] = {}
    for name in os.listdir(path):
        pid = _pid_of(name)
        typ = name.partition("_")[0]
        if pid in dead and typ in ("counter", "histogram", "summary"):
            by_type.setdefault(typ, []).append(os.path.join(path, name))
    for typ, files in by_type.items():
        archive = os.path.join(path, f"{typ}_archive.db")
        sources = [*files, archive] if os.path.exists(archive) else files
        merged = MultiProcessCollector.merge(sources, accumulate=False)
        tmp = os.path.join(path, f"{typ}_archive.tmp")
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        out = MmapedDict(tmp)
        try:
            for metric in merged:
                for s in metric.samples:
                    key = mmap_key(
                        metric.name, s.name, list(s.labels), list(s.labels.values()),
                        metric.documentation,
                    )
                    out.write_value(key, s.value, 0.0)
        finally:
            out.close()
        os.replace(tmp, archive)
        for f in files:
            os.remove(f)
