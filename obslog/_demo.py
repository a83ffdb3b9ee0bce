"""
``obslog demo``: a small shop service on localhost, driven by a built-in load loop.

Needs no outside service.  The server is the standard library's ``ThreadingHTTPServer``; each
request runs in a request scope with timed ``db_query``, ``cache_get`` and ``remote_call`` blocks
(short sleeps standing in for the real work), some requests fail and some are slow.  Every line
printed is a real obslog line, as a service would write it.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import random
import re
import signal
import sys
import threading
import time

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import obslog

from ._http import resolve_ids


__all__ = ["ROUTES", "DemoServer", "run"]

log = logging.getLogger("shop")

TIMERS = ("db_query", "cache_get", "remote_call")


class PaymentDeclined(Exception):
    """The (simulated) payment provider refused the charge."""


class _Shop:
    """The demo service's handlers; each returns ``(status, body)`` or raises."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.lock = threading.Lock()

    def _pause(self, low_ms: float, high_ms: float) -> None:
        with self.lock:
            ms = self.rng.uniform(low_ms, high_ms)
        time.sleep(ms / 1000.0)

    def _chance(self, p: float) -> bool:
        with self.lock:
            return self.rng.random() < p

    def get_order(self, order_id: str) -> tuple[int, dict[str, Any]]:
        with obslog.timed("cache_get"):
            self._pause(0.1, 0.8)
        if self._chance(0.4):
            log.info("cache miss", extra={"order_id": order_id})
            with obslog.timed("db_query"):
                self._pause(2, 8)
        if int(order_id) > 900:
            log.warning("order not found", extra={"order_id": order_id})
            return 404, {"error": "not found"}
        return 200, {"id": int(order_id), "items": 3}

    def list_orders(self) -> tuple[int, dict[str, Any]]:
        for _ in range(2):
            with obslog.timed("db_query"):
                self._pause(1, 6)
                if self._chance(0.04):
                    raise TimeoutError("database statement timeout")
        log.info("orders listed", extra={"order_count": 25})
        return 200, {"orders": 25}

    def search(self) -> tuple[int, dict[str, Any]]:
        slow = self._chance(0.05)
        with obslog.timed("remote_call"):
            self._pause(150, 300) if slow else self._pause(5, 25)
        if slow:
            log.warning("search backend slow", extra={"backend": "search"})
        return 200, {"hits": 7}

    def checkout(self) -> tuple[int, dict[str, Any]]:
        for _ in range(3):
            with obslog.timed("db_query"):
                self._pause(1, 5)
        with obslog.timed("remote_call"):
            self._pause(10, 40)
            if self._chance(0.08):
                raise PaymentDeclined("card declined by provider")
        if self._chance(0.05):
            log.info("basket empty")
            return 400, {"error": "empty basket"}
        log.info("order placed", extra={"amount_cents": 4200, "currency": "EUR"})
        return 201, {"order": "placed"}


_ROUTES: list[tuple[str, str, re.Pattern[str], str]] = [
    ("GET", "/orders/{id}", re.compile(r"/orders/(\d+)"), "get_order"),
    ("GET", "/orders", re.compile(r"/orders"), "list_orders"),
    ("GET", "/search", re.compile(r"/search"), "search"),
    ("POST", "/checkout", re.compile(r"/checkout"), "checkout"),
]
UNMATCHED_ROUTE = "<unmatched>"

#: What ``obslog demo --help`` lists: method, route template, what it does.
ROUTES: tuple[tuple[str, str, str], ...] = (
    ("GET", "/orders/{id}", "one order: cache, sometimes the database; ids > 900 answer 404"),
    ("GET", "/orders", "list orders: two database queries, now and then a timeout (500)"),
    ("GET", "/search", "a remote call, now and then slow"),
    ("POST", "/checkout", "three queries and a payment call, now and then declined (500)"),
    ("GET", "/health", "liveness (obslog.health)"),
    ("GET", "/ready", "readiness: the shop listens and is not shutting down"),
    ("GET", "/metrics", "Prometheus metrics (obslog.metrics)"),
)


class _Handler(BaseHTTPRequestHandler):
    server: DemoServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in two writes on a kept-alive connection

    def log_message(self, format: str, *args: Any) -> None:  # stdlib signature
        """Silence the stdlib access log: the canonical line is the access log."""

    def _route(
        self,
    ) -> tuple[str, Callable[..., tuple[int, dict[str, Any]]] | None, tuple[str, ...]]:
        path = self.path.split("?", 1)[0]
        for method, template, pattern, name in _ROUTES:
            match = pattern.fullmatch(path)
            if match and method == self.command:
                return template, getattr(self.server.shop, name), match.groups()
        return UNMATCHED_ROUTE, None, ()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        extra = self.server.extra_routes.get(self.path.split("?", 1)[0])
        if extra is not None:
            status, headers, raw = extra(self)
            self._send(status, raw, headers)
            return
        route, handler, args = self._route()
        ids = resolve_ids(self.headers.get("X-Request-ID"), self.headers.get("traceparent"))
        status, body = 500, {"error": "internal"}
        req = obslog.request_scope(method=self.command, route=route, **ids.scope_fields())
        try:
            with req:
                if handler is None:
                    status, body = 404, {"error": "no route"}
                else:
                    req.status = 500  # until the handler returns
                    status, body = handler(*args)
                req.status = status
        except Exception:  # reported on the canonical line; answer 500
            status, body = 500, {"error": "internal"}
        payload = json.dumps(body).encode()
        self._send(
            status, payload, {"Content-Type": "application/json", "X-Request-ID": req.request_id}
        )

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _serve  # stdlib naming


ExtraRoute = Callable[[BaseHTTPRequestHandler], tuple[int, dict[str, str], bytes]]


class DemoServer(ThreadingHTTPServer):
    """The demo shop served on ``127.0.0.1``; *port* 0 picks a free port."""

    daemon_threads = True

    def __init__(self, port: int = 0, seed: int | None = None) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.shop = _Shop(random.Random(seed))
        # Extra paths served beside the shop's routes (path -> handler), e.g. health tiers.
        self.extra_routes: dict[str, ExtraRoute] = {}

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return int(self.server_address[1])


def _one_request(port: int, rng: random.Random, lock: threading.Lock) -> int:
    with lock:
        pick = rng.random()
        order_id = rng.randint(1, 1000)
        headers = {}
        if rng.random() < 0.3:
            headers["X-Request-ID"] = f"edge-{rng.getrandbits(48):012x}"
        elif rng.random() < 0.05:
            headers["X-Request-ID"] = "bad id\twith spaces"  # rejected: a new id is generated
        if rng.random() < 0.2:
            headers["traceparent"] = f"00-{rng.getrandbits(128):032x}-{rng.getrandbits(64):016x}-01"
    if pick < 0.45:
        method, path = "GET", f"/orders/{order_id}"
    elif pick < 0.65:
        method, path = "GET", "/orders"
    elif pick < 0.85:
        method, path = "GET", "/search"
    elif pick < 0.98:
        method, path = "POST", "/checkout"
    else:
        method, path = "GET", "/no/such/page"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=b"{}" if method == "POST" else None, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def drive(
    port: int,
    requests: int | None,
    concurrency: int = 4,
    seed: int | None = None,
    rate: float | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Send *requests* requests (``None``: until interrupted or *stop* is set); return the count."""
    rng = random.Random(seed)
    lock = threading.Lock()
    sent = 0
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        while (requests is None or sent < requests) and not (stop and stop.is_set()):
            batch = concurrency if requests is None else min(concurrency, requests - sent)
            list(pool.map(lambda _: _one_request(port, rng, lock), range(batch)))
            sent += batch
            if rate:
                time.sleep(batch / rate)
    return sent


def _serve_tiers(server: DemoServer) -> Callable[[], None]:
    """Serve /health, /ready and /metrics beside the shop's routes and log ``runtime`` lines.

    Returns the function that undoes it.
    """
    from . import metrics
    from .checks import ShutdownCheck, tcp_check
    from .health import HealthEndpoints, Readiness
    from .runtime import RuntimeLogger

    owns_metrics = metrics.installed() is None
    metrics.install()
    stopping = ShutdownCheck(install=False)
    readiness = Readiness()
    readiness.add("shop_listening", tcp_check("127.0.0.1", server.port, timeout=0.5))
    readiness.add("not_shutting_down", stopping)
    endpoints = HealthEndpoints(readiness)

    def tier(handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        path, accept = handler.path.split("?", 1)[0], handler.headers.get("Accept")
        status, headers, body = endpoints.handle(path, handler.command, accept)
        return status, dict(headers), body

    for path in endpoints.routes:
        server.extra_routes[path] = tier
    runtime_logger = RuntimeLogger(interval=10.0).start()  # the first line is logged at once

    def close() -> None:
        stopping.trigger("demo stopping")
        runtime_logger.close()
        if owns_metrics:
            metrics.uninstall()

    return close


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(
    requests: int | None = None,
    fmt: str = "json",
    port: int = 0,
    concurrency: int = 4,
    seed: int | None = None,
    service: str = "shop",
    hold: bool = False,
) -> int:
    """
    Configure obslog, serve the demo shop, drive *requests* requests through it; return 0.

    Raises:
        UsageError: The environment holds an invalid ``OBSLOG_*`` setting, or *port* cannot be
            bound (in use, or not allowed).
    """
    from ._cli import UsageError

    try:
        handler = obslog.configure(
            service=service, env="demo", version=obslog.__version__, fmt=fmt
        )
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    try:
        server = DemoServer(port=port, seed=seed)
    except OSError as exc:
        raise UsageError(
            f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}"
        ) from None
    stop = threading.Event()

    def on_error(record: logging.LogRecord) -> None:
        # `obslog demo | head`: the reader is gone; stop quietly instead of a traceback per line.
        if isinstance(sys.exc_info()[1], BrokenPipeError):
            stop.set()
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        else:
            logging.Handler.handleError(handler, record)

    handler.handleError = on_error  # type: ignore[method-assign]
    close_tiers = _serve_tiers(server)
    if threading.current_thread() is threading.main_thread():
        # `obslog demo --hold &` ignores SIGINT; stop cleanly on SIGTERM as well.
        signal.signal(signal.SIGTERM, _interrupt)
    thread = threading.Thread(target=server.serve_forever, name="obslog-demo", daemon=True)
    thread.start()
    log.info("demo serving", extra={"port": server.port, "requests": requests})
    try:
        drive(
            server.port,
            requests,
            concurrency=concurrency,
            seed=seed,
            rate=None if requests else 20.0,
            stop=stop,
        )
        if hold and not stop.is_set():
            log.info("demo holding", extra={"port": server.port})
            thread.join()
    except KeyboardInterrupt:
        pass
    finally:
        close_tiers()
        server.shutdown()
        server.server_close()
    return 0
