"""
Redaction of secret keys on both logging paths, and sampling of canonical lines.
"""

from __future__ import annotations

import io
import logging
import random
import time

import pytest
import structlog

from _lines import parse

import obslog

from obslog._context import on_scope_end


@pytest.fixture(autouse=True)
def _restore_random():
    """Put the random module's state back after each test (sampling draws from it)."""
    state = random.getstate()
    yield
    random.setstate(state)


R = "[REDACTED]"
SECRET_KEYS = [
    "password", "authorization", "Authorization", "cookie", "set-cookie", "token", "secret",
    "api_key", "X-Api-Key", "db_password", "access_token", "client_secret",
]
PLAIN_KEYS = ["token_count", "passwords_checked", "user", "author", "cookies_enabled"]


def log_both(**fields) -> None:
    """Log one event with *fields* through stdlib and through structlog."""
    logging.getLogger("t.redact").info("event", extra=fields)
    structlog.get_logger("t.redact").info("event", **fields)


class TestRedaction:
    @pytest.mark.parametrize("key", SECRET_KEYS)
    def test_default_keys_top_level(self, sio, key):
        """Well-known secret keys are redacted by default on both paths."""
        log_both(**{key: "s3cr3t"})
        for line in parse(sio):
            assert R == line[key]
        assert "s3cr3t" not in sio.getvalue()

    @pytest.mark.parametrize("key", PLAIN_KEYS)
    def test_similar_keys_kept(self, sio, key):
        """Keys that merely contain a secret word are not redacted."""
        log_both(**{key: "visible"})
        for line in parse(sio):
            assert "visible" == line[key]

    def test_any_depth(self, sio):
        """Secret keys are redacted at any depth, inside dicts, lists and tuples, on both paths."""
        value = {
            "headers": {"Authorization": "Bearer abc", "Accept": "json"},
            "items": [{"token": "t1", "id": 1}, ({"secret": "s"},)],
            "deep": {"a": {"b": {"c": {"password": "p"}}}},
        }
        log_both(request=value)
        expected = {
            "headers": {"Authorization": R, "Accept": "json"},
            "items": [{"token": R, "id": 1}, [{"secret": R}]],
            "deep": {"a": {"b": {"c": {"password": R}}}},
        }
        std, sl = parse(sio)
        assert expected == std["request"] == sl["request"]
        assert "Bearer abc" not in sio.getvalue()

    def test_callers_value_not_mutated(self, sio):
        """Redaction copies: the application's own dict keeps its secret."""
        value = {"password": "p", "nested": {"token": "t"}}
        log_both(creds=value)
        assert {"password": "p", "nested": {"token": "t"}} == value

    def test_bound_scope_fields(self, sio):
        """Fields bound on a scope are redacted on every line of it, the canonical line included."""
        with obslog.request_scope("GET", "/r", password="p") as req:
            req.bind(session_cookie="c")
            logging.getLogger("t.redact.scope").info("inside")
        for line in parse(sio):
            assert (R, R) == (line["password"], line["session_cookie"])

    def test_bound_scope_fields_nested(self, sio):
        """A secret nested inside a bound field is redacted too."""
        with obslog.request_scope("GET", "/r", headers={"Authorization": "Bearer abc", "Accept": "*/*"}):
            logging.getLogger("t.redact.scope2").info("inside")
        for line in parse(sio):
            assert {"Authorization": R, "Accept": "*/*"} == line["headers"]
        assert "Bearer abc" not in sio.getvalue()

    def test_structlog_bound_and_contextvars(self, sio):
        """Values bound on a structlog logger or in structlog.contextvars are redacted."""
        structlog.contextvars.bind_contextvars(api_key="k")
        try:
            structlog.get_logger("t.redact.sl").bind(auth={"token": "t"}).info("x")
        finally:
            structlog.contextvars.clear_contextvars()
        (line,) = parse(sio)
        assert (R, {"token": R}) == (line["api_key"], line["auth"])

    def test_configurable_keys(self):
        """configure(redact_keys=...) replaces the set of secret key names."""
        stream = io.StringIO()
        obslog.configure(stream=stream, redact_keys=["ssn", "Card-Number"])
        log_both(ssn="123", card_number="4111", nested={"ssn": "1"}, password="visible now")
        for line in parse(stream):
            assert (R, R, {"ssn": R}) == (line["ssn"], line["card_number"], line["nested"])
            assert "visible now" == line["password"]

    def test_reset_restores_default_keys(self):
        """reset_defaults() brings back the default secret keys."""
        obslog.configure(stream=io.StringIO(), redact_keys=["ssn"])
        obslog.reset_defaults()
        stream = io.StringIO()
        obslog.configure(stream=stream)
        logging.getLogger("t.redact.reset").info("x", extra={"password": "p", "ssn": "1"})
        (line,) = parse(stream)
        assert (R, "1") == (line["password"], line["ssn"])


def run_scopes(n: int, *, status: int = 200, fail: bool = False) -> None:
    for _ in range(n):
        try:
            with obslog.request_scope("GET", "/s") as req:
                req.status = status
                if fail:
                    raise ValueError("boom")
        except ValueError:
            pass


class TestSampling:
    def test_off_by_default_with_sample_rate_1(self, sio):
        """Without sampling every canonical line is kept and carries sample_rate 1."""
        run_scopes(50)
        lines = parse(sio)
        assert 50 == len(lines)
        assert {1} == {line["sample_rate"] for line in lines}

    def test_ok_lines_kept_about_one_in_n(self):
        """With sample_rate N, ok lines are kept with probability 1/N and carry sample_rate N."""
        stream = io.StringIO()
        obslog.configure(stream=stream, sample_rate=10)
        random.seed(12345)
        before = obslog.stats()["sampled_out"]
        run_scopes(4000)
        lines = parse(stream)
        # Binomial(4000, 0.1): mean 400, sd 19; the bound is more than 6 sd wide.
        assert 280 <= len(lines) <= 520
        assert {10} == {line["sample_rate"] for line in lines}
        assert 4000 - len(lines) == obslog.stats()["sampled_out"] - before

    def test_errors_always_kept(self):
        """Exceptions and status >= 500 are always kept, with sample_rate 1."""
        stream = io.StringIO()
        obslog.configure(stream=stream, sample_rate=1000)
        random.seed(1)
        run_scopes(100, fail=True)
        run_scopes(100, status=503)
        lines = parse(stream)
        assert 200 == len(lines)
        assert {("error", 1)} == {(line["outcome"], line["sample_rate"]) for line in lines}

    def test_cancelled_always_kept(self):
        """A cancelled scope is not an ok line: it is always kept."""
        stream = io.StringIO()
        obslog.configure(stream=stream, sample_rate=1000)
        for _ in range(20):
            with obslog.request_scope() as req:
                req.outcome = "cancelled"
        assert 20 == len(parse(stream))

    def test_slow_lines_always_kept(self):
        """A line at least slow_ms long is always kept, with sample_rate 1."""
        stream = io.StringIO()
        obslog.configure(stream=stream, sample_rate=1_000_000, slow_ms=5)
        random.seed(2)
        for _ in range(3):
            with obslog.request_scope("GET", "/slow"):
                time.sleep(0.006)
        lines = parse(stream)
        assert [("/slow", 1)] * 3 == [(line["route"], line["sample_rate"]) for line in lines]
        assert all(line["duration_ms"] >= 5 for line in lines)

    def test_zero_threshold_keeps_everything(self):
        """slow_ms=0 makes every line slow, so every line is kept."""
        stream = io.StringIO()
        obslog.configure(stream=stream, sample_rate=1000, slow_ms=0)
        run_scopes(30)
        assert 30 == len(parse(stream))

    def test_end_listener_sees_sampled_out_scopes(self):
        """on_scope_end fires for every scope, sampled out or not."""
        obslog.configure(stream=io.StringIO(), sample_rate=1_000_000)
        random.seed(3)
        seen = []
        remove = on_scope_end(seen.append)
        try:
            run_scopes(25)
        finally:
            remove()
        assert 25 == len(seen)

    def test_only_canonical_lines_are_sampled(self, sio):
        """Ordinary log lines inside a sampled scope are always written."""
        obslog.configure(stream=sio, sample_rate=1_000_000)
        random.seed(4)
        for _ in range(10):
            with obslog.request_scope():
                logging.getLogger("t.sampled").info("kept")
        assert ["kept"] * 10 == [line["event"] for line in parse(sio) if line["logger"] == "t.sampled"]

    @pytest.mark.parametrize("rate", [0, -1, 1.5, True, "10"])
    def test_invalid_rate(self, rate):
        """sample_rate must be an int >= 1."""
        with pytest.raises(ValueError):
            obslog.configure(stream=io.StringIO(), sample_rate=rate)
