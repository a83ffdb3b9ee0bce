"""
``promtool test rules`` over the SLO alerts of ``obslog loki slo``: who pages, who gets a ticket.

The Prometheus rules are evaluated over histories of the two series the Loki rules record (one
weighted count per minute), and the firing alerts are compared with the expected ones, labels
and annotations included.  Expected burn rates and budgets are computed here from the same
per-minute counts, with the range-selector semantics of the installed Prometheus (both ends
included before 3.0).  No Loki runs here.
"""

from __future__ import annotations

import json
import math
import re
import subprocess

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from _require import require_binary

from obslog.loki import slo as generator
from obslog.loki._slo_config import load_config


CONFIG = """
slos:
  - name: shop                 # the whole service
    service: shop
    availability: 99.9
  - name: checkout             # one route, strict
    service: shop
    route: /checkout
    availability: 99.99
  - name: routes               # a set of routes, one latency SLI per route
    service: shop
    routes: [/checkout, /search]
    latency_ms: 300
    latency_objective: 99
"""

MINUTES_PER_DAY = 1440


@pytest.fixture(name="by_name")
def _by_name(tmp_path):
    path = tmp_path / "slos.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return {s.name: s for s in load_config(path)}


def _prometheus_major() -> int:
    promtool = require_binary("promtool")
    out = subprocess.run(
        [promtool, "--version"], capture_output=True, text=True, check=False
    ).stdout
    match = re.search(r"version (\d+)\.", out)
    assert match, out
    return int(match.group(1))


@dataclass
class Series:
    """A recorded count per minute (None: no sample that minute), with its labels."""

    labels: dict[str, str]
    values: list[float | None]

    def notation(self) -> str:
        """promtool's expanding notation, run-length encoded."""
        out: list[str] = []
        i = 0
        while i < len(self.values):
            j = i
            while j + 1 < len(self.values) and self.values[j + 1] == self.values[i]:
                j += 1
            value, run = self.values[i], j - i
            if value is None:
                out.append(f"_x{run + 1}" if run else "_")
            else:
                out.append(f"{value:g}+0x{run}" if run else f"{value:g}")
            i = j + 1
        return " ".join(out)


@dataclass
class History:
    """The two recorded series of one SLI scope (one route, task or service)."""

    slo: str
    sli: str
    events: list[float | None]
    bad: list[float | None]
    scope: dict[str, str]

    def labels(self) -> dict[str, str]:
        """Labels the Loki rule writes on both series."""
        return {
            "slo": self.slo,
            "sli": self.sli,
            "service_name": "shop",
            "env": "prod",
            **self.scope,
        }

    def series(self) -> list[tuple[str, Series]]:
        """Input series for promtool."""
        return [
            (generator.EVENTS, Series(self.labels(), self.events)),
            (generator.BAD_EVENTS, Series(self.labels(), self.bad)),
        ]

    def ratio(self, minute: int, window_min: int, inclusive: bool) -> float | None:
        """The error ratio over the window ending at *minute*, as Prometheus computes it."""
        first = minute - window_min + (0 if inclusive else 1)
        bad = [v for v in self.bad[max(first, 0) : minute + 1] if v is not None]
        events = [v for v in self.events[max(first, 0) : minute + 1] if v is not None]
        if not events:
            return None
        return math.fsum(bad) / math.fsum(events)


def _humanize_percentage(value: float) -> str:
    """Prometheus' humanizePercentage: Go's ``%.4g`` of the value times 100, then ``%``."""
    return f"{value * 100:.4g}%"


def _steady(minutes: int, value: float) -> list[float | None]:
    return [value] * minutes


def _run_promtool(tmp_path: Path, slo: Any, tests: list[dict[str, Any]]) -> None:
    """Run *tests* with promtool over the Prometheus rules of *slo* alone (faster to evaluate)."""
    promtool = require_binary("promtool")
    rule_file = tmp_path / "prometheus-slo.yaml"
    rule_file.write_text(
        generator.render({"groups": [generator.prometheus_group(slo)]}), encoding="utf-8"
    )
    path = tmp_path / "slo-test.yaml"
    path.write_text(
        yaml.safe_dump(
            {"rule_files": [str(rule_file)], "evaluation_interval": "1m", "tests": tests},
            sort_keys=False,
            width=1000,
        ),
        encoding="utf-8",
    )
    result = subprocess.run(
        [promtool, "test", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert 0 == result.returncode, result.stdout[-6000:] + result.stderr[-3000:]


def _labels_text(labels: dict[str, str]) -> str:
    return "{" + ", ".join(f"{k}={json.dumps(v)}" for k, v in labels.items()) + "}"


def _rounded(selector: str, minute: int, labels: dict[str, str], value: float) -> dict[str, Any]:
    """A promql_expr_test of one series' value, rounded to 0.001 (exact for the values used)."""
    return {
        "expr": f"round({selector}, 0.001)",
        "eval_time": f"{minute}m",
        "exp_samples": [{"labels": _labels_text(labels), "value": value}],
    }


def _input(histories: list[History]) -> list[dict[str, str]]:
    series = []
    for history in histories:
        for name, s in history.series():
            series.append({"series": name + _labels_text(s.labels), "values": s.notation()})
    return series


@dataclass
class Expect:
    """An expected firing alert of one history at one minute."""

    history: History
    severity: str
    slo: Any
    budget_text: str

    def alert(
        self, minute: int, inclusive: bool, pairs: tuple[tuple[str, str, float], ...]
    ) -> dict[str, Any]:
        """The alert promtool must report: labels and the exact annotations."""
        windows = {"5m": 5, "30m": 30, "1h": 60, "2h": 120, "6h": 360, "1d": 1440, "3d": 4320}
        budget = float(generator._num(1 - self.slo.objective))
        burns = []
        for long, short, factor in pairs:
            long_ratio = self.history.ratio(minute, windows[long], inclusive)
            short_ratio = self.history.ratio(minute, windows[short], inclusive)
            assert long_ratio is not None and short_ratio is not None
            if long_ratio / budget > factor and short_ratio / budget > factor:
                burns.append(long_ratio / budget)
        assert burns, "the scenario does not fire at this minute"
        rule = next(
            r
            for r in generator.prometheus_group(self.slo)["rules"]
            if r.get("labels", {}).get("severity") == self.severity
        )
        labels = {**self.history.labels(), **rule["labels"]}
        del labels["sli"]
        labels["sli"] = self.slo.sli
        scope = next(iter(self.history.scope.values()), None)
        where = f" {scope}" if scope is not None else ""
        summary = (
            f"shop{where}: SLO {self.slo.name} burns its error budget {max(burns):.1f}x too "
            f"fast; {self.budget_text} of the {self.slo.period} budget left"
        )
        return {
            "exp_labels": labels,
            "exp_annotations": {
                "summary": summary,
                "description": rule["annotations"]["description"],
                "runbook_url": rule["annotations"]["runbook_url"],
            },
        }


def _budget_text(history: History, minute: int, slo: Any, inclusive: bool) -> str:
    ratio = history.ratio(minute, 30 * MINUTES_PER_DAY, inclusive)
    assert ratio is not None
    return _humanize_percentage(1 - ratio / float(generator._num(1 - slo.objective)))


def _alert_test(minute: int, expected: list[Expect], inclusive: bool) -> list[dict[str, Any]]:
    by_severity: dict[str, list[dict[str, Any]]] = {"page": [], "ticket": []}
    for e in expected:
        pairs = generator.PAGE if e.severity == "page" else generator.TICKET
        by_severity[e.severity].append(e.alert(minute, inclusive, pairs))
    # Both severities share one alert name; promtool compares the full list of firing alerts.
    alerts = by_severity["page"] + by_severity["ticket"]
    return [
        {
            "eval_time": f"{minute}m",
            "alertname": "ObslogSLOErrorBudgetBurn",
            "exp_alerts": alerts,
        }
    ]


class TestBurnRateAlerts:
    """promtool test rules over recorded-count histories: who pages, who gets a ticket."""

    @pytest.fixture(name="inclusive")
    def _inclusive(self):
        # Before Prometheus 3.0 a range selector includes the sample at its left edge.
        return _prometheus_major() < 3

    def test_steady_low_error_rate_never_alerts(self, tmp_path, by_name, inclusive):
        """A steady 0.05% error rate against 99.9% (burn rate 0.5) raises nothing in 3 days."""
        days3 = 3 * MINUTES_PER_DAY
        history = History(
            "shop-availability",
            "availability",
            _steady(days3 + 1, 1000),
            _steady(days3 + 1, 0.5),
            {},
        )
        tests = [
            {
                "interval": "1m",
                "input_series": _input([history]),
                "alert_rule_test": [
                    *_alert_test(60, [], inclusive),
                    *_alert_test(MINUTES_PER_DAY, [], inclusive),
                    *_alert_test(days3, [], inclusive),
                ],
                "promql_expr_test": [
                    _rounded(
                        f'{generator.BURN_RATE}{{slo="shop-availability", window="1h"}}',
                        days3,
                        {**history.labels(), "window": "1h"},
                        0.5,
                    ),
                    _rounded(
                        f'{generator.BUDGET_REMAINING}{{slo="shop-availability"}}',
                        days3,
                        {**history.labels(), "period": "30d"},
                        0.5,
                    ),
                ],
            }
        ]
        _run_promtool(tmp_path, by_name["shop-availability"], tests)

    def test_short_burst_pages(self, tmp_path, by_name, inclusive):
        """A 2% error burst for 10 minutes after 3 quiet days pages on a 99.99% route SLO.

        Burn rate 200 over 5m and about 34 over 1h; it opens no ticket (the 1d and 3d windows
        stay below 3 and 1), and the page ends once the burst leaves the 30m window.  (Against
        99.9% the same burst burns 3.75 over 1h: it spends 0.46% of a 30-day budget and, as the
        workbook intends, pages nobody.)
        """
        quiet = 3 * MINUTES_PER_DAY
        bad = _steady(quiet, 0.5) + _steady(10, 200) + _steady(60, 0.5)
        history = History(
            "checkout-availability",
            "availability",
            _steady(len(bad), 10000),
            bad,
            {"route": "/checkout"},
        )
        slo = by_name["checkout-availability"]
        burst_9 = quiet + 9
        page = Expect(history, "page", slo, _budget_text(history, burst_9, slo, inclusive))
        tests = [
            {
                "interval": "1m",
                "input_series": _input([history]),
                "alert_rule_test": [
                    *_alert_test(quiet - 1, [], inclusive),
                    *_alert_test(quiet + 3, [], inclusive),
                    *_alert_test(burst_9, [page], inclusive),
                    *_alert_test(quiet + 10 + 35, [], inclusive),
                ],
            }
        ]
        _run_promtool(tmp_path, slo, tests)

    def test_slow_leak_opens_a_ticket(self, tmp_path, by_name, inclusive):
        """A 0.3% leak for a day after two days at 0.05% (99.9%) opens a ticket, never a page."""
        days2 = 2 * MINUTES_PER_DAY
        bad = _steady(days2, 0.5) + _steady(MINUTES_PER_DAY + 1, 3)
        history = History("shop-availability", "availability", _steady(len(bad), 1000), bad, {})
        slo = by_name["shop-availability"]
        end = days2 + MINUTES_PER_DAY
        ticket = Expect(history, "ticket", slo, _budget_text(history, end, slo, inclusive))
        tests = [
            {
                "interval": "1m",
                "input_series": _input([history]),
                "alert_rule_test": [
                    *_alert_test(days2 + 6 * 60, [], inclusive),
                    *_alert_test(end, [ticket], inclusive),
                ],
            }
        ]
        _run_promtool(tmp_path, slo, tests)

    def test_latency_regression_alerts_only_that_route(self, tmp_path, by_name, inclusive):
        """30% of /checkout requests turn slow for 40 minutes: /checkout pages, /search does not."""
        quiet = 3 * MINUTES_PER_DAY
        slow = _steady(quiet, 5) + _steady(41, 300)
        n = len(slow)
        checkout = History(
            "routes-latency", "latency", _steady(n, 1000), slow, {"route": "/checkout"}
        )
        search = History(
            "routes-latency", "latency", _steady(n, 1000), _steady(n, 5), {"route": "/search"}
        )
        slo = by_name["routes-latency"]
        end = quiet + 40
        page = Expect(checkout, "page", slo, _budget_text(checkout, end, slo, inclusive))
        tests = [
            {
                "interval": "1m",
                "input_series": _input([checkout, search]),
                "alert_rule_test": _alert_test(end, [page], inclusive),
            }
        ]
        _run_promtool(tmp_path, slo, tests)

    def test_missing_data_does_not_page(self, tmp_path, by_name, inclusive):
        """No samples for 3 hours, then minutes with no traffic (0 of 0), then steady: no alert."""
        day = MINUTES_PER_DAY
        events: list[float | None] = [*_steady(day, 1000), *[None] * 180, *_steady(60, 0)]
        bad: list[float | None] = [*_steady(day, 0.5), *[None] * 180, *_steady(60, 0)]
        events += _steady(120, 1000)
        bad += _steady(120, 0.5)
        history = History("shop-availability", "availability", events, bad, {})
        gap, quiet = day + 90, day + 180 + 30
        tests = [
            {
                "interval": "1m",
                "input_series": _input([history]),
                "alert_rule_test": [
                    *_alert_test(gap, [], inclusive),
                    *_alert_test(quiet, [], inclusive),
                    *_alert_test(day + 180 + 60 + 5, [], inclusive),
                    *_alert_test(len(events) - 1, [], inclusive),
                ],
                "promql_expr_test": [
                    {
                        "expr": 'slo:obslog_burn_rate:ratio{slo="shop-availability", window="1h"}',
                        "eval_time": f"{gap}m",
                        "exp_samples": [],
                    }
                ],
            }
        ]
        _run_promtool(tmp_path, by_name["shop-availability"], tests)

    def test_sampled_lines_are_reweighted(self, tmp_path, by_name, inclusive):
        """Under 1-in-100 sampling of good requests, weighted counts keep a 0.02% error rate calm.

        Every minute 100 000 requests run, 20 of them fail; errors are always kept, the rest 1
        in 100 with sample_rate 100 (what obslog writes).  Summed sample_rate (what the Loki rule
        records) gives back 20 in 100 000; counting kept lines instead would read 20 in 1 020 —
        a 2% error ratio that pages.  Both histories are fed to the same rules.
        """
        lines = [{"outcome": "error", "sample_rate": 1}] * 20 + [
            {"outcome": "ok", "sample_rate": 100}
        ] * 1000
        weighted_events = float(sum(line["sample_rate"] for line in lines))
        weighted_bad = float(sum(x["sample_rate"] for x in lines if x["outcome"] == "error"))
        assert (100020.0, 20.0) == (weighted_events, weighted_bad)
        minutes = 3 * MINUTES_PER_DAY
        weighted = History(
            "shop-availability",
            "availability",
            _steady(minutes + 1, weighted_events),
            _steady(minutes + 1, weighted_bad),
            {},
        )
        raw = History(
            "shop-availability",
            "availability",
            _steady(minutes + 1, float(len(lines))),
            _steady(minutes + 1, 20.0),
            {},
        )
        slo = by_name["shop-availability"]
        at = 120
        expected_raw = [
            Expect(raw, "page", slo, _budget_text(raw, at, slo, inclusive)),
            Expect(raw, "ticket", slo, _budget_text(raw, at, slo, inclusive)),
        ]
        tests = [
            {
                "interval": "1m",
                "input_series": _input([weighted]),
                "alert_rule_test": [
                    *_alert_test(at, [], inclusive),
                    *_alert_test(minutes, [], inclusive),
                ],
            },
            {
                "interval": "1m",
                "input_series": _input([raw]),
                "alert_rule_test": _alert_test(at, expected_raw, inclusive),
            },
        ]
        _run_promtool(tmp_path, slo, tests)
