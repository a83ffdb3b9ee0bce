"""
Checks of everything under loki/: rule files, the rule generator, the dashboard, shipping configs.

What cannot run here is a real Loki; so the rules are checked at every level short of one:
YAML shape and the ruler's own validation rules, Grafana's LogQL grammar (``@grafana/lezer-logql``
through ``loki/tools/check-logql.js``), a lint for the forms Loki rejects although the grammar
accepts them, ``promtool`` for every PromQL expression, and ``docker compose config``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import types

from pathlib import Path
from typing import Any

import pytest
import yaml

from _loki import compose, compose_config, lezer
from _require import require_binary

from obslog.loki import cli as loki_cli
from obslog.loki import rules as generator


ROOT = Path(__file__).resolve().parents[1]
LOKI = ROOT / "loki"
RULES = LOKI / "rules" / "fake"
DASHBOARD = LOKI / "dashboards" / "obslog.json"
PROM_RULES = LOKI / "prometheus" / "obslog-rules.yaml"

SHIPPED_FILES = sorted(RULES.glob("*.yaml"))
LOKI_VARS = {"loki_ds": "loki", "prom_ds": "prometheus"}


def _rule_files() -> dict[str, dict[str, Any]]:
    return {path.name: yaml.safe_load(path.read_text(encoding="utf-8")) for path in SHIPPED_FILES}


def _all_rules() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{name}:{rule.get('record') or rule.get('alert')}", rule)
        for name, document in _rule_files().items()
        for group in document["groups"]
        for rule in group["rules"]
    ]


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def _panels() -> list[dict[str, Any]]:
    return [panel for panel in _dashboard()["panels"] if panel["type"] != "row"]


def _targets(kind: str) -> list[tuple[str, str]]:
    return [
        (f"panel {panel['title']!r} {target['refId']}", target["expr"])
        for panel in _panels()
        for target in panel["targets"]
        if target["datasource"]["type"] == kind
    ]


def _substitute_grafana_variables(expr: str) -> str:
    """Grafana variables as a test value: intervals become 1m, anything else ``x``."""
    expr = re.sub(r"\$\{?__(auto|interval|rate_interval|range)\}?", "1m", expr)
    return re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*(:[a-z]+)?\}?", "x", expr)


def _promtool_check_rules(tmp_path: Path, exprs: list[tuple[str, str]]) -> None:
    promtool = require_binary("promtool")
    rules = [
        {"record": f"check:expr_{i}:value", "expr": _substitute_grafana_variables(expr)}
        for i, (_, expr) in enumerate(exprs)
    ]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "check", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert 0 == result.returncode, result.stdout + result.stderr


class TestShippedRuleFiles:
    """The rule files in loki/rules/fake/ as the Loki ruler will read them."""

    def test_files_are_where_the_ruler_looks(self):
        """Rules live in <ruler dir>/<tenant>/ with the single-tenant id fake, nothing else."""
        assert [
            "obslog-alerts.yaml",
            "obslog-requests.yaml",
            "obslog-runtime.yaml",
            "obslog-tasks.yaml",
            "obslog-timers.yaml",
        ] == [path.name for path in SHIPPED_FILES]
        assert [] == [p.name for p in (LOKI / "rules").iterdir() if p.name != "fake"]

    def test_valid_yaml_with_the_ruler_keys(self):
        """Every file parses and passes the ruler's validation rules (keys, names, record/alert)."""
        problems = {name: generator.lint(document) for name, document in _rule_files().items()}
        assert {name: [] for name in problems} == problems

    def test_recording_rules_have_no_for_or_annotations(self):
        """A recording rule carries neither for nor annotations (Loki rejects them)."""
        assert [] == [
            name
            for name, rule in _all_rules()
            if "record" in rule and ({"for", "annotations"} & set(rule))
        ]

    def test_record_names_are_level_metric_operations(self):
        """Record names have the three colon-separated parts of Prometheus rule naming."""
        assert [] == [
            rule["record"]
            for _, rule in _all_rules()
            if "record" in rule
            and not re.fullmatch(r"[a-z_]+:obslog_[a-z_]+:[a-z0-9_]+", rule["record"])
        ]

    def test_alerts_have_for_severity_and_text(self):
        """Every alert waits (for), has a severity label and a summary and description."""
        alerts = [rule for _, rule in _all_rules() if "alert" in rule]
        assert {
            "ObslogHighErrorRatio",
            "ObslogHighLatencyP99",
            "ObslogRSSGrowth",
            "ObslogNoCanonicalLines",
        } == {rule["alert"] for rule in alerts}
        for rule in alerts:
            assert re.fullmatch(r"\d+m", rule["for"])
            assert rule["labels"]["severity"] in {"warning", "critical"}
            assert {"summary", "description"} == set(rule["annotations"])

    def test_lint_finds_nothing(self):
        """No expression has a form that Loki rejects although the grammar accepts it."""
        assert [] == [
            (name, p) for name, rule in _all_rules() for p in generator.lint_logql(rule["expr"])
        ]

    def test_durations_are_seconds(self):
        """A recorded duration unwraps a millisecond field and divides by 1000; none is in ms."""
        for name, rule in _all_rules():
            if "record" not in rule:
                continue
            assert "_ms:" not in rule["record"], name
            if "seconds" in rule["record"]:
                assert rule["expr"].rstrip().endswith("/ 1000"), name

    def test_request_metrics_read_canonical_lines_only(self):
        """Each request/task rule filters the line cheaply, then keeps the exact parsed event."""
        for name, rule in _all_rules():
            for event in ("request", "task", "runtime"):
                filtered = f'|= `"event":"{event}"`'
                if filtered in rule["expr"]:
                    assert rule["expr"].count(filtered) == rule["expr"].count(
                        f'| event="{event}"'
                    ), name
                    first_filter = rule["expr"].index(filtered)
                    assert first_filter < rule["expr"].index("| json"), name

    def test_counts_and_rates_are_weighted_by_sample_rate(self):
        """Every rate of canonical lines sums sample_rate (directly or as a product)."""
        for name, rule in _all_rules():
            expr = rule["expr"]
            for call in re.finditer(r"\brate\(", expr):
                body = expr[call.end() : expr.index("[", call.end())]
                assert "sample_rate" in body, name
                assert "| unwrap sample_rate" in body or "mulf" in body, name

    def test_quantiles_grouped_by_route_or_task(self):
        """Quantiles group by service_name, env and route (or task_name) on the range function."""
        quantiles = [rule for _, rule in _all_rules() if "quantile_over_time" in rule["expr"]]
        assert 7 == len(quantiles)
        for rule in quantiles:
            assert re.search(r"\) by \(service_name, env, (route|task_name)\)", rule["expr"])


class TestLint:
    """The lint catches what Loki rejects but @grafana/lezer-logql accepts."""

    @pytest.mark.parametrize(
        ("expr", "expected"),
        [
            (
                'sum_over_time({a="b"} | json | unwrap x | __error__="" [1m]) by (route)',
                "grouping directly on sum_over_time",
            ),
            (
                'count_over_time({a="b"} [1m]) without (route)',
                "grouping directly on count_over_time",
            ),
            ('rate({a="b"} |= `x` [1m]) by (a)', "grouping directly on rate"),
            ('rate({a="b"} | json [1m])', 'must end with | __error__=""'),
            ('rate({a="b"} | json | __error__="" | unwrap x [1m])', 'must end with | __error__=""'),
            ('rate({a="b"} | json | d > 5 [1m])', 'must end with | __error__=""'),
            ('count_over_time({a="b"} | unwrap x | __error__="" [1m])', "does not take an unwrap"),
            ('max_over_time({a="b"} |= `x` [1m])', "needs an unwrap"),
            ('sum(rate({a=~".*"} [1m]))', "excludes the empty value"),
        ],
    )
    def test_rejected_forms(self, expr, expected):
        """Each form Loki would reject is reported."""
        problems = generator.lint_logql(expr)
        assert 1 == len([p for p in problems if expected in p]), problems

    @pytest.mark.parametrize(
        "expr",
        [
            'quantile_over_time(0.9, {a="b"} | json | unwrap x | __error__="" [1m]) by (route)',
            'sum by (a) (rate({a="b"} | json | unwrap x | __error__="" [1m]))',
            'count_over_time({a=~".+"} |= `"x":"(y)"` [1h] offset 10m)',
            'rate({a="b"} | label_format s=`{{ .a }}` | __error__="" [1m])',
        ],
    )
    def test_accepted_forms(self, expr):
        """Valid forms, including templates with braces inside strings, pass."""
        assert [] == generator.lint_logql(expr)

    def test_rule_file_validation(self):
        """A record without ':', for on a recording rule, both record and alert are reported."""
        document = {
            "groups": [
                {
                    "name": "g",
                    "rules": [
                        {"record": "no_colon", "expr": 'sum(rate({a="b"}[1m]))'},
                        {"record": "a:b:c", "expr": 'sum(rate({a="b"}[1m]))', "for": "1m"},
                        {"record": "a:b:c", "alert": "A", "expr": 'sum(rate({a="b"}[1m]))'},
                    ],
                },
                {"name": "g", "rules": [], "query_offset": "1m"},
            ]
        }
        problems = generator.lint(document)
        for expected in (
            "record must be a metric name with ':'",
            "a recording rule has no for",
            "exactly one of record and alert",
            "name used twice",
            "unknown key 'query_offset'",
            "no rules",
        ):
            assert any(expected in p for p in problems), (expected, problems)


class TestGrammar:
    """Every LogQL expression parses with Grafana's own grammar (@grafana/lezer-logql)."""

    def test_rule_expressions_parse(self):
        """No rule expression has an error node."""
        items = [{"id": name, "expr": rule["expr"]} for name, rule in _all_rules()]
        assert 31 == len(items)
        assert [] == lezer(items)

    def test_dashboard_expressions_parse(self):
        """No LogQL target of the dashboard has an error node (Grafana variables substituted)."""
        items = [{"id": name, "expr": expr} for name, expr in _targets("loki")]
        assert len(items) >= 5
        assert [] == lezer(items)

    def test_checker_reports_errors(self):
        """The checker is not vacuous: a broken expression comes back with its error."""
        failures = lezer([{"id": "broken", "expr": 'sum(rate({a="b"}[1m])'}])
        assert ["broken"] == [failure["id"] for failure in failures]


class TestPromQL:
    """PromQL over the recorded series passes promtool."""

    def test_prometheus_rules(self):
        """loki/prometheus/obslog-rules.yaml passes promtool check rules."""
        promtool = require_binary("promtool")
        result = subprocess.run(
            [promtool, "check", "rules", str(PROM_RULES)], capture_output=True, text=True
        )
        assert 0 == result.returncode, result.stdout + result.stderr

    def test_prometheus_config(self):
        """loki/prometheus.yml (with its rule file) passes promtool check config."""
        promtool = require_binary("promtool")
        result = subprocess.run(
            [promtool, "check", "config", str(LOKI / "prometheus.yml")],
            capture_output=True,
            text=True,
        )
        assert 0 == result.returncode, result.stdout + result.stderr

    def test_dashboard_promql(self, tmp_path):
        """Every Prometheus target of the dashboard is valid PromQL."""
        exprs = _targets("prometheus")
        assert len(exprs) >= 15
        _promtool_check_rules(tmp_path, exprs)

    def test_prometheus_rules_use_recorded_names(self):
        """The PromQL rules read only series that the Loki rules record (or record themselves)."""
        recorded = {rule["record"] for _, rule in _all_rules() if "record" in rule}
        document = yaml.safe_load(PROM_RULES.read_text(encoding="utf-8"))
        own = {r["record"] for g in document["groups"] for r in g["rules"] if "record" in r}
        for group in document["groups"]:
            for rule in group["rules"]:
                used = set(re.findall(r"[a-z_]+:obslog_[a-z_]+:[a-z0-9_]+", rule["expr"]))
                assert used <= recorded | own, used - recorded - own


class TestGenerator:
    """`obslog loki rules` and the shipped files come from one source."""

    def test_shipped_files_equal_the_generator(self):
        """Regenerating the shipped files changes nothing."""
        assert [] == generator.check(RULES)

    def test_write_reproduces_the_files(self, tmp_path):
        """write() produces byte-identical files."""
        for path in generator.write(tmp_path):
            assert (RULES / path.name).read_text() == path.read_text()

    def test_cli_timer_rules_equal_shipped(self, capsys):
        """The CLI's rules for the demo's timers are the shipped obslog-timers.yaml."""
        argv = ["rules", "--timer", "db_query", "--timer", "cache_get", "--timer", "remote_call"]
        assert 0 == loki_cli.main(argv)
        shipped = (RULES / "obslog-timers.yaml").read_text().split("\n", 2)[2]
        assert shipped == capsys.readouterr().out.split("\n", 2)[2]

    def test_cli_service_and_output(self, tmp_path):
        """--service selects one service and names the group after it; --output writes a file."""
        output = tmp_path / "shop.yaml"
        argv = ["rules", "--service", "shop", "--timer", "render", "--output", str(output)]
        assert 0 == loki_cli.main(argv)
        document = yaml.safe_load(output.read_text())
        assert ["obslog-timers-shop"] == [g["name"] for g in document["groups"]]
        exprs = [rule["expr"] for rule in document["groups"][0]["rules"]]
        assert 3 == len(exprs)
        selector = '{service_name="shop", obslog="request"}'
        assert all(selector in expr and "timings.render." in expr for expr in exprs)
        assert [{"timer": "render"}] * 3 == [r["labels"] for r in document["groups"][0]["rules"]]
        assert [] == generator.lint(document)

    def test_cli_service_label(self, capsys):
        """--service-label service selects on the shipped stream label instead."""
        assert 0 == loki_cli.main(
            ["rules", "--service", "shop", "--service-label", "service", "--timer", "t"]
        )
        assert '{service="shop", obslog="request"}' in capsys.readouterr().out

    def test_cli_all(self, capsys):
        """--all prints every group in one valid file."""
        assert 0 == loki_cli.main(["rules", "--all", "--service", "shop"])
        document = yaml.safe_load(capsys.readouterr().out)
        assert [
            "obslog-requests-shop",
            "obslog-request-latency-shop",
            "obslog-tasks-shop",
            "obslog-runtime-shop",
            "obslog-timers-shop",
            "obslog-alerts-shop",
        ] == [g["name"] for g in document["groups"]]
        assert [] == generator.lint(document)

    @pytest.mark.parametrize(
        "argv",
        [
            ["rules"],
            ["rules", "--timer", "9lives"],
            ["rules", "--timer", "a", "--timer", "a"],
            ["rules", "--timer", "a", "--service", ""],
            ["rules", "--bogus"],
            ["nope"],
        ],
    )
    def test_cli_usage_errors(self, argv, capsys):
        """Missing or invalid timers and unknown options exit with status 2 and a message."""
        assert 2 == loki_cli.main(argv)
        assert capsys.readouterr().err

    def test_service_name_is_escaped(self):
        """A service name with a quote stays one LogQL string."""
        assert '{service_name="a\\"b"}' == generator.selector('a"b')


class TestCanonicalStream:
    """Rules read the canonical lines' own stream; the old selectors stay one switch away."""

    def test_every_rule_selects_the_canonical_stream_of_its_events(self):
        """Each selector names obslog="<event>" for the events its line filters keep."""
        for name, rule in _all_rules():
            selectors = re.findall(r"\{service_name=~\"\.\+\"[^}]*\}", rule["expr"])
            assert selectors, name
            for sel in selectors:
                stream = r'obslog(="(request|task|runtime)"|=~"request\|task")'
                assert re.fullmatch(r'\{service_name=~"\.\+", ' + stream + r"\}", sel), (name, sel)

    def test_line_filter_and_parsed_event_are_kept(self):
        """The stream selector comes first, then the event's line filter, then json with event."""
        for name, rule in _all_rules():
            for match in re.finditer(r'obslog="(\w+)"\} (\S+ \S+)', rule["expr"]):
                event, following = match.groups()
                assert f'|= `"event":"{event}"`' == following, name
            for pipeline in re.findall(r"\| json [^|]*", rule["expr"]):
                assert pipeline.startswith("| json event,"), name

    def test_legacy_rules_differ_only_in_the_selector(self):
        """--no-canonical-stream's files equal the shipped ones with the obslog matcher removed."""
        for name, document in generator.build_files(canonical_stream=False).items():
            shipped = (RULES / name).read_text(encoding="utf-8")
            without_stream = re.sub(r', obslog=~?"[a-z|]+"', "", shipped)
            assert without_stream == generator.render(document), name
            assert "obslog=" not in generator.render(document)

    def test_legacy_and_canonical_rules_have_the_same_records(self):
        """Both layouts record the same series names, labels and alerts, in the same order."""

        def shape(files):
            return [
                (rule.get("record") or rule.get("alert"), rule.get("labels"))
                for document in files.values()
                for group in document["groups"]
                for rule in group["rules"]
            ]

        legacy = generator.build_files(canonical_stream=False)
        assert shape(generator.build_files()) == shape(legacy)

    def test_cli_no_canonical_stream(self, capsys):
        """`obslog loki rules --no-canonical-stream` prints obslog 0.1's selectors."""
        argv = ["rules", "--all", "--service", "shop", "--no-canonical-stream"]
        assert 0 == loki_cli.main(argv)
        out = capsys.readouterr().out
        assert "obslog=" not in out
        assert '{service_name="shop"} |= `"event":"request"`' in out
        assert [] == generator.lint(yaml.safe_load(out))

    def test_cli_header_names_the_command(self, capsys):
        """A user's generated file says which command made it, not that tests compare it."""
        assert 0 == loki_cli.main(["rules", "--timer", "render", "--service", "my shop"])
        first, second = capsys.readouterr().out.splitlines()[:2]
        assert "# Generated by `obslog loki rules --timer render --service 'my shop'`." == first
        assert "tests compare" not in second
        shipped = (RULES / "obslog-timers.yaml").read_text().splitlines()[1]
        assert "# Edit the generator, not this file: tests compare the two." == shipped

    @pytest.mark.parametrize(
        ("args", "expected"),
        [
            (("request",), '{service_name=~".+", obslog="request"}'),
            (("task", "shop"), '{service_name="shop", obslog="task"}'),
            ((("task", "request"),), '{service_name=~".+", obslog=~"request|task"}'),
            ((None, "shop"), '{service_name="shop", obslog=~"request|task|runtime"}'),
        ],
    )
    def test_stream_selector(self, args, expected):
        """stream_selector names the service and the canonical events, in a fixed order."""
        assert expected == generator.stream_selector(*args)

    def test_stream_selector_without_canonical_stream(self):
        """canonical_stream=False gives the service-only selector of obslog 0.1."""
        assert '{service="shop"}' == generator.stream_selector(
            "request", "shop", label="service", canonical_stream=False
        )

    @pytest.mark.parametrize("event", ["job", "", ("request", "Request"), ()])
    def test_stream_selector_refuses_other_events(self, event):
        """Only the three canonical events can be selected: the label takes no other value."""
        with pytest.raises(ValueError, match="canonical events are request, task, runtime"):
            generator.stream_selector(event)


class TestModules:
    """The public modules, the old import path and the command dispatch."""

    def test_old_import_path_reexports(self):
        """obslog.loki._rules still offers the 0.1 names, as the same objects."""
        from obslog.loki import _rules

        for name in _rules.__all__:
            if name != "main":
                assert getattr(generator, name) is getattr(_rules, name), name
        assert 0 == _rules.main(["rules", "--timer", "t", "-o", os.devnull])

    @pytest.mark.parametrize("module", ["obslog.loki.rules", "obslog.loki._rules"])
    def test_module_check_passes(self, module):
        """`python -m obslog.loki.rules --check` (and the old module) accept the shipped files."""
        result = subprocess.run(
            [sys.executable, "-m", module, "--check", str(RULES)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (0, "") == (result.returncode, result.stderr)

    def test_modules_stay_small(self):
        """No module of the rule generator exceeds 600 lines."""
        package = ROOT / "obslog" / "loki" / "rules"
        sizes = {p.name: len(p.read_text().splitlines()) for p in package.glob("*.py")}
        assert {name: size for name, size in sizes.items() if size > 600} == {}

    def test_dispatch_to_a_registered_action(self, monkeypatch, capsys):
        """`obslog loki rules <action>` calls the registered function with the remaining args."""
        calls = []
        module = types.ModuleType("obslog_test_ruler")
        module.push = lambda argv: calls.append(argv) or 3
        monkeypatch.setitem(sys.modules, "obslog_test_ruler", module)
        monkeypatch.setitem(loki_cli.RULES_ACTIONS, "push", ("obslog_test_ruler:push", "test"))
        assert 3 == loki_cli.main(["rules", "push", "--url", "http://x"])
        assert [["--url", "http://x"]] == calls

    def test_missing_command_module_is_a_usage_error(self, monkeypatch, capsys):
        """A command whose module is absent exits 2 with one line naming the command."""
        monkeypatch.setitem(loki_cli.COMMANDS, "nothing", ("obslog.loki.nothing:main", "x"))
        assert 2 == loki_cli.main(["nothing", "--flag"])
        assert (
            "obslog loki nothing: error: not available in this version of obslog\n"
            == capsys.readouterr().err
        )

    def test_help_lists_commands(self, capsys):
        """`obslog loki --help` lists rules and slo; `rules --help` lists push, diff, delete."""
        assert 0 == loki_cli.main(["--help"])
        out = capsys.readouterr().out
        assert "rules" in out and "slo" in out
        assert 0 == loki_cli.main(["rules", "--help"])
        out = capsys.readouterr().out
        assert all(action in out for action in ("push", "diff", "delete", "--no-canonical-stream"))


class TestDashboard:
    """loki/dashboards/obslog.json is importable and provisioned."""

    def test_importable_json(self):
        """Valid JSON with a stable uid, no fixed id, unique panel ids inside a 24-wide grid."""
        dashboard = _dashboard()
        assert "obslog" == dashboard["uid"]
        assert dashboard["id"] is None
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids))
        for panel in dashboard["panels"]:
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24

    def test_datasources_are_variables(self):
        """Datasource variables exist and every panel and target uses one of them."""
        variables = {v["name"]: v for v in _dashboard()["templating"]["list"]}
        assert "datasource" == variables["loki_ds"]["type"]
        assert "datasource" == variables["prom_ds"]["type"]
        allowed = {"${loki_ds}", "${prom_ds}"}
        for panel in _panels():
            if panel["datasource"]["uid"] != "-- Mixed --":
                assert panel["datasource"]["uid"] in allowed, panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] in allowed, panel["title"]

    def test_required_panels(self):
        """Rate, errors, latency, timers, slowest requests, runtime and Celery are all shown."""
        titles = " | ".join(panel["title"].lower() for panel in _panels())
        for word in ("rate", "error", "latency", "timer", "slowest", "rss", "cpu", "task"):
            assert word in titles, word
        assert _targets("loki") and _targets("prometheus")

    def test_dashboard_logql_lint(self):
        """The dashboard's LogQL has none of the forms Loki rejects."""
        assert [] == [
            (name, p)
            for name, expr in _targets("loki")
            for p in generator.lint_logql(_substitute_grafana_variables(expr))
        ]

    def test_request_panels_read_the_canonical_stream(self):
        """LogQL panels over request lines select obslog="request"; the error-line panel all."""
        for name, expr in _targets("loki"):
            if '`"event":"request"`' in expr:
                assert 'obslog="request"} |= `"event":"request"`' in expr, name
            else:
                assert "obslog=" not in expr, name

    def test_dashboard_reads_recorded_series(self):
        """Every recorded series named in a Prometheus target is recorded by some rule."""
        recorded = {rule["record"] for _, rule in _all_rules() if "record" in rule}
        for path in sorted(PROM_RULES.parent.glob("*.yaml")):  # obslog-rules.yaml, obslog-slo.yaml
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
            recorded |= {
                r["record"] for g in document["groups"] for r in g["rules"] if "record" in r
            }
        for name, expr in _targets("prometheus"):
            used = set(re.findall(r"[a-z_]+:obslog_[a-z_]+:[a-z0-9_]+", expr))
            assert used and used <= recorded, (name, used - recorded)

    def test_provisioning(self):
        """Datasource uids match the variables' defaults; the provider reads the mounted folder."""
        datasources = yaml.safe_load(
            (LOKI / "provisioning" / "datasources" / "obslog.yaml").read_text()
        )
        assert 1 == datasources["apiVersion"]
        uids = {ds["type"]: ds["uid"] for ds in datasources["datasources"]}
        variables = {v["name"]: v for v in _dashboard()["templating"]["list"]}
        assert uids["loki"] == variables["loki_ds"]["current"]["value"]
        assert uids["prometheus"] == variables["prom_ds"]["current"]["value"]
        providers = yaml.safe_load(
            (LOKI / "provisioning" / "dashboards" / "obslog.yaml").read_text()
        )
        assert 1 == providers["apiVersion"]
        path = providers["providers"][0]["options"]["path"]
        grafana = compose(LOKI)["services"]["grafana"]
        assert f"./dashboards:{path}:ro" in grafana["volumes"]


class TestStack:
    """docker-compose.yml, the Loki and shipping configs agree with each other."""

    def test_compose_config_accepts_the_file(self):
        """`docker compose config` (or docker-compose) validates the stack offline."""
        result = compose_config(LOKI)
        assert 0 == result.returncode, result.stderr

    def test_compose_services_and_mounts(self):
        """All parts are there, bind mounts exist, Prometheus accepts remote write."""
        services = compose(LOKI)["services"]
        assert {"loki", "prometheus", "alertmanager", "grafana", "alloy", "demo"} == set(services)
        assert "--web.enable-remote-write-receiver" in services["prometheus"]["command"]
        for service in services.values():
            for volume in service.get("volumes", []):
                source = volume.split(":")[0]
                if source.startswith("."):
                    assert (LOKI / source).exists(), volume
        assert "obslog" == services["demo"]["labels"]["logging"]

    def test_loki_ruler_reads_rules_and_writes_to_prometheus(self):
        """The ruler's local directory is where compose mounts loki/rules; it remote-writes."""
        config = yaml.safe_load((LOKI / "loki-config.yaml").read_text())
        assert config["auth_enabled"] is False
        ruler = config["ruler"]
        assert "local" == ruler["storage"]["type"]
        directory = ruler["storage"]["local"]["directory"]
        assert f"./rules:{directory}:ro" in compose(LOKI)["services"]["loki"]["volumes"]
        assert ruler["remote_write"]["enabled"] is True
        urls = [client["url"] for client in ruler["remote_write"]["clients"].values()]
        assert ["http://prometheus:9090/api/v1/write"] == urls
        assert "v13" == config["schema_config"]["configs"][0]["schema"]
        assert "tsdb" == config["schema_config"]["configs"][0]["store"]
        assert "service" in config["limits_config"]["discover_service_name"]

    def test_alloy_config(self):
        """Alloy keeps service/env/level/obslog labels, trace_id as metadata, the record's time."""
        text = (LOKI / "alloy" / "config.alloy").read_text()
        code = re.sub(r'"(?:[^"\\]|\\.)*"|//[^\n]*', '""', text)
        assert code.count("{") == code.count("}")
        keep = re.search(r"stage\.label_keep\s*\{\s*values\s*=\s*\[([^\]]*)\]", text)
        assert keep is not None
        assert ["env", "level", "obslog", "service"] == sorted(
            re.findall(r'"(\w+)"', keep.group(1))
        )
        metadata = re.search(r"stage\.structured_metadata\s*\{(.*?)\n  \}", text, re.S)
        assert metadata is not None and "trace_id" in metadata.group(1)
        stamp = re.search(r"stage\.timestamp\s*\{(.*?)\}", text, re.S)
        assert stamp is not None and 'source = "timestamp"' in stamp.group(1)
        assert 'url        = "http://loki:3100/loki/api/v1/push"' in text

    def test_promtail_config(self):
        """Promtail does the same: four labels, trace_id metadata, the record's timestamp."""
        config = yaml.safe_load((LOKI / "promtail" / "promtail-config.yaml").read_text())
        for job in config["scrape_configs"]:
            stages = {
                next(iter(stage)): stage[next(iter(stage))] for stage in job["pipeline_stages"]
            }
            assert {"service", "env", "level", "obslog"} == set(stages["labels"])
            assert ["service", "env", "level", "obslog"] == stages["labelallow"]
            assert {"trace_id"} == set(stages["structured_metadata"])
            assert "timestamp" == stages["timestamp"]["source"]


# -- the shipping pipelines, run by a stand-in ------------------------------------------------
# Neither Alloy nor Promtail runs here.  The stand-in below reads the shipped pipeline
# definitions and applies the semantics their docs give to each stage used (drop, json, regex,
# labeldrop, labels, labelallow/label_keep; structured_metadata and timestamp do not touch
# labels).  It fails on any other stage, so a new stage cannot slip past it.


def _alloy_stages() -> list[tuple[str, Any]]:
    text = (LOKI / "alloy" / "config.alloy").read_text()
    block = re.search(r'loki\.process "obslog" \{(.*?)\n\}', text, re.S)
    assert block is not None
    body = re.sub(r"//[^\n]*", "", block.group(1))
    names = {"label_drop": "labeldrop", "label_keep": "labelallow"}
    stages: list[tuple[str, Any]] = []
    assignment = r'(\w+)\s*=\s*("(?:[^"\\]|\\.)*")'
    for kind, inner in re.findall(r"stage\.(\w+)\s*\{(.*?)\n  \}", body, re.S):
        strings = {k: json.loads(v) for k, v in re.findall(assignment, inner)}
        maps = {
            k: {n: json.loads(v) for n, v in re.findall(assignment, m)}
            for k, m in re.findall(r"(\w+)\s*=\s*\{(.*?)\}", inner, re.S)
        }
        lists = {
            k: [json.loads(v) for v in re.findall(r'"(?:[^"\\]|\\.)*"', m)]
            for k, m in re.findall(r"(\w+)\s*=\s*\[(.*?)\]", inner, re.S)
        }
        kind = names.get(kind, kind)
        if kind == "json":
            stages.append((kind, {n: p or n for n, p in maps["expressions"].items()}))
        elif kind in ("labels", "structured_metadata"):
            stages.append((kind, {n: p or n for n, p in maps["values"].items()}))
        elif kind in ("labeldrop", "labelallow"):
            stages.append((kind, lists["values"]))
        else:
            stages.append((kind, {k: strings[k] for k in ("expression", "source") if k in strings}))
    return stages


def _promtail_stages() -> list[list[tuple[str, Any]]]:
    config = yaml.safe_load((LOKI / "promtail" / "promtail-config.yaml").read_text())
    jobs = []
    for job in config["scrape_configs"]:
        stages: list[tuple[str, Any]] = []
        for stage in job["pipeline_stages"]:
            ((kind, cfg),) = stage.items()
            if kind == "json":
                cfg = {n: p or n for n, p in cfg["expressions"].items()}
            elif kind in ("labels", "structured_metadata"):
                cfg = {n: p or n for n, p in cfg.items()}
            elif kind in ("drop", "regex", "timestamp"):
                cfg = {k: cfg[k] for k in ("expression", "source") if k in cfg}
            stages.append((kind, cfg))
        jobs.append(stages)
    return jobs


def _go_regex(expression: str) -> re.Pattern[str]:
    """RE2 without flags: ``$`` is the end of the text (Python's ``\\Z``), not before a newline."""
    if expression.endswith("$"):
        expression = expression[:-1] + r"\Z"
    return re.compile(expression)


def _as_string(value: Any) -> str:
    """How the pipelines turn an extracted JSON value into a string."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def _ship(stages: list[tuple[str, Any]], line: str, labels: dict[str, str]) -> dict | None:
    """The stream labels the pipeline gives *line*; None when it drops the line."""
    labels, extracted = dict(labels), {}
    for kind, cfg in stages:
        if kind == "drop":
            if _go_regex(cfg["expression"]).search(line):
                return None
        elif kind == "json":
            try:
                document = json.loads(line)
            except ValueError:
                continue
            if isinstance(document, dict):
                for name, key in cfg.items():
                    assert re.fullmatch(r"\w+", key), key  # plain keys only, no JMESPath
                    if key in document:
                        extracted[name] = document[key]
        elif kind == "regex":
            if cfg["source"] in extracted:
                match = _go_regex(cfg["expression"]).search(_as_string(extracted[cfg["source"]]))
                if match:
                    extracted.update({k: v for k, v in match.groupdict().items() if v is not None})
        elif kind == "labeldrop":
            labels = {k: v for k, v in labels.items() if k not in cfg}
        elif kind == "labels":
            labels.update({n: _as_string(extracted[s]) for n, s in cfg.items() if s in extracted})
        elif kind == "labelallow":
            labels = {k: v for k, v in labels.items() if k in cfg}
        else:
            assert kind in ("structured_metadata", "timestamp"), f"unknown stage {kind}"
    return labels


def _hostile_lines() -> list[str]:
    """10,000 distinct lines whose event is anything but a canonical event, then the three."""
    base = {"timestamp": "2026-11-26T15:20:01.123456Z", "level": "info", "service": "shop"}
    events: list[Any] = [
        "request ", " request", "Request", "request\n", "request|task", "request.*", "task\u0000",
        "runtime\u200b", '"request"', "", None, 1, 1.5, True, ["request"], {"event": "request"},
    ]  # fmt: skip
    events += [f"event-{i}" for i in range(10_000 - len(events))]
    lines = [json.dumps({**base, "event": event}) for event in events]
    assert 10_000 == len(set(lines))
    return lines


class TestShippingPipelines:
    """The Alloy and Promtail pipelines put canonical lines, and only them, in their stream."""

    def test_alloy_and_promtail_run_the_same_stages(self):
        """Both shipped pipelines have the same stages, in the same order, per Promtail job."""
        for stages in _promtail_stages():
            assert _alloy_stages() == stages

    @pytest.mark.parametrize("shipper", ["alloy", "promtail"])
    def test_canonical_lines_get_the_label(self, shipper):
        """request, task and runtime lines get obslog=<event>; an ordinary line none."""
        stages = _alloy_stages() if shipper == "alloy" else _promtail_stages()[0]
        shipped = {
            event: _ship(stages, json.dumps({"event": event, "service": "shop"}), {})
            for event in ("request", "task", "runtime", "order placed")
        }
        assert {
            "request": {"service": "shop", "obslog": "request"},
            "task": {"service": "shop", "obslog": "task"},
            "runtime": {"service": "shop", "obslog": "runtime"},
            "order placed": {"service": "shop"},
        } == shipped

    @pytest.mark.parametrize("shipper", ["alloy", "promtail"])
    def test_hostile_events_never_become_label_values(self, shipper):
        """10,000 distinct hostile events (and a source's own obslog label) add no stream."""
        stages = _alloy_stages() if shipper == "alloy" else _promtail_stages()[0]
        source = {"obslog": "from-the-source", "container": "web-1"}
        lines = [*_hostile_lines(), '{"event":"x","event":"request"}', "not json", "{broken"]
        label_sets = {
            tuple(sorted(labels.items()))
            for line in lines
            if (labels := _ship(stages, line, source)) is not None
        }
        assert {
            (("level", "info"), ("service", "shop")),
            (("obslog", "request"),),  # duplicate key: the last value wins, as in Go
            (),
        } == label_sets


def _selector_benchmark() -> Any:
    """benchmarks/bench_loki_selectors.py, imported from the checkout with its package."""
    if "benchmarks" not in sys.modules:
        package = ROOT / "benchmarks"
        spec = importlib.util.spec_from_file_location(
            "benchmarks", package / "__init__.py", submodule_search_locations=[str(package)]
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return importlib.import_module("benchmarks.bench_loki_selectors")


class TestSelectorCost:
    """The canonical stream cuts what each rule reads and leaves what it computes unchanged."""

    def test_rules_read_less_and_keep_the_same_lines(self):
        """At 20:1, every rule reads >10x fewer bytes and keeps exactly the same lines."""
        bench = _selector_benchmark()
        legacy, canonical = bench.compare(20, requests=30)

        assert [c.rule for c in legacy] == [c.rule for c in canonical]
        assert [c.kept for c in legacy] == [c.kept for c in canonical]
        assert all(c.kept for c in canonical)
        ratios = [
            (a.rule, a.bytes_read / b.bytes_read) for a, b in zip(legacy, canonical, strict=True)
        ]
        assert [] == [(rule, ratio) for rule, ratio in ratios if ratio <= 10]
