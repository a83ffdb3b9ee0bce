"""The Loki stand-in of the tests (``tests/loki_stub.py``), loaded for the Loki benchmarks."""

from __future__ import annotations

import importlib.util
import sys

from pathlib import Path
from typing import Any


def load_stub() -> Any:
    """
    Import ``tests/loki_stub.py`` (not a package) as module ``loki_stub``.

    Raises:
        ImportError: The file is missing from the checkout.
    """
    path = Path(__file__).resolve().parent.parent / "tests" / "loki_stub.py"
    spec = importlib.util.spec_from_file_location("loki_stub", path)
    if spec is None or spec.loader is None:  # pragma: no cover - broken checkout
        msg = f"cannot load the Loki stand-in from {path}"
        raise ImportError(msg)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("loki_stub", module)
    spec.loader.exec_module(module)
    return module
