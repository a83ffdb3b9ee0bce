"""
Long-running commands in tests: start one, read its JSON lines as they come, stop it by pid.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


class Running:
    """A command started with :class:`subprocess.Popen` whose stdout is read by a thread."""

    def __init__(
        self,
        argv: Sequence[str],
        cwd: Path | str | None = None,
        env: dict[str, str] | None = None,
        stdin: int = subprocess.DEVNULL,
    ) -> None:
        self.argv = list(argv)
        self.proc = subprocess.Popen(
            self.argv,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env=env,
        )
        self.seen: list[str] = []
        self.stderr = ""
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._err = threading.Thread(target=self._read_stderr, daemon=True)
        self._err.start()
        self._out = threading.Thread(target=self._read_stdout, daemon=True)
        self._out.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self._lines.put(raw)
        self._lines.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60) -> dict:
        """Return the first JSON line on stdout that *predicate* accepts; fail after *timeout* s."""

        def accept(raw: str) -> dict | None:
            try:
                line = json.loads(raw)
            except ValueError:
                return None
            return line if isinstance(line, dict) and predicate(line) else None

        return self._wait(accept, timeout)

    def wait_for_text(self, text: str, timeout: float = 60) -> str:
        """Return the first stdout line containing *text*; fail after *timeout* s."""
        return self._wait(lambda raw: raw if text in raw else None, timeout)

    def _wait(self, accept: Callable[[str], Any], timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{self.argv}: no matching line in {timeout} s: {self.seen}")
            try:
                raw = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if raw is None:
                code = self.proc.wait()
                self._err.join(5)
                raise AssertionError(
                    f"{self.argv} exited with {code} first: {self.stderr}\n{self.seen}"
                )
            self.seen.append(raw)
            found = accept(raw)
            if found is not None:
                return found

    def lines(self) -> list[dict]:
        """The JSON object lines read so far (after the process ended: all of them)."""
        while True:
            try:
                raw = self._lines.get_nowait()
            except queue.Empty:
                break
            if raw is not None:
                self.seen.append(raw)
        out = []
        for raw in self.seen:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if isinstance(line, dict):
                out.append(line)
        return out

    def stop(self, signum: int = signal.SIGINT, timeout: float = 30) -> int:
        """Send *signum* to the process (by its pid) and return its exit status."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signum)
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            code = self.proc.wait(timeout)
        finally:
            self.kill()
        self._err.join(5)
        self._out.join(5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return code

    def kill(self) -> None:
        """Kill the process if it still runs (teardown)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
