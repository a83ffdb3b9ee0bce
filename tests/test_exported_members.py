"""
The public API: ``obslog.__all__`` names exactly the public members, and typing information ships.
"""

from __future__ import annotations

import importlib
import importlib.resources
import inspect
import types

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
        """__all__ lists exactly the public names obslog defines (modules and typing imports aside)."""
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
