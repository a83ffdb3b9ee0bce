"""``python -m obslog.loki.rules --write DIR | --check DIR``."""

from __future__ import annotations

import sys

from .cli import module_main


sys.exit(module_main())
