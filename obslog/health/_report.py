"""
What one readiness evaluation found: a :class:`CheckResult` per check and the
:class:`ReadyReport` served by ``/ready``.
"""

from __future__ import annotations

import json

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


__all__ = ["CheckResult", "ReadyReport"]

_ERROR_MAX = 1000


@dataclass(frozen=True)
class CheckResult:
    """
    Outcome of one readiness check.

    Attributes:
        name: The name the check was registered under.
        status: ``"ok"``, ``"fail"`` or ``"timeout"``.
        required: Whether a failure makes the whole answer 503.
        latency_ms: Time the check took (or ran before it was cut off), in ms.
        error: Error text when the check did not pass, else None.
    """

    name: str
    status: str
    required: bool
    latency_ms: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the check passed."""
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready mapping used in the ``/ready`` body (without the name)."""
        return {
            "status": self.status,
            "required": self.required,
            "latency_ms": self.latency_ms,
            "error": self.error,
        }


@dataclass(frozen=True)
class ReadyReport:
    """
    One evaluation of all readiness checks, already rendered.

    Attributes:
        ok: True when every required check passed.
        checks: Results in registration order.
        duration_ms: Wall time of the evaluation in ms.
        body: The JSON body served by ``/ready``.
    """

    ok: bool
    checks: tuple[CheckResult, ...]
    duration_ms: float
    body: bytes = field(repr=False)

    @property
    def status_code(self) -> int:
        """200 when ready, 503 otherwise."""
        return 200 if self.ok else 503

    @classmethod
    def build(cls, results: Iterable[CheckResult], duration_ms: float) -> ReadyReport:
        """
        Build a report and its JSON body from check results.

        Args:
            results: Results in the order they should be listed.
            duration_ms: Wall time of the evaluation.

        Returns:
            The report.
        """
        checks = tuple(results)
        ok = all(r.ok for r in checks if r.required)
        duration_ms = round(duration_ms, 3)
        body = json.dumps(
            {
                "status": "ok" if ok else "fail",
                "checks": {r.name: r.to_dict() for r in checks},
                "duration_ms": duration_ms,
            },
            separators=(",", ":"),
        ).encode()
        return cls(ok=ok, checks=checks, duration_ms=duration_ms, body=body)

    def to_dict(self) -> dict[str, Any]:
        """Return the decoded ``/ready`` body."""
        return json.loads(self.body)  # type: ignore[no-any-return]



def error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text if len(text) <= _ERROR_MAX else text[: _ERROR_MAX - 3] + "..."


def judge(value: object) -> str | None:
    """Return None when *value* means "passed", else the error text."""
    if value is None or value is True:
        return None
    if value is False:
        return "check returned False"
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return (
        f"check returned {shown} ({type(value).__name__}); "
        "a check must return None or True to pass, False to fail, or raise"
    )

