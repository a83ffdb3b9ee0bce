"""
Timer rules over Celery ``task`` lines (``obslog loki rules --task-timers``).

No Loki runs here: the rules are checked with Grafana's LogQL grammar and the project's lint, and
their shape (selector, grouping, weighting) is asserted directly.
"""

from __future__ import annotations

import pytest
import yaml

from _loki import lezer
from ruler_stub import RulerStub

from obslog.loki import ruler
from obslog.loki import rules as loki_rules
from obslog.loki.rules import cli as rules_cli
from obslog.loki.task_timers import task_timer_group


@pytest.fixture(name="group")
def _group():
    return task_timer_group(loki_rules.Streams("shop"), ["db_query", "render"])


class TestTaskTimerGroup:
    """Three series per timer, per task, from the canonical task stream."""

    def test_series_and_labels(self, group):
        """Time, calls and longest call for each timer, each labelled with the timer."""
        assert [
            ("service_task:obslog_timer_seconds:rate1m", "db_query"),
            ("service_task:obslog_timer_calls:rate1m", "db_query"),
            ("service_task:obslog_timer_max_seconds:max1m", "db_query"),
            ("service_task:obslog_timer_seconds:rate1m", "render"),
            ("service_task:obslog_timer_calls:rate1m", "render"),
            ("service_task:obslog_timer_max_seconds:max1m", "render"),
        ] == [(r["record"], r["labels"]["timer"]) for r in group["rules"]]

    def test_reads_task_lines_by_task(self, group):
        """Every rule reads the task stream, keeps task lines with the timer, groups by task."""
        selector = loki_rules.stream_selector("task", "shop")
        for rule in group["rules"]:
            expr = rule["expr"]
            assert selector in expr
            assert f'|= `"event":"task"` |= `"{rule["labels"]["timer"]}":`' in expr
            assert "by (service_name, env, task_name)" in expr
            assert "route" not in expr

    def test_time_and_calls_weighted(self, group):
        """Time and calls multiply by sample_rate; the longest call does not."""
        exprs = [r["expr"] for r in group["rules"]]
        assert "mulf .timer_ms .sample_rate" in exprs[0]
        assert "mulf .timer_calls .sample_rate" in exprs[1]
        assert "sample_rate" not in exprs[2]

    def test_lint(self, group):
        """The project's rule lint finds nothing."""
        assert [] == loki_rules.lint({"groups": [group]})

    def test_grammar(self, group):
        """Every expression parses with Grafana's LogQL grammar."""
        plain = task_timer_group(loki_rules.Streams(None, canonical_stream=False), ["t"])
        items = [{"id": r["record"], "expr": r["expr"]} for g in (group, plain) for r in g["rules"]]
        assert [] == lezer(items)

    def test_invalid_timer(self):
        """Timer names follow obslog.timed's rule."""
        with pytest.raises(ValueError, match="invalid timer name"):
            task_timer_group(loki_rules.Streams(), ["no-dash"])


class TestCommands:
    """`obslog loki rules --task-timers` and `rules push --task-timers`."""

    def test_rules_command(self, capsys):
        """The flag adds the task group after the request timer group; without it, nothing."""
        assert 0 == rules_cli.main(["--service", "shop", "--timer", "db_query", "--task-timers"])
        document = yaml.safe_load(capsys.readouterr().out)
        assert ["obslog-timers-shop", "obslog-task-timers-shop"] == [
            g["name"] for g in document["groups"]
        ]
        assert 0 == rules_cli.main(["--service", "shop", "--timer", "db_query"])
        document = yaml.safe_load(capsys.readouterr().out)
        assert ["obslog-timers-shop"] == [g["name"] for g in document["groups"]]

    def test_all_with_task_timers(self, capsys):
        """--all --task-timers lints clean and has the task group once."""
        assert 0 == rules_cli.main(["--all", "--task-timers"])
        document = yaml.safe_load(capsys.readouterr().out)
        assert 1 == [g["name"] for g in document["groups"]].count("obslog-task-timers")
        assert [] == loki_rules.lint(document)

    def test_push(self, capsys):
        """push --task-timers delivers the task group beside the shipped ones."""
        with RulerStub() as stub:
            assert 0 == ruler.push_main(["--url", stub.url, "--task-timers", "--timer", "db_query"])
            assert "obslog-task-timers" in stub.groups("obslog")
