"""Tests for obslog.metrics: listeners, bounded labels, scrapes, multiprocess, real Prometheus."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request

from pathlib import Path

import prometheus_client
import psutil
import pytest

from _lines import wait_until
from _require import require_binary
from _servers import free_port
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

import obslog

from obslog import _stats, metrics
from obslog._context import Scope


@pytest.fixture(name="installation")
def _installation():
    """obslog's metrics on a fresh registry, uninstalled afterwards."""
    installation = metrics.install(CollectorRegistry())
    yield installation
    metrics.uninstall()


def _samples(body: bytes) -> list:
    return [
        sample
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    ]


def _value(body: bytes, name: str, **labels: str) -> float | None:
    for sample in _samples(body):
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    return None


def _ended(method, route, status=200, *, kind="request", duration_ms=12.0, timers=None,
           outcome="ok") -> Scope:
    """A real Scope in the state the core leaves it in when it calls the end listeners."""
    scope = Scope(kind, fields={"method": method, "route": route} if kind == "request" else {})
    scope.status = status
    scope.duration_ms = duration_ms
    scope.outcome = outcome
    if timers:
        scope.timers.update(timers)
    return scope


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM *process*; SIGKILL it if it is still running after 15 s; close its stderr."""
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
    process.stderr.close()


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # loopback
        return response.read()


def _promtool_check(body: bytes) -> subprocess.CompletedProcess:
    promtool = require_binary("promtool")
    return subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=60, check=False
    )


class TestPackage:
    """Issue 12: obslog.metrics is a package of one concern per module, same public names."""

    def test_public_names_import_from_package(self):
        """Every public name of obslog.metrics imports from it and shows it as its module."""
        import importlib

        module = importlib.import_module("obslog.metrics")
        expected = {
            "DEFAULT_BUCKETS", "DEFAULT_TIMER_BUCKETS", "MetricsInstallation",
            "cleanup_dead_processes", "install", "installed", "mark_process_dead",
            "multiprocess_dir", "render_metrics", "uninstall",
        }
        assert expected == set(module.__all__)
        for name in module.__all__:
            value = getattr(module, name)
            if callable(value):
                assert "obslog.metrics" == value.__module__, name
        assert ("<unmatched>", "<other>", "<none>") == (
            module.UNMATCHED, module.OTHER, module.NONE
        )
        assert "5xx" == module._status_label(503)

    def test_modules_stay_small(self):
        """No module of the package is longer than about 600 lines."""
        import pathlib

        package = pathlib.Path(metrics.__file__).parent
        sizes = {path.name: len(path.read_text().splitlines()) for path in package.glob("*.py")}
        assert {name: n for name, n in sizes.items() if n > 600} == {}
        assert len(sizes) >= 6

    def test_close_removes_gc_callback(self):
        """An installation adds the gc callback at its first scrape; uninstall() removes it."""
        code = (
            "import gc; from obslog import metrics, runtime;"
            "n = lambda: gc.callbacks.count(runtime._gc_callback);"
            "seen = [n()]; i = metrics.install(); seen.append(n());"
            "metrics.render_metrics(); seen.append(n());"
            "metrics.uninstall(); seen.append(n()); print(seen)"
        )
        env = {k: v for k, v in os.environ.items() if k.lower() != "prometheus_multiproc_dir"}
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True,
            env=env,
        )
        assert "[0, 0, 1, 0]" == result.stdout.strip()


class TestInstall:
    def test_nothing_registered_at_import(self):
        """Importing obslog.metrics subscribes no listener and registers no metric."""
        code = (
            "import obslog._context as c, prometheus_client as p, obslog.metrics as m;"
            "print(len(c._start_listeners), len(c._end_listeners), m.installed(),"
            " any(n.startswith('obslog_') for n in p.REGISTRY._names_to_collectors))"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
        )

        assert "0 0 None False" == result.stdout.strip()

    def test_install_once(self, installation):
        """A second install() returns the same installation; another registry is refused."""
        assert installation is metrics.install()
        assert installation is metrics.installed()
        with pytest.raises(ValueError, match="another registry"):
            metrics.install(CollectorRegistry())

    def test_uninstall_unsubscribes(self):
        """After uninstall() scopes are no longer recorded and the metrics are unregistered."""
        registry = CollectorRegistry()
        installation = metrics.install(registry)
        metrics.uninstall()
        with obslog.request_scope("GET", "/orders"):
            pass

        assert None is metrics.installed()
        assert None is registry.get_sample_value("obslog_canonical_lines_total",
                                                 {"kind": "request", "outcome": "ok"})
        assert [] == list(installation.request_duration.collect()[0].samples)

    def test_default_registry_keeps_standard_collectors(self):
        """Installing into prometheus_client.REGISTRY does not add its standard collectors twice."""
        installation = metrics.install(prometheus_client.REGISTRY)
        try:
            body, _ = metrics.render_metrics()
        finally:
            metrics.uninstall()

        assert installation.registry is prometheus_client.REGISTRY
        assert 1 == body.count(b"# TYPE process_cpu_seconds_total counter")
        assert 1 == body.count(b"# TYPE obslog_requests_active gauge")
        assert b"obslog_requests_active" not in metrics.render_metrics()[0]


class TestRequestMetrics:
    def test_request_scope_is_recorded(self, installation):
        """A real request scope feeds the duration histogram, timers and canonical lines."""
        with obslog.request_scope("get", "/orders/{id}") as req:
            with obslog.timed("db_query"):
                pass
            with obslog.timed("db_query"):
                pass
            req.status = 201
        body, _ = metrics.render_metrics()

        assert 1.0 == _value(body, "obslog_request_duration_seconds_count",
                             method="GET", route="/orders/{id}", status_class="2xx")
        assert 1.0 == _value(body, "obslog_timer_duration_seconds_count", timer="db_query")
        assert 2.0 == _value(body, "obslog_timer_calls_total", timer="db_query")
        assert 1.0 == _value(body, "obslog_canonical_lines_total", kind="request", outcome="ok")

    def test_errors_and_status_classes(self, installation):
        """A raising scope counts as outcome error; a 503 lands in the 5xx class."""
        with pytest.raises(KeyError), obslog.request_scope("POST", "/checkout"):
            raise KeyError("cart")
        with obslog.request_scope("POST", "/checkout") as req:
            req.status = 503
        body, _ = metrics.render_metrics()

        assert 2.0 == _value(body, "obslog_canonical_lines_total", kind="request",
                             outcome="error")
        assert 1.0 == _value(body, "obslog_request_duration_seconds_count",
                             route="/checkout", status_class="5xx")
        assert 1.0 == _value(body, "obslog_request_duration_seconds_count",
                             route="/checkout", status_class="<none>")

    def test_other_kinds(self, installation):
        """A task scope is a canonical line of kind task, not a request."""
        with obslog.scope("task", task_name="send_mail"):
            pass
        body, _ = metrics.render_metrics()

        assert 1.0 == _value(body, "obslog_canonical_lines_total", kind="task", outcome="ok")
        assert None is _value(body, "obslog_request_duration_seconds_count")

    def test_active_requests(self):
        """The gauge counts request scopes in flight; one begun before install() is ignored."""
        early = obslog.request_scope("GET", "/search")
        early.__enter__()
        metrics.install(CollectorRegistry())
        try:
            with obslog.request_scope("GET", "/search"):
                inside = _value(metrics.render_metrics()[0], "obslog_requests_active")
            after = _value(metrics.render_metrics()[0], "obslog_requests_active")
            early.__exit__(None, None, None)
            orphan = _value(metrics.render_metrics()[0], "obslog_requests_active")
        finally:
            metrics.uninstall()

        assert 1.0 == inside
        assert 0.0 == after
        assert 0.0 == orphan

    def test_bounded_labels_with_many_raw_paths(self):
        """100k distinct raw paths give at most max_routes route labels plus one bucket."""
        registry = CollectorRegistry()
        installation = metrics.install(registry, max_routes=200)
        try:
            for i in range(100_000):
                installation.on_scope_end(_ended("GET", f"/orders/{i}"))
            installation.on_scope_end(_ended("BREW", None))
            installation.on_scope_end(_ended("GET", "x" * 10_000))
            body, _ = metrics.render_metrics()
        finally:
            metrics.uninstall()
        routes = {
            s.labels["route"] for s in _samples(body)
            if s.name == "obslog_request_duration_seconds_count"
        }

        assert 200 == installation.route_count
        assert 202 == len(routes)
        assert {"<other>", "<unmatched>"} <= routes
        assert 100_000 - 200 + 1 == _value(body, "obslog_request_duration_seconds_count",
                                           route="<other>")
        assert 1.0 == _value(body, "obslog_request_duration_seconds_count", method="<other>",
                             route="<unmatched>")
        assert len(installation._request_children) <= 201

    def test_bounded_timer_names(self):
        """Timer names past max_timers share the ``<other>`` label."""
        installation = metrics.install(CollectorRegistry(), max_timers=3)
        try:
            timers = {f"t{i}": [1, 1.0, 1.0] for i in range(10)}
            installation.on_scope_end(_ended("GET", "/", timers=timers))
            body, _ = metrics.render_metrics()
        finally:
            metrics.uninstall()
        names = {s.labels["timer"] for s in _samples(body) if s.name == "obslog_timer_calls_total"}

        assert {"t0", "t1", "t2", "<other>"} == names
        assert 7.0 == _value(body, "obslog_timer_calls_total", timer="<other>")


class TestStatsAndRuntime:
    def test_stats_read_at_scrape_time(self, installation):
        """obslog.stats() counters, dropped and failed records are read at scrape time."""
        before = metrics.render_metrics()[0]
        _stats.incr("dropped", 2)
        _stats.incr("loki_dropped", 3)
        _stats.incr("render_errors")
        after = metrics.render_metrics()[0]

        assert 5.0 == (_value(after, "obslog_log_records_dropped_total")
                       - _value(before, "obslog_log_records_dropped_total"))
        assert 1.0 == (_value(after, "obslog_log_records_failed_total")
                       - _value(before, "obslog_log_records_failed_total"))
        assert obslog.stats()["loki_dropped"] == _value(after, "obslog_stats_total",
                                                        counter="loki_dropped")

    def test_runtime_and_standard_collectors(self, installation):
        """Per-pid runtime series sit beside prometheus_client's process, gc and platform ones."""
        body, _ = metrics.render_metrics()
        pid = str(os.getpid())

        assert _value(body, "obslog_process_resident_memory_bytes", pid=pid) > 0
        assert _value(body, "obslog_process_python_threads", pid=pid) >= 1
        assert None is not _value(body, "obslog_process_gc_collections", pid=pid,
                                  generation="2")
        assert _value(body, "process_cpu_seconds_total") > 0
        assert None is not _value(body, "python_gc_collections_total", generation="0")
        assert 1.0 == _value(body, "python_info")


class TestRenderMetrics:
    def test_content_negotiation(self, installation):
        """Prometheus text by default, OpenMetrics when the Accept header asks for it."""
        body, content_type = metrics.render_metrics()
        om_body, om_type = metrics.render_metrics("application/openmetrics-text; version=1.0.0")

        assert content_type.startswith("text/plain; version=0.0.4")
        assert om_type.startswith("application/openmetrics-text")
        assert om_body.endswith(b"# EOF\n")
        assert not body.endswith(b"# EOF\n")

    def test_promtool_accepts_the_output(self, installation):
        """The exposition (with requests, timers and odd labels) passes promtool check metrics."""
        with obslog.request_scope("GET", '/a"b\\c/{id}') as req, obslog.timed("db_query"):
            req.status = 200
        installation.on_scope_end(_ended(None, None, None, outcome="cancelled"))
        body, _ = metrics.render_metrics()
        result = _promtool_check(body)

        assert 0 == result.returncode, result.stdout + result.stderr

    def test_scrape_cost_does_not_grow_with_traffic(self):
        """
        A scrape after 100k requests costs within 2x of one after 0 requests.

        Two installations with the same label sets side by side: one has seen no request (its
        label sets are declared, with no observation), the other 100k.  What is compared is
        traffic, not the number of series, which the label caps bound separately.  Their scrapes
        are interleaved and the best of each kept, so load on the machine hits both alike.
        """
        idle = metrics.MetricsInstallation(CollectorRegistry())
        busy = metrics.MetricsInstallation(CollectorRegistry())
        routes = ["/orders/{id}", "/orders", "/search", "/checkout"]
        statuses = [200, 201, 404, 500]
        combos = [(m, r, s) for m in ("GET", "POST") for r in routes for s in statuses]
        timers = {"db_query": [2, 3.0, 2.0], "cache_get": [1, 0.2, 0.2],
                  "remote_call": [1, 40.0, 40.0]}
        for method, route, status in combos:
            idle.request_duration.labels(method, route, metrics._status_label(status))
        for timer in timers:
            idle.timer_duration.labels(timer)
            idle.timer_calls.labels(timer)
        for outcome in ("ok", "error"):
            idle.canonical_lines.labels("request", outcome)
        scopes = [
            _ended(method, route, status, duration_ms=float(i * 7 % 250), timers=timers,
                   outcome="error" if status >= 500 else "ok")
            for i, (method, route, status) in enumerate(combos)
        ]
        for _ in range(100_000 // len(scopes) + 1):
            for scope in scopes:
                busy.on_scope_end(scope)
        idle_body, _ = metrics.render_metrics(registry=idle.registry)
        busy_body, _ = metrics.render_metrics(registry=busy.registry)

        times: dict[str, list[float]] = {"idle": [], "busy": []}
        for _ in range(40):
            for name, installation in (("idle", idle), ("busy", busy)):
                start = time.perf_counter()
                metrics.render_metrics(registry=installation.registry)
                times[name].append(time.perf_counter() - start)
        at_zero, at_100k = min(times["idle"]), min(times["busy"])

        assert 0 == _request_count(idle_body)
        assert _request_count(busy_body) >= 100_000
        assert len(idle_body.splitlines()) == len(busy_body.splitlines())
        assert at_100k <= 2 * at_zero, (at_zero, at_100k)


# -- a real Prometheus server ---------------------------------------------------------------------
class _MetricsHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # http.server's naming
        body, content_type = metrics.render_metrics(self.headers.get("Accept"))
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(name="metrics_server")
def _metrics_server(installation):
    """A stdlib HTTP server on a free loopback port serving render_metrics()."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _MetricsHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture(name="prometheus")
def _prometheus(tmp_path, metrics_server):
    """A real Prometheus server on loopback scraping the metrics server every second."""
    binary = require_binary("prometheus")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(textwrap.dedent(f"""
        global:
          scrape_interval: 1s
          scrape_timeout: 1s
        scrape_configs:
          - job_name: obslog
            static_configs:
              - targets: ["127.0.0.1:{metrics_server}"]
    """))
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    yield f"http://127.0.0.1:{port}"
    _stop(process)


def _poll_json(url: str, predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            last = json.loads(_get(url, timeout=2))
            if predicate(last):
                return last
        time.sleep(0.2)
    return last


@pytest.mark.service
class TestPrometheusScrape:
    def test_real_prometheus_scrapes_the_target(self, prometheus, installation):
        """A real Prometheus reports the target up and stores obslog's series."""
        with obslog.request_scope("GET", "/orders/{id}") as req:
            req.status = 200

        def target_up(answer) -> bool:
            targets = answer["data"]["activeTargets"]
            return bool(targets) and targets[0]["health"] == "up"

        targets = _poll_json(f"{prometheus}/api/v1/targets", target_up)
        query = _poll_json(
            f"{prometheus}/api/v1/query?query=obslog_request_duration_seconds_count",
            lambda answer: bool(answer["data"]["result"]),
        )

        assert "up" == targets["data"]["activeTargets"][0]["health"], targets
        assert "" == targets["data"]["activeTargets"][0]["lastError"]
        assert "/orders/{id}" == query["data"]["result"][0]["metric"]["route"]


# -- multiprocess mode with real gunicorn workers -------------------------------------------------
APP = '''
import os
from urllib.parse import parse_qs

import obslog
from obslog import metrics

metrics.install(publish_interval=0.2)


def app(environ, start_response):
    if environ["PATH_INFO"] == "/metrics":
        body, content_type = metrics.render_metrics(environ.get("HTTP_ACCEPT"))
        start_response("200 OK", [("Content-Type", content_type)])
        return [body]
    route = parse_qs(environ.get("QUERY_STRING", "")).get("route", ["/orders/{id}"])[0]
    with obslog.request_scope(environ["REQUEST_METHOD"], route) as req:
        with obslog.timed("db_query"):
            pass
        req.status = 200
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]
'''

WORKERS = 3
RUNTIME_SERIES = (
    "obslog_process_cpu_seconds",
    "obslog_process_resident_memory_bytes",
    "obslog_process_threads",
    "obslog_process_python_threads",
    "obslog_process_gc_collections",
)


@pytest.fixture(name="gunicorn", scope="module")
def _gunicorn(tmp_path_factory):
    """Real gunicorn (preloaded app, 3 sync workers) with PROMETHEUS_MULTIPROC_DIR."""
    root = tmp_path_factory.mktemp("gunicorn")
    (root / "obslog_test_app.py").write_text(APP)
    multiproc = root / "multiproc"
    multiproc.mkdir()
    port = free_port()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(multiproc), "PYTHONPATH": str(root)}
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--preload", "-w", str(WORKERS),
         "-b", f"127.0.0.1:{port}", "--log-level", "warning", "obslog_test_app:app"],
        env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            _get(f"{base}/metrics", timeout=2)
            break
        time.sleep(0.1)
    yield base, process, multiproc
    _stop(process)


def _worker_pids(process: subprocess.Popen) -> set[int]:
    return {child.pid for child in psutil.Process(process.pid).children()}


def _series_pids(body: bytes, name: str) -> set[int]:
    return {int(s.labels["pid"]) for s in _samples(body) if s.name == name}


def _wait_scrape(base: str, predicate, timeout: float = 20.0) -> bytes:
    deadline = time.monotonic() + timeout
    body = _get(f"{base}/metrics")
    while not predicate(body) and time.monotonic() < deadline:
        time.sleep(0.1)
        body = _get(f"{base}/metrics")
    return body


def _request_count(body: bytes) -> float:
    return sum(
        s.value for s in _samples(body) if s.name == "obslog_request_duration_seconds_count"
    )


class TestMultiprocess:
    def test_each_worker_visible(self, gunicorn):
        """Every live worker's CPU, memory, threads and gc figures are their own pid series."""
        base, process, _ = gunicorn
        for _ in range(30):
            _get(f"{base}/work")
        assert _wait_for_workers(process)
        workers = _worker_pids(process)
        body = _wait_scrape(
            base,
            lambda b: all(workers <= _series_pids(b, name) for name in RUNTIME_SERIES),
        )

        for name in RUNTIME_SERIES:
            assert workers <= _series_pids(body, name), name
        assert _request_count(body) >= 30
        assert 0.0 == _value(body, "obslog_requests_active")
        assert 1.0 == _value(body, "python_info")

    def test_promtool_accepts_aggregated_output(self, gunicorn):
        """The aggregated multiprocess exposition passes promtool check metrics."""
        base, _, _ = gunicorn
        _get(f"{base}/work?route=/search")
        result = _promtool_check(_get(f"{base}/metrics"))

        assert 0 == result.returncode, result.stdout + result.stderr

    def test_dead_worker_series_cleaned_up(self, gunicorn):
        """A killed worker's series vanish, its counts stay, and its files are compacted."""
        base, process, multiproc = gunicorn
        assert _wait_for_workers(process)
        for _ in range(20):
            _get(f"{base}/work?route=/checkout")
        workers = _worker_pids(process)
        body = _wait_scrape(
            base, lambda b: workers <= _series_pids(b, "obslog_process_resident_memory_bytes")
        )
        before = _request_count(body)
        victim = min(workers)

        os.kill(victim, signal.SIGKILL)
        assert wait_until(
            lambda: victim not in _worker_pids(process) and _wait_for_workers(process, 0.1),
            20.0,
            0.05,
        )
        survivors = _worker_pids(process)
        body = _wait_scrape(
            base,
            lambda b: survivors <= _series_pids(b, "obslog_process_resident_memory_bytes")
            and victim not in _series_pids(b, "obslog_process_resident_memory_bytes"),
        )
        files = sorted(os.listdir(multiproc))

        for name in RUNTIME_SERIES:
            assert victim not in _series_pids(body, name), name
        assert survivors <= _series_pids(body, "obslog_process_resident_memory_bytes")
        assert _request_count(body) >= before
        assert [] == [f for f in files if f.endswith(f"_{victim}.db")]
        assert "histogram_archive.db" in files
        assert "counter_archive.db" in files


def _wait_for_workers(process: subprocess.Popen, timeout: float = 20.0) -> bool:
    return wait_until(lambda: len(_worker_pids(process)) == WORKERS, timeout, 0.05)


class TestCleanupDeadProcesses:
    def test_archives_counters_of_dead_pids(self, tmp_path: Path):
        """Counters of a dead pid merge into the archive; its live gauges are removed."""
        from prometheus_client.mmap_dict import MmapedDict, mmap_key
        from prometheus_client.multiprocess import MultiProcessCollector

        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        key = mmap_key("jobs", "jobs_total", ["queue"], ["mail"], "Jobs.")
        gauge_key = mmap_key("temp", "temp", [], [], "Temp.")
        for name, k, value in (
            (f"counter_{dead.pid}.db", key, 3.0),
            ("counter_archive.db", key, 4.0),
            (f"counter_{os.getpid()}.db", key, 5.0),
            (f"gauge_liveall_{dead.pid}.db", gauge_key, 1.0),
        ):
            mmap = MmapedDict(str(tmp_path / name))
            mmap.write_value(k, value, 0.0)
            mmap.close()

        cleaned = metrics.cleanup_dead_processes(str(tmp_path))
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(tmp_path))

        assert [dead.pid] == cleaned
        assert 12.0 == registry.get_sample_value("jobs_total", {"queue": "mail"})
        assert None is registry.get_sample_value("temp", {"pid": str(dead.pid)})
        assert sorted(["counter_archive.db", f"counter_{os.getpid()}.db", ".obslog.lock"]) == (
            sorted(os.listdir(tmp_path))
        )
        assert [] == metrics.cleanup_dead_processes(str(tmp_path))

    def test_mark_process_dead_drops_live_gauges(self, tmp_path: Path):
        """mark_process_dead removes a worker's live gauge files at once (child_exit hook)."""
        from prometheus_client.mmap_dict import MmapedDict, mmap_key

        mmap = MmapedDict(str(tmp_path / "gauge_livesum_4242.db"))
        mmap.write_value(mmap_key("a", "a", [], [], "A."), 1.0, 0.0)
        mmap.close()
        metrics.mark_process_dead(4242, str(tmp_path))

        assert [] == os.listdir(tmp_path)
