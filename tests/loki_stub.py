"""
A stand-in for Loki's push endpoint, for tests and benchmarks -- it is not Loki.

Loki cannot run in the test environment, so this module implements the part of its contract that
a pushing client sees (Loki's HTTP API reference, "Ingest logs"):

- ``POST /loki/api/v1/push`` with ``Content-Type: application/json`` and optionally
  ``Content-Encoding: gzip`` or ``deflate``;
- body ``{"streams": [{"stream": {label: value}, "values": [[ns, line], [ns, line, {k: v}]]}]}``
  where ``ns`` is a string of decimal nanoseconds and the optional third element is flat
  string-to-string structured metadata;
- ``204 No Content`` on success, ``400`` for a malformed body.

It decompresses, decodes, validates that shape and records what arrives.  It can be scripted to
answer other statuses (429, 500, 400, ...) and to stall before answering, to play a rate-limited,
failing or slow Loki.  Protobuf/snappy bodies, limits, label rules and storage are not modelled.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import threading
import time
import zlib

from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


__all__ = ["Entry", "LokiStub", "PushRequest"]

PUSH_PATH = "/loki/api/v1/push"


@dataclass(frozen=True)
class Entry:
    """One log entry as Loki would store it."""

    labels: dict[str, str]
    timestamp: str
    line: str
    metadata: dict[str, str] | None


@dataclass
class PushRequest:
    """One request that reached the stand-in, with the status it was answered with."""

    status: int
    headers: dict[str, str]
    raw_size: int
    decoded_size: int
    entries: list[Entry] = field(default_factory=list)
    error: str | None = None


class _BadRequest(Exception):
    pass


def _decode(headers: dict[str, str], raw: bytes) -> list[Entry]:
    if headers.get("content-type", "").split(";")[0].strip() != "application/json":
        msg = "only Content-Type: application/json is implemented by the stand-in"
        raise _BadRequest(msg)
    encoding = headers.get("content-encoding", "").strip().lower()
    try:
        if encoding == "gzip":
            raw = gzip.decompress(raw)
        elif encoding == "deflate":
            raw = zlib.decompress(raw)
        elif encoding:
            msg = f"unsupported Content-Encoding {encoding!r}"
            raise _BadRequest(msg)
        payload = json.loads(raw.decode("utf-8"))
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = f"loghttp: cannot decode body: {exc}"
        raise _BadRequest(msg) from None
    return _entries(payload)


def _is_str_map(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def _entries(payload: Any) -> list[Entry]:
    if not isinstance(payload, dict) or not isinstance(payload.get("streams"), list):
        msg = "body must be an object with a 'streams' list"
        raise _BadRequest(msg)
    entries = []
    for stream in payload["streams"]:
        labels = stream.get("stream") if isinstance(stream, dict) else None
        if not _is_str_map(labels) or not labels:
            msg = f"stream labels must be a non-empty map of strings: {labels!r}"
            raise _BadRequest(msg)
        values = stream.get("values")
        if not isinstance(values, list):
            msg = "'values' must be a list"
            raise _BadRequest(msg)
        for value in values:
            if not isinstance(value, list) or len(value) not in (2, 3):
                msg = f"each value must be [ts, line] or [ts, line, metadata]: {value!r}"
                raise _BadRequest(msg)
            ts, line = value[0], value[1]
            if not isinstance(ts, str) or not ts.isdigit():
                msg = f"timestamp must be a string of epoch nanoseconds: {ts!r}"
                raise _BadRequest(msg)
            if not isinstance(line, str):
                msg = f"line must be a string: {line!r}"
                raise _BadRequest(msg)
            metadata = value[2] if len(value) == 3 else None
            if metadata is not None and not _is_str_map(metadata):
                msg = f"structured metadata must be a flat map of strings: {metadata!r}"
                raise _BadRequest(msg)
            entries.append(Entry(dict(labels), ts, line, metadata))
    return entries


class LokiStub:
    """
    Stand-in Loki push endpoint on 127.0.0.1, recording every request.

    Use as a context manager or with :meth:`start` / :meth:`stop`; :meth:`stop` followed by
    :meth:`start` brings it back on the same port (Loki down, then up).

    Args:
        port: Port to bind; 0 picks a free one.
    """

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.requests: list[PushRequest] = []
        self._script: list[tuple[int, dict[str, str]]] = []
        self._cond = threading.Condition()
        self._go = threading.Event()
        self._go.set()
        self._in_flight = 0
        self._connections: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The push URL."""
        return f"http://127.0.0.1:{self.port}{PUSH_PATH}"

    def start(self) -> LokiStub:
        """Listen (again) and serve in a background thread."""
        stub = self

        class Handler(_PushHandler):
            owner = stub

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and drop open connections; stalled requests are released first."""
        self._go.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        with self._cond:
            connections, self._connections = self._connections, set()
        for conn in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> LokiStub:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- behaviour ---------------------------------------------------------------------------

    def script(self, *statuses: int | tuple[int, dict[str, str]]) -> None:
        """Answer the next requests with *statuses* in order (then 204 again)."""
        with self._cond:
            for status in statuses:
                self._script.append(status if isinstance(status, tuple) else (status, {}))

    def stall(self) -> None:
        """Hold every request, after reading it and before answering, until :meth:`release`."""
        self._go.clear()

    def release(self) -> None:
        """Answer held and future requests again."""
        self._go.set()

    # -- what arrived ------------------------------------------------------------------------

    def entries(self) -> list[Entry]:
        """Every entry of every accepted (2xx) request, in arrival order."""
        with self._cond:
            return [e for r in self.requests if 200 <= r.status < 300 for e in r.entries]

    def lines(self) -> list[str]:
        """The lines of :meth:`entries`."""
        return [e.line for e in self.entries()]

    def statuses(self) -> list[int]:
        """The status each request was answered with, in order."""
        with self._cond:
            return [r.status for r in self.requests]

    def wait_for_lines(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until at least *count* lines were accepted."""
        return self._wait(lambda: len(self.entries()) >= count, timeout)

    def wait_for_in_flight(self, count: int = 1, timeout: float = 10.0) -> bool:
        """Wait until *count* requests are held by :meth:`stall`."""
        return self._wait(lambda: self._in_flight >= count, timeout)

    def _wait(self, predicate: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def _answer(self, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, str], bytes]:
        try:
            entries = _decode(headers, raw)
            error = None
        except _BadRequest as exc:
            entries, error = [], str(exc)
        with self._cond:
            self._in_flight += 1
            self._cond.notify_all()
        self._go.wait()
        with self._cond:
            self._in_flight -= 1
            if error is not None:
                status, extra = 400, {}
            elif self._script:
                status, extra = self._script.pop(0)
            else:
                status, extra = 204, {}
            if status >= 300 and error is None:
                error = f"scripted {status}"
            self.requests.append(
                PushRequest(
                    status=status,
                    headers=headers,
                    raw_size=len(raw),
                    decoded_size=sum(len(e.line) for e in entries),
                    entries=entries if 200 <= status < 300 else [],
                    error=error,
                )
            )
            self._cond.notify_all()
        return status, extra, (error or "").encode()


class _PushHandler(BaseHTTPRequestHandler):
    owner: LokiStub
    protocol_version = "HTTP/1.1"  # keep-alive, as Loki
    server_version = "loki-stand-in"

    def setup(self) -> None:
        super().setup()
        with self.owner._cond:
            self.owner._connections.add(self.connection)

    def finish(self) -> None:
        with self.owner._cond:
            self.owner._connections.discard(self.connection)
        super().finish()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path.split("?")[0] != PUSH_PATH:
            self._reply(404, {}, b"404 page not found")
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, extra, body = self.owner._answer(headers, raw)
        self._reply(status, extra, body)

    def _reply(self, status: int, extra: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in extra.items():
            self.send_header(name, value)
        if status != 204:
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if status != 204:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Stay quiet: tests read the recorded requests instead."""
