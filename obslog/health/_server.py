"""
The standalone server: the three tiers from a stdlib HTTP server on a side port, for processes
without an HTTP server of their own.
"""

from __future__ import annotations

import socket
import threading

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from ._endpoints import HealthEndpoints, endpoints_for, with_length
from ._readiness import Readiness


__all__ = ["HealthServer", "serve"]

BACKLOG = max(128, socket.SOMAXCONN)
"""Listen backlog of the standalone server.

The stdlib default of 5 drops connections in a probe storm; the client retries its SYN only after
about a second, which alone breaks a 1 s probe timeout.
"""


class _Handler(BaseHTTPRequestHandler):
    endpoints: HealthEndpoints
    protocol_version = "HTTP/1.1"
    timeout = 10  # an idle keep-alive connection releases its thread
    # Headers and body go out in two writes; with Nagle on, a keep-alive client's delayed ACK
    # would hold the body back for ~40 ms.
    disable_nagle_algorithm = True
    server_version = "obslog"
    sys_version = ""

    def _serve(self) -> None:
        path = urlsplit(self.path).path or "/"
        accept = self.headers.get("Accept")
        status, headers, body = self.endpoints.handle(path, self.command, accept)
        self.send_response(status)
        for key, value in with_length(headers, body):
            self.send_header(key, value)
        self.end_headers()
        if body:
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: probes arrive every few seconds."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = BACKLOG


class _Server6(_Server):
    address_family = socket.AF_INET6


class HealthServer:
    """
    A running standalone server (see :func:`serve`).

    Attributes:
        host: The address it listens on.
        port: The bound port (the real one when 0 was asked for).
        endpoints: The core it serves.
    """

    def __init__(self, server: ThreadingHTTPServer, endpoints: HealthEndpoints) -> None:
        self._server = server
        self.endpoints = endpoints
        self.host: str = server.server_address[0]  # type: ignore[assignment]
        self.port: int = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.25},
            name="obslog-health-server",
            daemon=True,
        )
        self._thread.start()
        self._closed = False

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:9102``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.endpoints.prefix}"

    def close(self) -> None:
        """Stop serving and release the port (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> HealthServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def serve(
    target: HealthEndpoints | Readiness | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    **options: Any,
) -> HealthServer:
    """
    Serve the three tiers from a stdlib HTTP server in a daemon thread, on a side port.

    For processes without an HTTP server of their own (queue workers, cron-like loops).  Each
    request gets its own thread, so a slow ``/ready`` never holds up ``/health``.

    Args:
        target: A :class:`Readiness` or :class:`HealthEndpoints`.
        host: Address to bind; the default accepts only local connections, use ``"0.0.0.0"``
            for probes from outside the container.
        port: Port to bind; 0 picks a free one (read it from ``.port``).
        **options: Keyword arguments of :class:`HealthEndpoints`.

    Returns:
        The running server; call ``.close()`` (or use it as a context manager) to stop it.

    Raises:
        OSError: If the address cannot be bound.

    .. versionadded:: 0.1.0
    """
    endpoints = endpoints_for(target, options)
    handler = type("HealthRequestHandler", (_Handler,), {"endpoints": endpoints})
    server_class = _Server
    if ":" in host:
        server_class = _Server6
    server = server_class((host, port), handler)
    return HealthServer(server, endpoints)