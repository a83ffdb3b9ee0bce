"""
The wire side of LokiHandler: one keep-alive connection, and the JSON push body of a batch.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import json

from collections.abc import Mapping, Sequence
from typing import Any

from .._render import epoch_micros
from ._stream import CANONICAL_LABEL


__all__ = ["Item", "Transport", "encode"]

_RETRY_AFTER_CAP = 300.0
_ERROR_DETAIL_CHARS = 300

#: One buffered entry: (record.created, level label, formatted line, trace_id or None,
#: canonical stream label value or None).
Item = tuple[float, str, str, "str | None", "str | None"]


def encode(
    batch: Sequence[Item], labels: Mapping[str, str], *, level_label: bool, compress: bool
) -> bytes:
    """
    Return the push request body of *batch*: one stream per level and canonical stream.

    Args:
        batch: The entries, oldest first.
        labels: The static stream labels.
        level_label: Add the ``level`` label.
        compress: Gzip the body.

    Returns:
        The JSON body, gzip-compressed when *compress*.
    """
    streams: dict[tuple[str, str | None], list[list[Any]]] = {}
    for created, level, line, trace_id, canonical in batch:
        value: list[Any] = [_timestamp_ns(created), line]
        if trace_id:
            value.append({"trace_id": trace_id})
        streams.setdefault((level if level_label else "", canonical), []).append(value)
    payload: dict[str, list[dict[str, Any]]] = {"streams": []}
    for (level, canonical), values in streams.items():
        stream = dict(labels)
        if level:
            stream["level"] = level
        if canonical:
            stream[CANONICAL_LABEL] = canonical
        payload["streams"].append({"stream": stream, "values": values})
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    data = body.encode("utf-8", "backslashreplace")
    return gzip.compress(data, compresslevel=6) if compress else data


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: rare from Loki, fall back to our own backoff
    return min(max(seconds, 0.0), _RETRY_AFTER_CAP)


def _timestamp_ns(created: float) -> str:
    # The same microsecond as the JSON line's "timestamp".
    return str(epoch_micros(created) * 1000)


class Transport:
    """One keep-alive HTTP connection to Loki, used by a single thread."""

    __slots__ = ("_conn", "_factory", "_headers", "_path")

    def __init__(self, factory: Any, path: str, headers: dict[str, str]) -> None:
        self._factory = factory
        self._path = path
        self._headers = headers
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # closing a broken socket may fail
                conn.close()

    def post(self, body: bytes) -> tuple[int, str, float | None]:
        """Send one push request; return (status, start of the response body, Retry-After)."""
        while True:
            reused = self._conn is not None
            if self._conn is None:
                self._conn = self._factory()
            conn = self._conn
            try:
                conn.request("POST", self._path, body=body, headers=self._headers)
                response = conn.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if reused:
                    # The server closed an idle keep-alive connection: retry once on a new one.
                    continue
                raise
            except BaseException:
                self.close()
                raise
            if response.will_close:
                self.close()
            detail = data[:_ERROR_DETAIL_CHARS].decode("utf-8", "replace").strip()
            return response.status, detail, _parse_retry_after(response.getheader("Retry-After"))
