"""
The README's examples, extracted for the tests that run them.

Blocks are found by what they contain, never by position, so adding an example elsewhere in the
README changes no other test.
"""

from __future__ import annotations

import re

from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
README_PATH = ROOT / "README.md"

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", flags=re.DOTALL | re.MULTILINE)
_SPAN = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")


def readme() -> str:
    """The README's text, read now (it may change while the suite runs)."""
    return README_PATH.read_text(encoding="utf-8")


def blocks(language: str) -> list[str]:
    """Every fenced block of *language* (``python``, ``sh``, ...)."""
    return [body for lang, body in _FENCE.findall(readme()) if lang == language]


def python_blocks() -> list[str]:
    """Every ```python block."""
    return blocks("python")


def python_block(marker: str) -> str:
    """The one ```python block that contains *marker*."""
    found = [block for block in python_blocks() if marker in block]
    assert 1 == len(found), f"{len(found)} README python blocks contain {marker!r}"
    return found[0]


def shell_lines() -> list[str]:
    """Every command of the ```sh blocks, one per line (blank lines and comments left out)."""
    return [
        line.strip()
        for language in ("sh", "bash", "console", "shell")
        for block in blocks(language)
        for line in block.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


#: Words that also name things in prose ("Celery's `celery worker starting` line"): a span
#: starting with one is a command only with an option or a ``module:app``.
_AMBIGUOUS = frozenset({"celery", "uvicorn", "gunicorn", "flask", "docker", "npm", "pytest"})


def _looks_like_command(span: str) -> bool:
    first = span.split(" ", 1)[0]
    if first not in _AMBIGUOUS:
        return True
    return bool(re.search(r"\s-|\w:\w", span)) or span in {"npm ci", "npm install"}


def inline_commands(words: tuple[str, ...]) -> list[str]:
    """Inline code spans outside fenced blocks that start with one of *words* and read as
    commands."""
    prose = _FENCE.sub("", readme())
    return [
        span.strip()
        for span in _SPAN.findall(prose)
        if span.strip().split(" ", 1)[0] in words and _looks_like_command(span.strip())
    ]
