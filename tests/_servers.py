"""
Real servers on 127.0.0.1, port 0, in background threads (or on the running event loop), for the
HTTP integration tests; entering one gives its base URL.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from collections.abc import AsyncIterator


def free_port() -> int:
    """Return a loopback port nothing listens on (at the time of the call)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class UvicornThread:
    """A real uvicorn server on 127.0.0.1, port 0, in a background thread."""

    def __init__(self, app, **options) -> None:
        import uvicorn

        options.setdefault("access_log", False)
        options.setdefault("lifespan", "auto")
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, **options)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def port(self) -> int:
        """The port uvicorn listens on (once started)."""
        return self.server.servers[0].sockets[0].getsockname()[1]

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc_info) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class WSGIServerThread:
    """A threaded WSGI server (a ``socketserver`` one) serving forever in a background thread."""

    def __init__(self, server) -> None:
        self.server = server
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return self.server.server_address[1]

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc_info) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


class WerkzeugThread(WSGIServerThread):
    """werkzeug's threaded WSGI server on 127.0.0.1, port 0, in a background thread."""

    def __init__(self, app) -> None:
        from werkzeug.serving import make_server

        super().__init__(make_server("127.0.0.1", 0, app, threaded=True))


@contextlib.asynccontextmanager
async def serve_aiohttp(app, **options) -> AsyncIterator[str]:
    """Run *app* on aiohttp's server at 127.0.0.1, port 0; yield its base URL."""
    from aiohttp import web

    options.setdefault("access_log", None)
    runner = web.AppRunner(app, **options)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()
