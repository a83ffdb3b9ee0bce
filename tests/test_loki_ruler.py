"""
Tests of ``obslog loki rules push|diff|delete`` and of ``loki/scalable/``.

No Loki runs here: the ruler API is played by ``tests/ruler_stub.py``, a stand-in that follows
Loki's documented ruler API (paths, YAML bodies, 202/400/401/404 answers, ``X-Scope-OrgID``)
over real HTTP on a loopback port.  The scalable deployment is checked with
``docker-compose config`` and by reading its configuration files.
"""

from __future__ import annotations

import subprocess

from pathlib import Path

import pytest
import yaml

from _loki import compose, compose_config
from _require import require_binary
from ruler_stub import RulerStub

from obslog import _cli
from obslog.loki import ruler
from obslog.loki import rules as loki_rules


ROOT = Path(__file__).resolve().parents[1]
SCALABLE = ROOT / "loki" / "scalable"
EXAMPLE_SLOS = ROOT / "loki" / "slo" / "slos.yaml"

SHIPPED_GROUPS = [
    group["name"] for document in loki_rules.build_files().values() for group in document["groups"]
]


@pytest.fixture(name="stub")
def _stub():
    with RulerStub() as stub:
        yield stub


def _run(action: str, *args: str) -> int:
    main = {"push": ruler.push_main, "diff": ruler.diff_main, "delete": ruler.delete_main}[action]
    return main(list(args))


class TestPush:
    """push creates or replaces each group that differs, and says what it did."""

    def test_first_push_creates_every_group(self, stub, capsys):
        """Every shipped group is POSTed as YAML to the namespace and stored as sent."""
        assert 0 == _run("push", "--url", stub.url)
        assert sorted(SHIPPED_GROUPS) == sorted(stub.groups("obslog"))
        posts = [c for c in stub.calls if c.method == "POST"]
        assert {"/loki/api/v1/rules/obslog"} == {c.path for c in posts}
        assert {"application/yaml"} == {c.headers["content-type"] for c in posts}
        first = yaml.safe_load(posts[0].body)
        assert ruler.normalize(first) == ruler.normalize(
            next(g for d in loki_rules.build_files().values() for g in d["groups"])
        )
        out = capsys.readouterr().out
        assert f"{len(SHIPPED_GROUPS)} sent, 0 unchanged" in out

    def test_second_push_sends_nothing(self, stub, capsys):
        """Groups equal on the server are left alone."""
        assert 0 == _run("push", "--url", stub.url)
        posts_before = sum(c.method == "POST" for c in stub.calls)
        assert 0 == _run("push", "--url", stub.url)
        assert posts_before == sum(c.method == "POST" for c in stub.calls)
        assert f"0 sent, {len(SHIPPED_GROUPS)} unchanged" in capsys.readouterr().out

    def test_changed_group_is_replaced(self, stub, capsys):
        """Other timers change only the timer group, which is replaced."""
        assert 0 == _run("push", "--url", stub.url)
        capsys.readouterr()
        assert 0 == _run("push", "--url", stub.url, "--timer", "db_query")
        out = capsys.readouterr().out
        assert "~ obslog/obslog-timers: replaced" in out
        assert f"1 sent, {len(SHIPPED_GROUPS) - 1} unchanged" in out
        stored = stub.groups("obslog")["obslog-timers"]
        assert {"db_query"} == {r["labels"]["timer"] for r in stored["rules"]}

    def test_dry_run_sends_nothing(self, stub, capsys):
        """--dry-run reads the server and lists what it would create, without writing."""
        assert 0 == _run("push", "--url", stub.url, "--dry-run")
        assert [] == [c for c in stub.calls if c.method != "GET"]
        out = capsys.readouterr().out
        assert "+ obslog/obslog-requests: would create" in out
        assert f"dry run: {len(SHIPPED_GROUPS)} of {len(SHIPPED_GROUPS)} groups" in out

    def test_tenant_namespace_and_slo_groups(self, stub):
        """--tenant goes in X-Scope-OrgID; --no-shipped with --slo-config sends only SLO groups."""
        assert 0 == _run(
            "push",
            "--url",
            stub.url,
            "--tenant",
            "team-a",
            "--namespace",
            "slo",
            "--no-shipped",
            "--slo-config",
            str(EXAMPLE_SLOS),
        )
        assert {"team-a"} == {c.headers.get("x-scope-orgid") for c in stub.calls}
        stored = stub.groups("slo", tenant="team-a")
        assert "obslog-slo-checkout-latency" in stored
        assert all(name.startswith("obslog-slo-") for name in stored)
        assert {} == stub.groups("slo")

    def test_rule_file(self, stub, tmp_path):
        """--file adds the groups of a Loki rule file (as written by `obslog loki slo -o`)."""
        from obslog.loki import slo

        assert 0 == slo.main(["--config", str(EXAMPLE_SLOS), "-o", str(tmp_path)])
        path = tmp_path / "loki" / "obslog-slo.yaml"
        assert 0 == _run("push", "--url", stub.url, "--no-shipped", "--file", str(path))
        assert "obslog-slo-shop-availability" in stub.groups("obslog")

    def test_bearer_token(self, tmp_path, capsys):
        """The token file's content is sent as a bearer token; a wrong one is a clear 401."""
        token = tmp_path / "token"
        token.write_text("s3cret\n")
        with RulerStub(bearer_token="s3cret") as stub:
            assert 0 == _run("push", "--url", stub.url, "--bearer-token-file", str(token))
            assert {"Bearer s3cret"} == {c.headers["authorization"] for c in stub.calls}
        with RulerStub(bearer_token="other") as stub:
            assert 1 == _run("push", "--url", stub.url, "--bearer-token-file", str(token))
            assert [] == [c for c in stub.calls if c.method == "POST"]
        err = capsys.readouterr().err
        assert "HTTP 401: unauthorized: Unauthorized -- check --bearer-token-file" in err
        assert "nothing was sent" in err

    def test_basic_auth(self, tmp_path):
        """User and password file are sent as basic auth."""
        password = tmp_path / "password"
        password.write_text("pw")
        with RulerStub(basic_auth=("obslog", "pw")) as stub:
            assert 0 == _run(
                "push",
                "--url",
                stub.url,
                "--basic-auth-user",
                "obslog",
                "--basic-auth-password-file",
                str(password),
            )
            assert sorted(SHIPPED_GROUPS) == sorted(stub.groups("obslog"))

    def test_rejected_group_is_named_and_others_applied(self, capsys):
        """A 400 prints Loki's message with the group; the summary says what was applied."""
        with RulerStub(reject_expr="quantile_over_time") as stub:
            assert 1 == _run("push", "--url", stub.url)
            stored = set(stub.groups("obslog"))
        err = capsys.readouterr().err
        assert (
            "error: group 'obslog-request-latency': HTTP 400: Loki rejected the rule group: "
            "could not parse expression for record "
            "'service_route:obslog_request_duration_seconds:p50_5m' in group "
            "'obslog-request-latency'"
        ) in err
        assert "obslog-request-latency" not in stored
        assert "obslog-runtime" in stored
        assert (
            f"incomplete -- applied: {', '.join(sorted(stored, key=SHIPPED_GROUPS.index))}" in err
        )
        assert "failed: obslog-request-latency, obslog-tasks, obslog-alerts" in err

    def test_auth_failure_midway_reports_what_was_not_sent(self, capsys):
        """A 403 stops the push: applied, failed and not-sent groups are all named."""
        with RulerStub(fail_writes_from=3, fail_status=403) as stub:
            assert 1 == _run("push", "--url", stub.url)
            stored = list(stub.groups("obslog"))
        assert SHIPPED_GROUPS[:2] == stored
        err = capsys.readouterr().err
        assert f"group '{SHIPPED_GROUPS[2]}': HTTP 403: forbidden" in err
        assert (
            f"incomplete -- applied: {', '.join(SHIPPED_GROUPS[:2])}; failed: {SHIPPED_GROUPS[2]}; "
            f"not sent: {', '.join(SHIPPED_GROUPS[3:])}"
        ) in err

    def test_ruler_api_off(self, capsys):
        """A 404 page says the ruler API is not there, and nothing was sent."""
        with RulerStub(api_enabled=False) as stub:
            assert 1 == _run("push", "--url", stub.url)
        err = capsys.readouterr().err
        assert f"HTTP 404: no ruler API at {stub.url}: 404 page not found" in err
        assert "ruler.enable_api: true" in err
        assert "nothing was sent" in err

    def test_local_storage(self, capsys):
        """A ruler on read-only local storage: the first write fails with a hint, then stop."""
        with RulerStub(local_storage=True) as stub:
            assert 1 == _run("push", "--url", stub.url)
            assert 1 == sum(c.method == "POST" for c in stub.calls)
        err = capsys.readouterr().err
        assert "SetRuleGroup unsupported in rule local store -- the ruler reads rules" in err
        assert "not sent: " in err

    def test_unreachable(self, capsys):
        """No server: one line naming the URL."""
        assert 1 == _run("push", "--url", "http://127.0.0.1:9")
        assert "cannot reach http://127.0.0.1:9/loki/api/v1/rules/obslog" in capsys.readouterr().err

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--url", "loki:3100"], "--url must be an http(s) URL"),
            (["--url", "http://x", "--basic-auth-user", "u"], "go together"),
            (
                [
                    "--url",
                    "http://x",
                    "--basic-auth-user",
                    "u",
                    "--basic-auth-password-file",
                    "/nope",
                ],
                "--basic-auth-password-file: cannot read /nope",
            ),
            (
                ["--url", "http://x", "--bearer-token-file", "t", "--basic-auth-user", "u"],
                "exclude each other",
            ),
            (["--url", "http://x", "--no-shipped"], "no rule groups"),
            (["--url", "http://x", "--timer", "bad-name"], "invalid timer name"),
        ],
    )
    def test_usage_errors(self, args, message, capsys):
        """Bad options exit 2 before any request, with a message saying what is valid."""
        assert 2 == _run("push", *args)
        assert message in capsys.readouterr().err

    def test_invalid_rule_file_is_not_sent(self, stub, tmp_path, capsys):
        """A rule file that fails the lint is refused locally, naming the file and the rule."""
        path = tmp_path / "bad.yaml"
        path.write_text(
            "groups:\n  - name: bad\n    rules:\n      - record: nocolon\n        expr: x\n"
        )
        assert 2 == _run("push", "--url", stub.url, "--file", str(path))
        assert f"{path}: group 'bad': nocolon: record must be" in capsys.readouterr().err
        assert [] == stub.calls

    def test_through_the_obslog_command(self, stub, capsys):
        """`obslog loki rules push` reaches this command."""
        assert 0 == _cli.main(["loki", "rules", "push", "--url", stub.url, "--dry-run"])
        assert "would create" in capsys.readouterr().out


class TestDiffAndDelete:
    """diff shows what differs; delete removes only obslog's groups."""

    def test_diff(self, stub, capsys):
        """Changed, missing and server-only groups are listed; --exit-code reports them."""
        assert 0 == _run("push", "--url", stub.url)
        stub.rules["fake"]["obslog"]["someone-elses"] = {
            "name": "someone-elses",
            "rules": [{"record": "a:b:c", "expr": 'count_over_time({a="b"}[1m])'}],
        }
        del stub.rules["fake"]["obslog"]["obslog-runtime"]
        capsys.readouterr()
        assert 1 == _run("diff", "--url", stub.url, "--timer", "db_query", "--exit-code")
        out = capsys.readouterr().out
        assert "~ obslog/obslog-timers: differs" in out
        assert "--- server/obslog-timers" in out
        assert "-    timer: cache_get" in out
        assert "+ obslog/obslog-runtime: only here" in out
        assert "- obslog/someone-elses: only on the server" in out
        assert (
            f"{len(SHIPPED_GROUPS) - 2} equal, 1 differ, 1 only here, 1 only on the server" in out
        )
        assert 0 == _run("diff", "--url", stub.url, "--timer", "db_query")

    def test_diff_of_an_empty_server(self, stub, capsys):
        """Against an empty ruler (404 no rule groups found) every group is only here."""
        assert 0 == _run("diff", "--url", stub.url)
        assert f"0 equal, 0 differ, {len(SHIPPED_GROUPS)} only here" in capsys.readouterr().out

    def test_delete_leaves_other_groups(self, stub, capsys):
        """delete removes obslog's groups and keeps others of the namespace; --dry-run keeps all."""
        assert 0 == _run("push", "--url", stub.url)
        stub.rules["fake"]["obslog"]["someone-elses"] = {"name": "someone-elses", "rules": []}
        assert 0 == _run("delete", "--url", stub.url, "--dry-run")
        assert len(SHIPPED_GROUPS) + 1 == len(stub.groups("obslog"))
        assert 0 == _run("delete", "--url", stub.url)
        assert ["someone-elses"] == list(stub.groups("obslog"))
        deletes = [c.path for c in stub.calls if c.method == "DELETE"]
        assert "/loki/api/v1/rules/obslog/obslog-requests" in deletes
        out = capsys.readouterr().out
        assert "- obslog/obslog-alerts: deleted" in out

    def test_delete_on_ruler_without_api(self, capsys):
        """A ruler without its API: a clear error, nothing deleted."""
        with RulerStub(api_enabled=False) as stub:
            assert 1 == _run("delete", "--url", stub.url)
        assert "nothing was deleted" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# loki/scalable
# --------------------------------------------------------------------------------------------


class TestScalable:
    """loki/scalable: read, write and backend targets behind a gateway, MinIO, remote write."""

    def test_compose_config(self):
        """`docker compose config` (or docker-compose) validates the deployment offline."""
        result = compose_config(SCALABLE)
        assert 0 == result.returncode, result.stderr

    def test_targets_behind_a_gateway(self):
        """Three Loki targets from one config, a gateway routing to them, MinIO and Prometheus."""
        services = compose(SCALABLE)["services"]
        for target in ("read", "write", "backend"):
            assert f"-target={target}" in services[target]["command"]
        assert {"gateway", "minio", "prometheus"} <= set(services)
        for service in services.values():
            for volume in service.get("volumes", []):
                source = volume.split(":")[0]
                if source.startswith("."):
                    assert (SCALABLE / source).exists(), volume
        nginx = (SCALABLE / "nginx.conf").read_text()
        assert "location /loki/api/v1/push" in nginx
        assert "proxy_pass http://write:3100" in nginx
        assert "location /loki/api/v1/rules" in nginx
        assert "proxy_pass http://backend:3100" in nginx

    def test_loki_config(self):
        """Object storage in MinIO for chunks and rules, so `rules push` works; remote write."""
        config = yaml.safe_load((SCALABLE / "loki-config.yaml").read_text())
        assert "minio:9000" == config["common"]["storage"]["s3"]["endpoint"]
        assert "s3" == config["ruler_storage"]["backend"]
        assert config["ruler_storage"]["s3"]["bucket_name"]
        assert config["ruler"]["enable_api"] is True
        clients = config["ruler"]["remote_write"]["clients"]
        assert ["http://prometheus:9090/api/v1/write"] == [c["url"] for c in clients.values()]
        assert "memberlist" == config["common"]["ring"]["kvstore"]["store"]

    def test_prometheus_loads_the_slo_rules(self):
        """Prometheus takes remote writes and loads every rule file of loki/prometheus."""
        services = compose(SCALABLE)["services"]
        assert "--web.enable-remote-write-receiver" in services["prometheus"]["command"]
        config = yaml.safe_load((SCALABLE / "prometheus.yml").read_text())
        assert ["/etc/prometheus/rules/*.yaml"] == config["rule_files"]
        assert "../prometheus:/etc/prometheus/rules:ro" in services["prometheus"]["volumes"]


# --------------------------------------------------------------------------------------------
# the README's SLO quickstart
# --------------------------------------------------------------------------------------------


class TestReadmeQuickstart:
    """The README's SLO quickstart runs as written, with the ruler stand-in as Loki."""

    def test_quickstart(self, tmp_path):
        """The objectives file, `obslog loki slo` and both `rules push` commands of the README."""
        import sys

        from _readme import blocks, inline_commands, shell_lines

        from obslog.loki import slo
        from obslog.loki._slo_config import load_config

        config = next(b for b in blocks("yaml") if b.startswith("# slos.yaml\nslos:"))
        (tmp_path / "slos.yaml").write_text(config, encoding="utf-8")
        commands = [
            c for c in shell_lines() if c.startswith(("obslog loki slo", "obslog loki rules push"))
        ]
        flags = [c for c in inline_commands(("obslog",)) if c.startswith("obslog loki slo --s")]
        assert 3 == len(commands) and 1 == len(flags)
        script = str(Path(sys.executable).with_name("obslog"))
        with RulerStub() as stub:
            for command in [*commands, *flags]:
                words = command.replace("http://127.0.0.1:3100", stub.url).split()
                result = subprocess.run(
                    [script, *words[1:]],
                    cwd=tmp_path,
                    capture_output=True,
                    text=True,
                    timeout=120,
                    check=False,
                )
                assert 0 == result.returncode, (command, result.stderr)
            stored = stub.groups("obslog")
        assert ["obslog-slo-checkout-availability", "obslog-slo-checkout-latency"] == sorted(stored)
        loki, _ = slo.build(load_config(tmp_path / "slos.yaml"))
        assert [ruler.normalize(g) for g in loki["groups"]] == [
            ruler.normalize(stored[g["name"]]) for g in loki["groups"]
        ]
        written = tmp_path / "slo-rules" / "prometheus" / "obslog-slo.yaml"
        promtool = require_binary("promtool")
        check = subprocess.run(
            [promtool, "check", "rules", str(written)], capture_output=True, text=True, check=False
        )
        assert 0 == check.returncode, check.stdout + check.stderr
