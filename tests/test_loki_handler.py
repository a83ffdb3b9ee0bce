"""
Tests for obslog.loki.LokiHandler against a stand-in of Loki's push endpoint (tests/loki_stub.py).

Real stdlib logging, a real HTTP server on 127.0.0.1 (free port), real subprocesses for exit,
SIGTERM and fork.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import logging.config
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
import zlib

from pathlib import Path

import pytest

from _lines import wait_until
from _servers import free_port
from loki_stub import LokiStub

import obslog

from obslog._config import CONFIG
from obslog.loki._handler import LokiHandler


PACKAGE_ROOT = str(Path(obslog.__file__).resolve().parent.parent)
LABELS = {"service": "shop", "env": "test"}


def run_python(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run *code* in a fresh interpreter that imports this obslog."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=_child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_ROOT, env.get("PYTHONPATH")]))
    return env


@pytest.fixture(name="stub")
def _stub():
    stub = LokiStub().start()
    yield stub
    stub.stop()


@pytest.fixture(name="make_handler")
def _make_handler():
    made: list[LokiHandler] = []

    def make(url: str, **kwargs) -> LokiHandler:
        kwargs.setdefault("labels", LABELS)
        kwargs.setdefault("flush_on_sigterm", False)
        kwargs.setdefault("batch_wait", 0.05)
        kwargs.setdefault("backoff", 0.01)
        kwargs.setdefault("max_backoff", 0.05)
        kwargs.setdefault("flush_timeout", 5.0)
        handler = LokiHandler(url, **kwargs)
        handler.setFormatter(logging.Formatter("%(message)s"))
        made.append(handler)
        return handler

    yield make
    for handler in made:
        handler.close()


@pytest.fixture(name="log")
def _log():
    logger = logging.getLogger(f"test_loki.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger
    logger.handlers.clear()


class TestLokiHandler:
    """obslog.loki.LokiHandler."""

    # -- what arrives --------------------------------------------------------------------------

    def test_lines_arrive_intact_and_gzip_decoded(self, stub, make_handler, log):
        """Each record arrives once, gzip-compressed, as its formatted line with an ns timestamp."""
        handler = make_handler(stub.url)
        log.addHandler(handler)
        messages = ['plain', 'quotes " and \\ backslash', "unicode é ✓ 日本", "tab\tand\nnewline"]
        before = time.time_ns()
        for message in messages:
            log.info(message)

        assert handler.flush()

        assert messages == stub.lines()
        assert {"gzip"} == {r.headers.get("content-encoding") for r in stub.requests}
        assert {"application/json"} == {r.headers.get("content-type") for r in stub.requests}
        for entry in stub.entries():
            assert before - 1000 <= int(entry.timestamp) <= time.time_ns()
        stats = handler.stats()
        assert {"sent": 4, "dropped": 0, "failed": 0, "retried": 0} == {
            k: stats[k] for k in ("sent", "dropped", "failed", "retried")
        }

    def test_uncompressed_when_asked(self, stub, make_handler, log):
        """compress=False sends plain JSON without Content-Encoding."""
        handler = make_handler(stub.url, compress=False)
        log.addHandler(handler)
        log.info("plain body")

        assert handler.flush()

        assert ["plain body"] == stub.lines()
        assert [None] == [r.headers.get("content-encoding") for r in stub.requests]

    def test_default_formatter_is_obslog_json(self, stub, log):
        """Without a formatter, lines are obslog JSON lines whose timestamp matches the entry's."""
        handler = LokiHandler(stub.url, LABELS, flush_on_sigterm=False, batch_wait=0.05)
        try:
            log.addHandler(handler)
            log.warning("order %s placed", 42)
            assert handler.flush()
        finally:
            handler.close()

        assert isinstance(handler.formatter, obslog.JsonFormatter)
        [entry] = stub.entries()
        line = json.loads(entry.line)
        assert ("order 42 placed", "warning") == (line["event"], line["level"])
        ts = int(entry.timestamp)
        assert line["timestamp"].endswith(
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts // 10**9))
            + f".{ts % 10**9 // 1000:06d}Z"
        )

    def test_labels_are_static_and_low_cardinality(self, stub, make_handler, log):
        """Streams carry only the static labels plus level; ids stay in the line."""
        handler = make_handler(stub.url)
        log.addHandler(handler)
        for i in range(20):
            log.info("req %d", i, extra={"request_id": uuid.uuid4().hex, "route": f"/r/{i}"})
        log.warning("careful")
        log.error("broken")

        assert handler.flush()

        label_sets = {tuple(sorted(e.labels.items())) for e in stub.entries()}
        assert {
            (("env", "test"), ("level", "info"), ("service", "shop")),
            (("env", "test"), ("level", "warning"), ("service", "shop")),
            (("env", "test"), ("level", "error"), ("service", "shop")),
        } == label_sets

    def test_trace_id_travels_as_structured_metadata(self, stub, make_handler, log):
        """A record's trace_id becomes structured metadata, never a label; no trace_id, none."""
        handler = make_handler(stub.url)
        log.addHandler(handler)
        trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
        log.info("traced", extra={"trace_id": trace_id})
        log.info("untraced")

        assert handler.flush()

        assert [{"trace_id": trace_id}, None] == [e.metadata for e in stub.entries()]
        assert all("trace_id" not in e.labels for e in stub.entries())

    def test_scope_trace_id_is_structured_metadata(self, stub, make_handler, log):
        """The handler's own ContextFilter captures the scope: its trace_id is the metadata."""
        handler = make_handler(stub.url)
        log.addHandler(handler)
        trace_id = "0af7651916cd43dd8448eb211c80319c"
        with obslog.scope("job", trace_id=trace_id):
            log.info("in scope")

        assert handler.flush()

        assert [{"trace_id": trace_id}] == [e.metadata for e in stub.entries()]

    def test_labels_default_to_configured_service_and_env(
        self, stub, make_handler, log, monkeypatch
    ):
        """labels=None takes service and env from obslog's configuration."""
        monkeypatch.setattr(CONFIG, "service", "billing")
        monkeypatch.setattr(CONFIG, "env", "prod")
        handler = make_handler(stub.url, labels=None)
        log.addHandler(handler)
        log.info("configured")

        assert handler.flush()

        assert [{"service": "billing", "env": "prod", "level": "info"}] == [
            e.labels for e in stub.entries()
        ]

    @pytest.mark.parametrize("name", ["request_id", "trace_id", "pid", "level", "bad-name", "__x"])
    def test_per_record_or_invalid_label_names_are_refused(self, name):
        """A label that changes per record (or is not a valid name) raises ValueError at once."""
        with pytest.raises(ValueError, match="label"):
            LokiHandler("http://127.0.0.1:1", {name: "x"}, flush_on_sigterm=False)

    # -- batching ------------------------------------------------------------------------------

    def test_batches_respect_size(self, stub, make_handler, log):
        """A batch is sent once it reaches batch_size and never exceeds it (no waiting for time)."""
        handler = make_handler(stub.url, batch_size=1000, batch_wait=30)
        log.addHandler(handler)
        for i in range(50):
            log.info("%03d %s", i, "x" * 96)  # 100 characters per line

        assert stub.wait_for_lines(50, timeout=10)  # well before batch_wait

        sizes = [r.decoded_size for r in stub.requests]
        assert all(size <= 1000 for size in sizes)
        assert 5 == len(sizes)
        assert [f"{i:03d} {'x' * 96}" for i in range(50)] == stub.lines()

    def test_batches_respect_time(self, stub, make_handler, log):
        """Records below batch_size go out together once the first is batch_wait seconds old."""
        handler = make_handler(stub.url, batch_wait=0.3)
        log.addHandler(handler)
        start = time.monotonic()
        for i in range(5):
            log.info("t%d", i)

        assert stub.wait_for_lines(5, timeout=10)  # without flush()

        assert time.monotonic() - start >= 0.3
        assert [5] == [len(r.entries) for r in stub.requests]

    # -- failures ------------------------------------------------------------------------------

    def test_loki_down_then_up_loses_nothing_within_the_queue_bound(
        self, stub, make_handler, log
    ):
        """Lines logged while Loki is unreachable arrive, in order, once it is back."""
        stub.stop()
        handler = make_handler(stub.url, queue_size=500, batch_size=2000, max_retries=10_000)
        log.addHandler(handler)
        for i in range(300):
            log.info("line %03d", i)
        assert wait_until(lambda: handler.retried >= 3, 10.0)

        stub.start()

        assert handler.flush(timeout=10)
        assert [f"line {i:03d}" for i in range(300)] == stub.lines()
        assert (300, 0, 0) == (handler.sent, handler.dropped, handler.failed)

    def test_429_and_5xx_are_retried(self, stub, make_handler, log):
        """429 then 503 then success: the batch is sent again and arrives exactly once."""
        stub.script(429, (503, {"Retry-After": "0"}))
        handler = make_handler(stub.url)
        log.addHandler(handler)
        for i in range(3):
            log.info("r%d", i)

        assert handler.flush()

        assert [429, 503, 204] == stub.statuses()
        assert ["r0", "r1", "r2"] == stub.lines()
        assert (2, 3, 0) == (handler.retried, handler.sent, handler.failed)

    def test_400_is_not_retried_counted_and_reported_once(self, stub, make_handler, log, capsys):
        """A 4xx other than 429 drops the batch without retry, counts it, and warns only once."""
        stub.script(400, 400)
        handler = make_handler(stub.url)
        log.addHandler(handler)
        for message in ("a", "b", "c"):
            log.info(message)
            assert handler.flush()

        assert [400, 400, 204] == stub.statuses()
        assert (2, 0, 1) == (handler.failed, handler.retried, handler.sent)
        assert 1 == capsys.readouterr().err.count("HTTP 400")

    def test_gives_up_after_max_retries(self, stub, make_handler, log):
        """A batch that keeps failing with 5xx is counted as failed after max_retries retries."""
        stub.script(500, 500, 500)
        handler = make_handler(stub.url, max_retries=2)
        log.addHandler(handler)
        log.info("x")
        log.info("y")

        assert handler.flush()

        assert [500, 500, 500] == stub.statuses()
        assert (2, 2, 0) == (handler.failed, handler.retried, handler.sent)

    def test_slow_loki_does_not_block_the_caller(self, stub, make_handler, log):
        """
        While Loki holds a request, 1000 log.info() calls return within 250 ms in total.

        A caller waiting on the network would not return before the stall is released (the
        bound is about 25 times the unloaded time, so a busy CI machine does not flake it).
        """
        stub.stall()
        handler = make_handler(stub.url, timeout=30, batch_wait=0.01)
        log.addHandler(handler)
        log.info("first")
        assert stub.wait_for_in_flight(1)

        try:
            start = time.perf_counter()
            for i in range(1000):
                log.info("during stall %d", i)
            elapsed = time.perf_counter() - start

            assert [] == stub.statuses()  # Loki has not answered yet
            assert elapsed < 0.25
        finally:
            stub.release()
        assert handler.flush(timeout=10)
        assert 1001 == len(stub.lines())

    def test_dead_loki_does_not_block_the_caller(self, make_handler, log):
        """With nothing listening, 1000 log.info() calls take under 250 ms; close() is bounded."""
        handler = make_handler(f"http://127.0.0.1:{free_port()}", flush_timeout=0.3)
        log.addHandler(handler)

        start = time.perf_counter()
        for i in range(1000):
            log.info("nobody listens %d", i)
        elapsed = time.perf_counter() - start
        handler.close()

        assert elapsed < 0.25
        assert 0 == handler.sent
        assert 1000 == handler.dropped + handler.failed

    def test_queue_overflow_is_dropped_and_counted(self, stub, make_handler, log):
        """Beyond queue_size, records are dropped, counted on the handler and in obslog.stats()."""
        stub.stall()
        handler = make_handler(stub.url, queue_size=10, timeout=30, batch_wait=0.01)
        log.addHandler(handler)
        log.info("in flight")
        assert stub.wait_for_in_flight(1)
        before = obslog.stats().get("loki_dropped", 0)

        try:
            for i in range(30):
                log.info("queued %d", i)

            assert (20, 10) == (handler.dropped, handler.pending)
            assert 20 == obslog.stats().get("loki_dropped", 0) - before
        finally:
            stub.release()
        assert handler.flush(timeout=10)
        assert ["in flight"] + [f"queued {i}" for i in range(10)] == stub.lines()

    def test_never_logs_through_logging(self, stub, make_handler, caplog):
        """Delivery problems go to counters and stderr, never into logging (no feedback loop)."""
        stub.script(400, 500)
        handler = make_handler(stub.url)
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)
        try:
            logging.getLogger("app").info("one")
            assert handler.flush()
            logging.getLogger("app").info("two")
            assert handler.flush()
        finally:
            root.removeHandler(handler)

        assert ["two"] == stub.lines()
        assert ["app", "app"] == [r.name for r in caplog.records]

    # -- life cycle ----------------------------------------------------------------------------

    def test_close_sends_buffered_lines_and_stops_the_worker(self, stub, make_handler, log):
        """close() delivers what is buffered, stops the thread; later records count as dropped."""
        handler = make_handler(stub.url, batch_wait=30)
        log.addHandler(handler)
        log.info("buffered")

        handler.close()
        log.info("after close")

        assert ["buffered"] == stub.lines()
        assert 1 == handler.dropped
        assert not any(t.name == "obslog-loki-push" and t.is_alive() for t in _worker_threads())

    def test_flush_times_out_when_loki_stays_down(self, make_handler, log):
        """flush() returns False after its timeout instead of waiting for an absent Loki."""
        handler = make_handler(f"http://127.0.0.1:{free_port()}", flush_timeout=0.2)
        log.addHandler(handler)
        log.info("lost")

        assert handler.flush(timeout=0.2) is False

    def test_process_exit_flushes(self, stub):
        """A process that logs and exits without close() still delivers its lines."""
        result = run_python(
            """
            import logging, sys
            from obslog.loki._handler import LokiHandler
            handler = LokiHandler(sys.argv[1], {"service": "shop"}, batch_wait=60)
            handler.setFormatter(logging.Formatter("%(message)s"))
            log = logging.getLogger("shop")
            log.addHandler(handler)
            log.setLevel(logging.INFO)
            for i in range(5):
                log.info("exit %d", i)
            """,
            stub.url,
        )

        assert (0, "") == (result.returncode, result.stderr)
        assert [f"exit {i}" for i in range(5)] == stub.lines()

    @pytest.mark.parametrize(
        ("previous", "returncode"), [("app", 7), ("default", -signal.SIGTERM)]
    )
    def test_sigterm_flushes_then_chains(self, stub, previous, returncode):
        """SIGTERM flushes, then runs the application's own handler (or the default action)."""
        proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(SIGTERM_SCRIPT), stub.url, previous],
            env=_child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert "ready\n" == proc.stdout.readline()
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
            proc.wait()

        assert returncode == proc.returncode, err
        assert ("app handler ran\n" if previous == "app" else "") == out, err
        assert [f"before sigterm {i}" for i in range(5)] == stub.lines(), err

    def test_sigterm_handler_chains_in_process(self, stub, make_handler, log):
        """The installed SIGTERM handler flushes, then calls the one that was there before."""
        calls = []
        original = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(signum))
        try:
            handler = make_handler(stub.url, batch_wait=30, flush_on_sigterm=True)
            log.addHandler(handler)
            log.info("pending")
            os.kill(os.getpid(), signal.SIGTERM)
            wait_until(lambda: calls, timeout=10)
            handler.close()
        finally:
            signal.signal(signal.SIGTERM, original)

        assert [signal.SIGTERM] == calls
        assert ["pending"] == stub.lines()

    def test_sigterm_while_printing_flushes_and_exits_cleanly(self, stub):
        """SIGTERM during a print loop: flushed, then the app's sys.exit, no reentrant write."""
        proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(PRINTING_SCRIPT), stub.url],
            env=_child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            assert b"ready\n" == proc.stdout.readline()
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
            proc.wait()

        assert (0, b"") == (proc.returncode, err)
        assert [f"line {i}" for i in range(5)] == stub.lines()

    def test_no_signal_handler_by_default(self, make_handler):
        """A LokiHandler leaves SIGTERM alone unless flush_on_sigterm=True is given."""
        before = signal.getsignal(signal.SIGTERM)
        LokiHandler("http://127.0.0.1:1", LABELS).close()
        make_handler("http://127.0.0.1:1", flush_on_sigterm=False)

        assert before is signal.getsignal(signal.SIGTERM)

    def test_close_restores_the_previous_sigterm_handler(self, make_handler):
        """Closing the last handler that asked for the SIGTERM flush puts the old handler back."""
        original = signal.getsignal(signal.SIGTERM)

        def app_handler(signum, frame):
            """The application's own handler."""

        signal.signal(signal.SIGTERM, app_handler)
        try:
            first = make_handler("http://127.0.0.1:1", flush_on_sigterm=True)
            second = make_handler("http://127.0.0.1:1", flush_on_sigterm=True)
            installed = signal.getsignal(signal.SIGTERM)
            first.close()
            still = signal.getsignal(signal.SIGTERM)
            second.close()
            restored = signal.getsignal(signal.SIGTERM)
        finally:
            signal.signal(signal.SIGTERM, original)

        assert installed is not app_handler
        assert installed == still
        assert app_handler is restored

    def test_close_keeps_a_handler_installed_after_ours(self, make_handler):
        """If the application replaced our SIGTERM handler, close() leaves theirs in place."""
        original = signal.getsignal(signal.SIGTERM)

        def later(signum, frame):
            """Installed by the application after the LokiHandler."""

        try:
            handler = make_handler("http://127.0.0.1:1", flush_on_sigterm=True)
            signal.signal(signal.SIGTERM, later)
            handler.close()
            after = signal.getsignal(signal.SIGTERM)
        finally:
            signal.signal(signal.SIGTERM, original)

        assert later is after

    def test_sigterm_handler_is_not_installed_outside_the_main_thread(self, make_handler):
        """Built in another thread, the handler leaves the SIGTERM disposition alone."""
        before = signal.getsignal(signal.SIGTERM)
        thread = threading.Thread(
            target=make_handler, args=("http://127.0.0.1:1",), kwargs={"flush_on_sigterm": True}
        )
        thread.start()
        thread.join()

        assert before is signal.getsignal(signal.SIGTERM)

    def test_forked_child_sends_its_own_lines(self, stub):
        """A forked child starts empty, gets its own worker on first emit and sends its lines."""
        result = run_python(FORK_SCRIPT, stub.url)

        assert 0 == result.returncode, result.stdout + result.stderr
        by_message = {}
        for line in stub.lines():
            pid, message = line.split(" ", 1)
            by_message.setdefault(message, []).append(int(pid))
        assert {"parent before fork", "child line", "parent after fork"} == set(by_message)
        assert all(1 == len(pids) for pids in by_message.values())  # nothing sent twice
        parent = by_message["parent before fork"][0]
        assert parent == by_message["parent after fork"][0]
        assert parent != by_message["child line"][0]

    # -- configuration -------------------------------------------------------------------------

    def test_dict_config_builds_the_handler(self, stub, log):
        """logging.config.dictConfig builds it from "class": "obslog.loki.LokiHandler"."""
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "formatters": {"plain": {"format": "%(levelname)s %(message)s"}},
                "handlers": {
                    "loki": {
                        "class": "obslog.loki.LokiHandler",
                        "level": "INFO",
                        "formatter": "plain",
                        "url": stub.url,
                        "labels": {"service": "shop", "env": "test"},
                        "tenant_id": "team-a",
                        "batch_size": 65536,
                        "batch_wait": 0.05,
                        "queue_size": 100,
                        "timeout": 2,
                        "max_retries": 3,
                        "flush_on_sigterm": False,
                    }
                },
                "loggers": {log.name: {"handlers": ["loki"], "level": "DEBUG"}},
            }
        )
        [handler] = log.handlers
        try:
            log.debug("filtered by the handler level")
            log.info("configured")
            assert handler.flush()
        finally:
            handler.close()

        assert isinstance(handler, LokiHandler)
        assert ["INFO configured"] == stub.lines()
        assert "team-a" == stub.requests[0].headers["x-scope-orgid"]

    @pytest.mark.parametrize(
        "url",
        [
            "",
            "loki:3100",
            "ftp://loki/x",
            "http://",
            "http://loki:99999/",
            "http://u:secret@loki:99999/",
            "http:///push",
            None,
        ],
    )
    def test_bad_url_is_a_clear_error_at_construction(self, url):
        """A URL that is not http(s)://host[:port] raises ValueError naming the expected form."""
        with pytest.raises(ValueError, match="http://loki:3100/loki/api/v1/push") as info:
            LokiHandler(url, LABELS, flush_on_sigterm=False)

        assert "secret" not in str(info.value)

    def test_url_without_path_gets_the_push_path(self, stub, make_handler, log):
        """A base URL such as http://host:port is completed with /loki/api/v1/push."""
        handler = make_handler(f"http://127.0.0.1:{stub.port}")
        log.addHandler(handler)
        log.info("to base url")

        assert handler.flush()
        assert ["to base url"] == stub.lines()

    @pytest.mark.parametrize(
        ("kwargs", "userinfo", "expected"),
        [
            ({"bearer_token": "t0k"}, "", "Bearer t0k"),
            ({"username": "u", "password": "p"}, "", "Basic " + base64.b64encode(b"u:p").decode()),
            ({}, "u:p@", "Basic " + base64.b64encode(b"u:p").decode()),
            ({}, "", None),
        ],
    )
    def test_authentication_headers(self, stub, make_handler, log, kwargs, userinfo, expected):
        """bearer_token, username/password and user:password@ in the URL set Authorization."""
        handler = make_handler(f"http://{userinfo}127.0.0.1:{stub.port}/loki/api/v1/push", **kwargs)
        log.addHandler(handler)
        log.info("auth")

        assert handler.flush()
        assert expected == stub.requests[0].headers.get("authorization")
        assert "u:p" not in repr(handler)

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"bearer_token": "t", "username": "u", "password": "p"},
            {"password": "p"},
            {"tenant_id": ""},
        ],
    )
    def test_conflicting_auth_options_raise(self, kwargs):
        """Mutually exclusive or incomplete authentication options raise TypeError."""
        with pytest.raises(TypeError):
            LokiHandler("http://127.0.0.1:1", LABELS, flush_on_sigterm=False, **kwargs)

    @pytest.mark.parametrize(
        ("name", "value"),
        [("batch_size", 0), ("batch_wait", -1), ("queue_size", 0), ("timeout", 0), ("backoff", 0)],
    )
    def test_out_of_range_numbers_raise(self, name, value):
        """Sizes, waits and timeouts must be positive."""
        with pytest.raises(ValueError, match=name):
            LokiHandler("http://127.0.0.1:1", LABELS, flush_on_sigterm=False, **{name: value})


class TestCanonicalStream:
    """Canonical lines go to their own stream, obslog="<event>", and nothing else can."""

    @pytest.fixture(name="canonical_log")
    def _canonical_log(self):
        """obslog's canonical logger, with the levels and handlers restored afterwards."""
        logger = logging.getLogger(CONFIG.canonical_logger)
        level, propagate = logger.level, logger.propagate
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        yield logger
        logger.handlers.clear()
        logger.setLevel(level)
        logger.propagate = propagate

    def test_request_task_and_runtime_lines_carry_the_label(self, stub, canonical_log):
        """Scope and runtime lines get obslog=<event>; ordinary lines and other scopes get none."""
        from obslog.runtime import RuntimeLogger

        handler = LokiHandler(stub.url, LABELS, batch_wait=30)
        canonical_log.addHandler(handler)
        try:
            with obslog.scope("request"):
                canonical_log.info("inside the request")
            with obslog.scope("task"):
                pass
            with obslog.scope("job"):
                pass
            RuntimeLogger(logger=f"{CONFIG.canonical_logger}.runtime").log_once()
            assert handler.flush()
        finally:
            handler.close()

        streams = [
            (json.loads(e.line)["event"], e.labels.get("obslog")) for e in stub.entries()
        ]
        assert [
            ("inside the request", None),
            ("job", None),
            ("request", "request"),
            ("runtime", "runtime"),
            ("task", "task"),
        ] == sorted(streams, key=lambda s: (s[1] is not None, s[0]))
        assert all({"service", "env", "level"} <= set(e.labels) for e in stub.entries())

    def test_hostile_events_never_become_label_values(self, stub, make_handler, log):
        """10,000 distinct hostile events add no stream: the label takes only its three values."""
        handler = make_handler(stub.url, queue_size=20_000, batch_wait=30)
        log.addHandler(handler)
        hostile = [
            "request ",
            " request",
            "Request",
            "REQUEST",
            "request\n",
            "request|task",
            "request.*",
            "task\x00",
            "runtime\u200b",
            '"request"',
            '{"event":"request"}',
            "",
        ] + [f"event-{i}-{uuid.uuid4().hex}" for i in range(10_000 - 12)]
        assert 10_000 == len(set(hostile))
        for event in hostile:
            log.info(event)
        log.info("%s", "request")  # formatted by the app: not an obslog canonical line
        log.info({"event": "request"})  # a non-str message
        for event in ("request", "task", "runtime"):
            log.info(event)

        assert handler.flush(timeout=30)

        values = [e.labels.get("obslog") for e in stub.entries()]
        assert 10_000 + 5 == len(values)
        assert ["request", "task", "runtime"] == [v for v in values if v is not None]
        base = {**LABELS, "level": "info"}
        expected = [base] + [{**base, "obslog": v} for v in ("request", "task", "runtime")]
        label_sets = {tuple(sorted(e.labels.items())) for e in stub.entries()}
        assert {tuple(sorted(labels.items())) for labels in expected} == label_sets

    def test_canonical_stream_can_be_turned_off(self, stub, make_handler, log):
        """canonical_stream=False (for rules made with --no-canonical-stream) adds no label."""
        handler = make_handler(stub.url, canonical_stream=False)
        log.addHandler(handler)
        log.info("request")

        assert handler.flush()

        assert [None] == [e.labels.get("obslog") for e in stub.entries()]

    def test_obslog_label_is_reserved(self):
        """A static obslog label is refused while the handler sets it; allowed when it does not."""
        with pytest.raises(ValueError, match="canonical_stream=False"):
            LokiHandler("http://127.0.0.1:1", {"service": "shop", "obslog": "x"})
        LokiHandler(
            "http://127.0.0.1:1", {"service": "shop", "obslog": "x"}, canonical_stream=False
        ).close()


class TestModules:
    """The handler's modules: one concern each, the old import path kept."""

    def test_old_import_path(self):
        """obslog.loki._handler and obslog.loki.handler offer the same class as obslog.loki."""
        from obslog.loki import LokiHandler as public
        from obslog.loki import handler

        assert public is LokiHandler is handler.LokiHandler

    def test_modules_stay_small(self):
        """No module of the handler (or the package's entry points) exceeds 600 lines."""
        package = Path(obslog.__file__).resolve().parent / "loki"
        names = ("__init__", "_handler", "_hooks", "_obslog", "_stream", "_transport", "_validate")
        names += ("cli", "handler", "_rules")
        sizes = {name: len((package / f"{name}.py").read_text().splitlines()) for name in names}
        assert {} == {name: size for name, size in sizes.items() if size > 600}


class TestLokiStub:
    """tests/loki_stub.py, the stand-in for Loki's push endpoint."""

    def _post(self, stub, body: bytes, headers: dict[str, str], path: str = "/loki/api/v1/push"):
        conn = http.client.HTTPConnection("127.0.0.1", stub.port, timeout=5)
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def test_accepts_deflate_json_with_204(self, stub):
        """A deflate-encoded JSON push with structured metadata is decoded and answered 204."""
        payload = {"streams": [{"stream": {"a": "b"}, "values": [["1", "x", {"k": "v"}]]}]}
        body = zlib.compress(json.dumps(payload).encode())
        headers = {"Content-Type": "application/json", "Content-Encoding": "deflate"}

        assert (204, b"") == self._post(stub, body, headers)
        assert [({"a": "b"}, "1", "x", {"k": "v"})] == [
            (e.labels, e.timestamp, e.line, e.metadata) for e in stub.entries()
        ]

    @pytest.mark.parametrize(
        "payload",
        [
            {"streams": [{"stream": {"a": "b"}, "values": [[1, "x"]]}]},
            {"streams": [{"stream": {}, "values": [["1", "x"]]}]},
            {"streams": [{"stream": {"a": "b"}, "values": [["1", "x", {"k": 1}]]}]},
            {"entries": []},
        ],
    )
    def test_rejects_malformed_pushes_with_400(self, stub, payload):
        """Numeric timestamps, empty label sets, non-string metadata or no streams give 400."""
        status, _ = self._post(
            stub, json.dumps(payload).encode(), {"Content-Type": "application/json"}
        )

        assert 400 == status
        assert [] == stub.entries()

    def test_other_paths_are_404(self, stub):
        """Only the push path exists."""
        assert 404 == self._post(stub, b"{}", {"Content-Type": "application/json"}, "/push")[0]


def _worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "obslog-loki-push"]


SIGTERM_SCRIPT = """
    import logging, os, signal, sys, time
    from obslog.loki._handler import LokiHandler

    if sys.argv[2] == "app":
        def app_handler(signum, frame):
            # Not sys.stdout: the signal may arrive while print() holds the stream's lock.
            os.write(1, b"app handler ran\\n")
            os._exit(7)  # skips atexit: only the SIGTERM flush can have sent the lines
        signal.signal(signal.SIGTERM, app_handler)

    handler = LokiHandler(
        sys.argv[1], {"service": "shop"}, batch_wait=60, flush_timeout=10, flush_on_sigterm=True
    )
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("shop")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    for i in range(5):
        log.info("before sigterm %d", i)
    print("ready", flush=True)
    time.sleep(60)
"""

PRINTING_SCRIPT = """
    import logging, signal, sys
    from obslog.loki import LokiHandler

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    handler = LokiHandler(
        sys.argv[1], {"service": "shop"}, batch_wait=60, flush_timeout=10, flush_on_sigterm=True
    )
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("shop")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    for i in range(5):
        log.info("line %d", i)
    print("ready", flush=True)
    while True:
        print("x" * 1000, flush=True)
"""

FORK_SCRIPT = """
    import logging, os, sys, threading
    from obslog.loki._handler import LokiHandler

    def workers():
        return sum(t.name == "obslog-loki-push" for t in threading.enumerate())

    handler = LokiHandler(sys.argv[1], {"service": "shop"}, batch_wait=60, flush_timeout=10)
    handler.setFormatter(logging.Formatter("%(process)d %(message)s"))
    log = logging.getLogger("shop")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.info("parent before fork")  # still buffered at fork time

    pid = os.fork()
    if pid == 0:
        fresh = handler.pending == 0 and handler.sent == 0 and workers() == 0
        log.info("child line")
        started = workers() == 1
        delivered = handler.flush() and handler.sent == 1
        print(fresh, started, delivered)
        sys.exit(0 if fresh and started and delivered else 3)
    _, status = os.waitpid(pid, 0)
    log.info("parent after fork")
    sys.exit(os.waitstatus_to_exitcode(status))
"""
