"""
Tests of ``obslog loki slo``: objectives, generated LogQL and PromQL, and the burn-rate alerts.

No Loki runs here.  The Loki rules are checked with Grafana's LogQL grammar
(``loki/tools/check-logql.js``) and the project's LogQL lint; the Prometheus rules with
``promtool check rules`` and with ``promtool test rules``, which evaluates them over histories of
the series the Loki rules record (one weighted count per minute) and checks which alerts fire.
Expected burn rates and budgets are computed here from the same per-minute counts, with the
range-selector semantics of the installed Prometheus (both ends included before 3.0).
"""

from __future__ import annotations

import json
import math
import re
import shlex
import subprocess
import sys

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from _require import IN_CI, require_binary

from obslog.loki import rules as loki_rules
from obslog.loki import slo as generator
from obslog.loki._slo_config import ConfigError, load_config


ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "loki" / "tools"
EXAMPLE = ROOT / "loki" / "slo" / "slos.yaml"
SHIPPED_PROMETHEUS = ROOT / "loki" / "prometheus" / "obslog-slo.yaml"

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
  - name: mail                 # a Celery task
    service: shop
    task: shop.send_mail
    availability: 99.5
"""

MINUTES_PER_DAY = 1440


def _cli_slos(command_line: str) -> list[Any]:
    """The SLOs that ``obslog loki slo`` builds from *command_line*."""
    return generator._objectives(generator._parser().parse_args(shlex.split(command_line)))


def _write(tmp_path: Path, text: str, name: str = "slos.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(name="slos")
def _slos(tmp_path):
    return load_config(_write(tmp_path, CONFIG))


@pytest.fixture(name="documents")
def _documents(slos):
    return generator.build(slos)


# --------------------------------------------------------------------------------------------
# objectives: flags and file
# --------------------------------------------------------------------------------------------


class TestObjectives:
    """Objectives from a file or from flags; every mistake is an error naming file and key."""

    def test_file_gives_one_slo_per_sli(self, slos):
        """Availability and latency objectives become separately named SLOs of each scope."""
        assert [
            ("shop-availability", "request", (), None, 0.999),
            ("checkout-availability", "request", ("/checkout",), "route", 0.9999),
            ("routes-latency", "request", ("/checkout", "/search"), "route", 0.99),
            ("mail-availability", "task", ("shop.send_mail",), "task_name", 0.995),
        ] == [(s.name, s.kind, s.targets, s.group_label, s.objective) for s in slos]

    def test_flags_of_the_issue(self):
        """The flags of one objective give an availability and a latency SLO of the route."""
        slos = _cli_slos(
            "--service shop --route /checkout --availability 99.9 --latency-ms 300 "
            "--latency-objective 99 --period 28d"
        )
        assert [
            ("shop-checkout-availability", 0.999, 0.0, "28d"),
            ("shop-checkout-latency", 0.99, 300.0, "28d"),
        ] == [(s.name, s.objective, s.threshold_ms, s.period) for s in slos]

    @pytest.mark.parametrize(
        ("entry", "message"),
        [
            ("service: shop\n    availability: 100", "slos[0] (x): availability: must be above 0"),
            ("service: shop\n    availability: 0", "availability: must be above 0 and below 100"),
            ("service: shop\n    availability: high", "availability: must be a percentage"),
            (
                "service: shop\n    latency_ms: 0\n    latency_objective: 99",
                "latency_ms: must be a number of milliseconds above 0",
            ),
            ("service: shop\n    latency_ms: 300", "latency_objective: required with latency_ms"),
            ("service: shop\n    availabilty: 99.9", "availabilty: unknown key; valid keys are"),
            ("availability: 99.9", "service: required"),
            ("service: shop", "give availability and/or latency_ms"),
            ("service: shop\n    availability: 99\n    period: 1d", "period: must be from 7d"),
            ("service: shop\n    availability: 99\n    period: month", "period: 'month' is not"),
            (
                "service: shop\n    route: /a\n    task: t\n    availability: 99",
                "route, task: give only one of route, routes, task, tasks",
            ),
            (
                "service: shop\n    availability: 99\n    error_statuses: [5xx, 6oo]",
                "error_statuses: '6oo' is not a status",
            ),
            (
                "service: shop\n    task: t\n    per_route: true\n    availability: 99",
                "per_route: only for requests",
            ),
        ],
    )
    def test_invalid_entries_name_file_and_key(self, tmp_path, entry, message):
        """An impossible or unknown value is a ConfigError naming the file, entry and key."""
        path = _write(tmp_path, f"slos:\n  - name: x\n    {entry}\n")
        with pytest.raises(ConfigError) as info:
            load_config(path)
        assert str(info.value).startswith(f"{path}: slos[0]")
        assert message in str(info.value)

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("slo: []\n", "exactly one top-level key, slos (found: slo)"),
            ("slos: []\n", "slos: must be a non-empty list"),
            ("slos: [: bad\n", "not valid YAML"),
            ("slos:\n  - 3\n", "slos[0]: must be a mapping"),
            (
                "slos:\n  - {name: a, service: s, availability: 99}\n"
                "  - {name: a, service: t, availability: 98}\n",
                "SLO name 'a-availability' is used twice",
            ),
        ],
    )
    def test_invalid_files(self, tmp_path, text, message):
        """A file of the wrong shape is a ConfigError naming the file."""
        path = _write(tmp_path, text)
        with pytest.raises(ConfigError) as info:
            load_config(path)
        assert str(info.value).startswith(str(path))
        assert message in str(info.value)

    def test_missing_file(self, tmp_path):
        """An unreadable file is a ConfigError naming it."""
        with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read"):
            load_config(tmp_path / "nope.yaml")

    def test_cli_errors_name_the_flag(self, capsys):
        """A bad flag value exits 2 with the flag's name; --config excludes objective flags."""
        assert 2 == generator.main(["--service", "shop", "--availability", "100"])
        assert "--availability: must be above 0" in capsys.readouterr().err
        assert 2 == generator.main(["--config", "x.yaml", "--service", "shop"])
        assert "--config and --service exclude each other" in capsys.readouterr().err

    def test_cli_writes_both_files(self, tmp_path, capsys):
        """-o DIR writes the Loki and the Prometheus file; --print shows either one."""
        config = _write(tmp_path, CONFIG)
        assert 0 == generator.main(["--config", str(config), "-o", str(tmp_path / "out")])
        loki = (tmp_path / "out" / "loki" / "obslog-slo.yaml").read_text()
        prometheus = (tmp_path / "out" / "prometheus" / "obslog-slo.yaml").read_text()
        assert "sum_over_time({service_name=" in loki
        assert "ObslogSLOErrorBudgetBurn" in prometheus
        capsys.readouterr()
        assert 0 == generator.main(["--config", str(config), "--print", "prometheus"])
        assert prometheus == capsys.readouterr().out

    def test_example_file_is_valid(self):
        """The documented example file loads."""
        assert load_config(EXAMPLE)


# --------------------------------------------------------------------------------------------
# generated LogQL
# --------------------------------------------------------------------------------------------


def _loki_rules(documents: tuple[dict[str, Any], dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for group in documents[0]["groups"] for rule in group["rules"]]


class TestLokiRules:
    """The Loki side records weighted one-minute counts, never scanning more than a minute."""

    def test_grammar(self, documents):
        """Every generated LogQL expression parses with Grafana's grammar."""
        node = require_binary("node")
        if not (TOOLS / "node_modules" / "@grafana" / "lezer-logql").is_dir():
            message = "loki/tools/node_modules is missing: run `npm ci` in loki/tools"
            if IN_CI:
                pytest.fail(message, pytrace=False)
            pytest.skip(message)
        items = [
            {"id": f"{rule['labels']['slo']}:{rule['record']}", "expr": rule["expr"]}
            for rule in _loki_rules(documents)
        ]
        result = subprocess.run(
            [node, str(TOOLS / "check-logql.js")],
            input=json.dumps(items),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert 0 == result.returncode, result.stdout + result.stderr
        assert [] == json.loads(result.stdout)

    def test_lint(self, documents):
        """The project's rule-file lint (the ruler's validation plus LogQL lint) finds nothing."""
        assert [] == loki_rules.lint(documents[0])

    def test_lint_would_catch_a_broken_rule(self, documents):
        """The lint is not vacuous: dropping the error filter from a generated rule is reported."""
        rule = _loki_rules(documents)[0]
        broken = rule["expr"].replace(' | __error__=""', "")
        assert loki_rules.lint_logql(broken)

    def test_counts_are_weighted_one_minute_sums(self, documents):
        """Every range is [1m] over unwrap sample_rate: a kept line counts sample_rate times."""
        for rule in _loki_rules(documents):
            assert ["1m"] == sorted(set(re.findall(r"\[(\w+)\]", rule["expr"])))
            assert rule["expr"].count("sum_over_time(") == rule["expr"].count(
                "| unwrap sample_rate |"
            )

    def test_scopes(self, documents):
        """Service, route, set of routes and task select and group as configured."""
        exprs = {
            (rule["labels"]["slo"], rule["record"]): rule["expr"] for rule in _loki_rules(documents)
        }
        shop = exprs[("shop-availability", generator.BAD_EVENTS)]
        assert "by (service_name, env) (" in shop
        assert "route" not in shop
        assert '| outcome="error"' in shop
        checkout = exprs[("checkout-availability", generator.EVENTS)]
        assert '| route="/checkout"' in checkout
        assert "by (service_name, env, route)" in checkout
        latency = exprs[("routes-latency", generator.BAD_EVENTS)]
        assert '| route=~"/checkout|/search"' in latency
        assert "| duration_ms > 300 |" in latency
        mail = exprs[("mail-availability", generator.BAD_EVENTS)]
        assert '|= `"event":"task"`' in mail
        assert '| task_name="shop.send_mail"' in mail
        assert "by (service_name, env, task_name)" in mail

    def test_bad_count_is_zero_not_absent(self, documents):
        """The bad count falls back to 0 * the event count, so quiet minutes read as 0."""
        for rule in _loki_rules(documents):
            if rule["record"] == generator.BAD_EVENTS:
                total = next(
                    r["expr"]
                    for r in _loki_rules(documents)
                    if r["record"] == generator.EVENTS and r["labels"] == rule["labels"]
                )
                assert rule["expr"].endswith(f"\nor\n0 * {total}")

    def test_error_statuses_and_regex_escaping(self):
        """Statuses become a status regex; route regexes escape RE2 metacharacters."""
        slos = _cli_slos(
            "--service shop --route /a.b --route /orders/{id} --availability 99 "
            "--error-status 5xx --error-status 429"
        )
        bad = generator.loki_group(slos[0])["rules"][1]["expr"]
        assert '| status=~"5[0-9][0-9]|429"' in bad
        assert r'| route=~"/a\\.b|/orders/\\{id\\}"' in bad

    def test_selector_comes_from_the_rule_generator(self, slos):
        """SLO rules select streams with the one selector function of every obslog rule."""
        from obslog.loki.rules import stream_selector

        mail = slos[3]
        assert stream_selector("task", "shop") == generator.stream_selector(mail)
        assert generator.loki_group(mail)["rules"][0]["expr"].startswith(
            "sum by (service_name, env, task_name) (sum_over_time("
            + stream_selector("task", "shop")
            + " "
        )
        plain = generator.loki_group(mail, canonical_stream=False)["rules"][0]["expr"]
        assert "sum_over_time(" + stream_selector("task", "shop", canonical_stream=False) in plain

    def test_cli_no_canonical_stream(self, tmp_path, capsys):
        """--no-canonical-stream makes the Loki rules read every stream of the service."""
        config = str(_write(tmp_path, CONFIG))
        assert 0 == generator.main(["--config", config])
        assert '{service_name="shop", obslog="request"}' in capsys.readouterr().out
        assert 0 == generator.main(["--config", config, "--no-canonical-stream"])
        out = capsys.readouterr().out
        assert "obslog=" not in out
        assert '{service_name="shop"} |=' in out


# --------------------------------------------------------------------------------------------
# generated PromQL: promtool check and the burn-rate factors
# --------------------------------------------------------------------------------------------


def _prometheus_file(tmp_path: Path, documents: tuple[dict[str, Any], dict[str, Any]]) -> Path:
    path = tmp_path / "prometheus-slo.yaml"
    path.write_text(generator.render(documents[1]), encoding="utf-8")
    return path


class TestPrometheusRules:
    """Long windows, burn rates, budget and alerts are valid PromQL with the right factors."""

    def test_promtool_check_rules(self, tmp_path, documents):
        """promtool check rules accepts the generated file (no duplicate rules either)."""
        promtool = require_binary("promtool")
        result = subprocess.run(
            [promtool, "check", "rules", str(_prometheus_file(tmp_path, documents))],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert 0 == result.returncode, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout

    def test_windows_are_sums_of_recorded_counts(self, documents):
        """Each window's error ratio divides summed bad counts by summed counts of that window."""
        group = documents[1]["groups"][0]
        ratios = {
            r["labels"]["window"]: r["expr"]
            for r in group["rules"]
            if r.get("record") == generator.ERROR_RATIO
        }
        assert list(generator.WINDOWS) == list(ratios)
        assert (
            'sum_over_time(slo:obslog_sli_bad_events:sum1m{slo="shop-availability"}[6h])\n/\n'
            'sum_over_time(slo:obslog_sli_events:sum1m{slo="shop-availability"}[6h])'
        ) == ratios["6h"]
        assert all("avg_over_time" not in r["expr"] for r in group["rules"])

    def test_alerts_carry_severity_slo_scope_summary_runbook(self, documents):
        """Page and ticket alerts name the SLO, its scope label, burn rate, budget and runbook."""
        group = next(
            g for g in documents[1]["groups"] if g["name"] == "obslog-slo-checkout-availability"
        )
        alerts = [r for r in group["rules"] if "alert" in r]
        assert ["page", "ticket"] == [a["labels"]["severity"] for a in alerts]
        for alert in alerts:
            assert "checkout-availability" == alert["labels"]["slo"]
            summary = alert["annotations"]["summary"]
            assert "{{ $labels.service_name }} {{ $labels.route }}" in summary
            assert '{{ $value | printf "%.1f" }}x' in summary
            assert "humanizePercentage" in summary
            assert alert["annotations"]["runbook_url"].startswith("https://")

    @pytest.mark.parametrize(
        ("period", "page", "ticket"),
        [("30d", ("14.4", "6"), ("3", "1")), ("7d", ("3.36", "1.4"), ("0.7", "0.233333"))],
    )
    def test_factors_scale_with_the_period(self, period, page, ticket):
        """The workbook factors hold for 30d and are scaled by period / 30d otherwise."""
        slos = _cli_slos(f"--service s --availability 99.9 --period {period}")
        rules = generator.prometheus_group(slos[0])["rules"]
        found = [
            tuple(re.findall(r"\} > ([0-9.]+)", r["expr"])[::2]) for r in rules if "alert" in r
        ]
        assert [page, ticket] == found


# --------------------------------------------------------------------------------------------
# promtool test rules: histories of recorded counts, and which alerts fire
# --------------------------------------------------------------------------------------------


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

    @pytest.fixture(name="by_name")
    def _by_name(self, slos):
        return {s.name: s for s in slos}

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


# --------------------------------------------------------------------------------------------
# shipped example
# --------------------------------------------------------------------------------------------


class TestShipped:
    """The example objectives and their Prometheus rules shipped under loki/."""

    def test_shipped_prometheus_rules_equal_the_generator(self):
        """loki/prometheus/obslog-slo.yaml is what `obslog loki slo` makes of the example file."""
        _, prometheus = generator.build(load_config(EXAMPLE))
        assert generator.render(prometheus) == SHIPPED_PROMETHEUS.read_text(encoding="utf-8")

    def test_dashboard_slo_row(self):
        """The SLO row shows SLI, burn rate per window and budget left, all recorded here."""
        dashboard = json.loads((ROOT / "loki" / "dashboards" / "obslog.json").read_text())
        panels = dashboard["panels"]
        row = next(i for i, p in enumerate(panels) if p["type"] == "row" and "SLO" in p["title"])
        slo_panels = [p for p in panels[row + 1 :] if p["title"].startswith("SLO ")]
        exprs = " ".join(t["expr"] for p in slo_panels for t in p["targets"])
        used = set(re.findall(r"slo:obslog_[a-z_]+:[a-z_]+", exprs))
        recorded = {
            r["record"]
            for r in generator.prometheus_group(load_config(EXAMPLE)[0])["rules"]
            if "record" in r
        }
        assert {
            generator.BUDGET_REMAINING,
            generator.PERIOD_ERROR_RATIO,
            generator.BURN_RATE,
            generator.ERROR_RATIO,
            generator.OBJECTIVE,
        } == used
        assert used <= recorded
        assert all(p["datasource"]["uid"] == "${prom_ds}" for p in slo_panels)

    def test_documented_format_loads(self, tmp_path):
        """The objectives file shown in loki/README.md is valid, with every key used."""
        text = (ROOT / "loki" / "README.md").read_text(encoding="utf-8")
        block = re.search(r"^```yaml\n(slos:\n.*?)^```", text, flags=re.DOTALL | re.MULTILINE)
        assert block is not None
        slos = load_config(_write(tmp_path, block.group(1)))
        assert [
            ("checkout-availability", ("5xx", "429"), 0.999),
            ("checkout-latency", (), 0.99),
        ] == [(s.name, s.error_statuses, s.objective) for s in slos]


class TestWithoutPyYAML:
    """Without PyYAML, reading YAML fails with an ImportError naming the extra to install."""

    def test_slo_file(self, tmp_path, monkeypatch):
        """load_config names obslog[loki]; flags alone need no PyYAML."""
        monkeypatch.setitem(sys.modules, "yaml", None)
        with pytest.raises(ImportError, match=r"pip install 'obslog\[loki\]'"):
            load_config(_write(tmp_path, CONFIG))
        assert 2 == len(
            _cli_slos("--service shop --availability 99 --latency-ms 1 --latency-objective 9")
        )

    def test_ruler(self, monkeypatch, capsys):
        """The ruler commands exit 2 with the same hint."""
        from obslog.loki import ruler

        monkeypatch.setitem(sys.modules, "yaml", None)
        for main in (ruler.push_main, ruler.diff_main, ruler.delete_main):
            assert 2 == main(["--url", "http://127.0.0.1:9"])
            assert "pip install 'obslog[loki]'" in capsys.readouterr().err
