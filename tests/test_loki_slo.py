"""
Tests of ``obslog loki slo``: objectives, generated LogQL and PromQL, the shipped example.

No Loki runs here.  The Loki rules are checked with Grafana's LogQL grammar
(``loki/tools/check-logql.js``) and the project's LogQL lint; the Prometheus rules with
``promtool check rules``.  Which alerts fire is tested with ``promtool test rules`` in
``test_loki_slo_alerts.py``.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys

from pathlib import Path
from typing import Any

import pytest

from _loki import lezer
from _require import require_binary

from obslog.loki import rules as loki_rules
from obslog.loki import slo as generator
from obslog.loki._slo_config import ConfigError, load_config


ROOT = Path(__file__).resolve().parents[1]
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
        items = [
            {"id": f"{rule['labels']['slo']}:{rule['record']}", "expr": rule["expr"]}
            for rule in _loki_rules(documents)
        ]
        assert [] == lezer(items)

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
