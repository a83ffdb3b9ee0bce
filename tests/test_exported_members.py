"""
The public API: ``obslog.__all__`` names exactly the public members, every public module declares
its ``__all__``, every import path of obslog 0.1 still works, and typing information ships.
"""

from __future__ import annotations

import importlib
import importlib.resources
import inspect
import pkgutil
import subprocess
import sys
import types

from pathlib import Path

import pytest

import obslog


CORE_MODULES = [
    "obslog._canonical",
    "obslog._config",
    "obslog._configure",
    "obslog._context",
    "obslog._ids",
    "obslog._json",
    "obslog._render",
    "obslog._stats",
    "obslog._stdlib",
    "obslog._timers",
    "obslog._validation",
    "obslog.processors",
]


class TestExportedMembers:
    def test_all_matches_public_names(self):
        """__all__ lists exactly the public names obslog defines (modules and typing aside)."""
        public = {
            name
            for name, value in vars(obslog).items()
            if not name.startswith("_")
            and not isinstance(value, types.ModuleType)
            and (getattr(value, "__module__", "") or "").startswith("obslog")
        }
        assert sorted(public) == sorted(obslog.__all__)

    def test_all_sorted_and_unique(self):
        """__all__ is sorted and has no duplicates."""
        assert sorted(set(obslog.__all__)) == obslog.__all__

    def test_public_objects_show_public_module(self):
        """Classes and functions exported from private modules report ``obslog`` as their module."""
        for name in obslog.__all__:
            value = getattr(obslog, name)
            if inspect.isclass(value) or inspect.isfunction(value):
                assert "obslog" == value.__module__, name

    def test_every_export_documented(self):
        """Every exported class and function has a docstring."""
        for name in obslog.__all__:
            assert inspect.getdoc(getattr(obslog, name)), name

    def test_contract_names(self):
        """The names the rest of the project codes against exist."""
        for name in ("scope", "request_scope", "current_scope", "bind", "timed", "in_context",
                     "stats", "configure", "dict_config", "reset_defaults", "ContextFilter",
                     "JsonFormatter", "Scope"):
            assert name in obslog.__all__, name
        assert {"render_errors", "dropped", "listener_errors"} <= set(obslog.stats())

    def test_version(self):
        """obslog.__version__ is the installed distribution's version; other missing names raise."""
        from importlib.metadata import version

        assert version("obslog") == obslog.__version__
        with pytest.raises(AttributeError):
            obslog.no_such_name  # noqa: B018

    @pytest.mark.parametrize("module_name", CORE_MODULES)
    def test_core_modules_declare_all(self, module_name):
        """Every core module has an __all__ whose names all exist."""
        module = importlib.import_module(module_name)
        assert isinstance(module.__all__, list)
        for name in module.__all__:
            assert hasattr(module, name), f"{module_name}.{name}"


# Every public name of every public module of obslog 0.1 (``__all__`` at the 0.1 commit), plus the
# private-module names the 0.1 docs and code handed out (obslog._context, obslog.loki._rules).
OLD_API: dict[str, list[str]] = {
    "obslog": [
        "ConsoleFormatter", "ContextFilter", "JsonFormatter", "ObslogLogger", "RenderedLine",
        "Scope", "bind", "configure", "configure_structlog", "current_scope", "dict_config",
        "get_config", "in_context", "request_scope", "reset_defaults", "scope", "stats", "timed",
    ],
    "obslog._context": [
        "Scope", "bind", "capture", "current_scope", "in_context", "on_scope_end",
        "on_scope_start", "request_scope", "scope", "timed",
    ],
    "obslog.aiohttp": [
        "ActiveRequests", "active_requests", "middleware", "setup", "silence_access_logs",
    ],
    "obslog.asgi": ["ObslogMiddleware", "silence_access_logs"],
    "obslog.celery": [
        "HEADER_REQUEST_ID", "HEADER_SPAN_ID", "HEADER_TRACE_ID", "active_tasks",
        "enable_events", "install", "uninstall",
    ],
    "obslog.checks": [
        "ShutdownCheck", "async_postgres_check", "async_redis_check", "http_check",
        "postgres_check", "redis_check", "sqlalchemy_check", "tcp_check",
    ],
    "obslog.django": ["ObslogMiddleware", "silence_access_logs"],
    "obslog.flask": ["EXCEPTION_ENVIRON_KEY", "init_app", "silence_access_logs"],
    "obslog.health": [
        "CheckResult", "DEFAULT_BUDGET", "DEFAULT_TTL", "HealthEndpoints", "HealthServer",
        "Readiness", "ReadyReport", "Response", "add_aiohttp_routes", "make_aiohttp_handler",
        "make_asgi_app", "make_wsgi_app", "serve",
    ],
    "obslog.loki": ["LokiHandler"],
    "obslog.loki._rules": [
        "DEFAULT_TIMERS", "HEADER", "NO_GROUPING", "TIMER_NAME", "alert_group", "build_files",
        "check", "latency_group", "lint", "lint_logql", "main", "render", "request_group",
        "runtime_group", "selector", "task_group", "timer_file", "timer_group", "write",
    ],
    "obslog.metrics": [
        "DEFAULT_BUCKETS", "DEFAULT_TIMER_BUCKETS", "MetricsInstallation",
        "cleanup_dead_processes", "install", "installed", "mark_process_dead",
        "multiprocess_dir", "render_metrics", "uninstall",
    ],
    "obslog.processors": ["BoundLogger", "add_context", "redact_secrets", "render_to_stdlib"],
    "obslog.runtime": [
        "RuntimeLogger", "Sampler", "sample", "start_runtime_logger", "stop_runtime_logger",
    ],
    "obslog.wsgi": ["ObslogMiddleware", "silence_access_logs"],
}

# Old path -> new home, where the name moved (or was renamed) in the restructuring.
MOVED: dict[tuple[str, str], tuple[str, str]] = {
    ("obslog.health", "add_aiohttp_routes"): ("obslog.aiohttp", "add_health_routes"),
    ("obslog.health", "make_aiohttp_handler"): ("obslog.aiohttp", "make_health_handler"),
    ("obslog.health", "make_asgi_app"): ("obslog.asgi", "make_health_app"),
    ("obslog.health", "make_wsgi_app"): ("obslog.wsgi", "make_health_app"),
    ("obslog.loki", "LokiHandler"): ("obslog.loki.handler", "LokiHandler"),
    ("obslog._context", "timed"): ("obslog", "timed"),
    ("obslog._context", "on_scope_start"): ("obslog", "on_scope_start"),
    ("obslog._context", "on_scope_end"): ("obslog", "on_scope_end"),
    **{
        ("obslog.loki._rules", name): ("obslog.loki.rules", name)
        for name in OLD_API["obslog.loki._rules"]
        if name != "main"
    },
}

OLD_PATHS = [(module, name) for module, names in OLD_API.items() for name in names]

PACKAGE_DIR = Path(obslog.__file__).resolve().parent
MAX_MODULE_LINES = 600


def public_modules() -> list[str]:
    """Every importable module of obslog whose dotted path has no private part."""
    found = ["obslog"]
    for info in pkgutil.walk_packages(obslog.__path__, "obslog."):
        parts = info.name.split(".")[1:]
        if not any(part.startswith("_") for part in parts):
            found.append(info.name)
    return sorted(found)


class TestOldImportPaths:
    @pytest.mark.parametrize(
        ("module_name", "name"), OLD_PATHS, ids=[f"{m}.{n}" for m, n in OLD_PATHS]
    )
    def test_old_path_is_the_new_object(self, module_name, name):
        """`from <0.1 module> import <name>` works and gives the very object of its new home."""
        namespace: dict[str, object] = {}
        exec(f"from {module_name} import {name} as value", namespace)
        value = namespace["value"]
        if (module_name, name) in MOVED:
            home, home_name = MOVED[module_name, name]
        elif (inspect.isclass(value) or inspect.isfunction(value)) and (
            value.__module__ != module_name
        ):
            home, home_name = value.__module__, value.__name__
        else:
            home, home_name = module_name, name
        assert value is getattr(importlib.import_module(home), home_name)

    def test_old_paths_listed_in_dir(self):
        """Names a public module serves through its __getattr__ also show in its dir()."""
        missing = [
            f"{module_name}.{name}"
            for module_name, name in OLD_PATHS
            if "._" not in module_name and name not in dir(importlib.import_module(module_name))
        ]
        assert [] == missing

    @pytest.mark.parametrize("module_name", ["obslog.loki._rules", "obslog.loki.rules"])
    def test_rules_module_runs(self, module_name, tmp_path):
        """`python -m obslog.loki._rules --write DIR` (the 0.1 command) still writes the rules."""
        proc = subprocess.run(
            [sys.executable, "-m", module_name, "--write", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert (0, "") == (proc.returncode, proc.stderr)
        assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".yaml", ".yml"))


class TestModules:
    @pytest.mark.parametrize("module_name", public_modules())
    def test_public_module_declares_all(self, module_name):
        """Every public module has an __all__ of unique names that all exist."""
        module = importlib.import_module(module_name)
        names = module.__all__
        assert len(set(names)) == len(names)
        assert [] == [name for name in names if not hasattr(module, name)]

    def test_no_module_over_the_size_limit(self):
        """No module in the package is longer than 600 lines (one concern per module)."""
        sizes = {
            str(path.relative_to(PACKAGE_DIR)): len(path.read_text(encoding="utf-8").splitlines())
            for path in PACKAGE_DIR.rglob("*.py")
        }
        assert {} == {path: n for path, n in sizes.items() if n > MAX_MODULE_LINES}


class TestPyTyped:
    def test_py_typed_in_package(self):
        """py.typed sits in the package directory, so type checkers use the inline hints."""
        assert importlib.resources.files("obslog").joinpath("py.typed").is_file()

    def test_wheel_includes_package_dir(self):
        """The wheel ships the whole obslog package directory (py.typed included)."""
        from pathlib import Path

        tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

        pyproject = Path(obslog.__file__).resolve().parent.parent / "pyproject.toml"
        if not pyproject.is_file():
            pytest.skip("installed from a wheel: no pyproject.toml beside the package")
        config = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        packages = config["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
        assert "obslog" in packages
        assert "Typing :: Typed" in config["project"]["classifiers"]
