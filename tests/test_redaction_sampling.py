"""
Redaction of secret keys on both logging paths, and sampling of canonical lines.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import logging
import random
import time
import types

import pytest
import structlog

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
    def test_default_keys_top_level(self, captured, key):
        """Well-known secret keys are redacted by default on both paths."""
        log_both(**{key: "s3cr3t"})
        for line in captured:
            assert R == line[key]
        assert "s3cr3t" not in captured.text

    @pytest.mark.parametrize("key", PLAIN_KEYS)
    def test_similar_keys_kept(self, captured, key):
        """Keys that merely contain a secret word are not redacted."""
        log_both(**{key: "visible"})
        for line in captured:
            assert "visible" == line[key]

    def test_any_depth(self, captured):
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
        std, sl = captured
        assert expected == std["request"] == sl["request"]
        assert "Bearer abc" not in captured.text

    def test_callers_value_not_mutated(self, captured):
        """Redaction copies: the application's own dict keeps its secret."""
        value = {"password": "p", "nested": {"token": "t"}}
        log_both(creds=value)
        assert {"password": "p", "nested": {"token": "t"}} == value

    def test_bound_scope_fields(self, captured):
        """Fields bound on a scope are redacted on every line of it, the canonical line included."""
        with obslog.request_scope("GET", "/r", password="p") as req:
            req.bind(session_cookie="c")
            logging.getLogger("t.redact.scope").info("inside")
        for line in captured:
            assert (R, R) == (line["password"], line["session_cookie"])

    def test_bound_scope_fields_nested(self, captured):
        """A secret nested inside a bound field is redacted too."""
        with obslog.request_scope("GET", "/r", headers={"Authorization": "Bearer abc", "Accept": "*/*"}):
            logging.getLogger("t.redact.scope2").info("inside")
        for line in captured:
            assert {"Authorization": R, "Accept": "*/*"} == line["headers"]
        assert "Bearer abc" not in captured.text

    def test_structlog_bound_and_contextvars(self, captured):
        """Values bound on a structlog logger or in structlog.contextvars are redacted."""
        structlog.contextvars.bind_contextvars(api_key="k")
        try:
            structlog.get_logger("t.redact.sl").bind(auth={"token": "t"}).info("x")
        finally:
            structlog.contextvars.clear_contextvars()
        (line,) = captured
        assert (R, {"token": R}) == (line["api_key"], line["auth"])

    def test_configurable_keys(self, captured):
        """configure(redact_keys=...) replaces the set of secret key names."""
        obslog.configure(stream=io.StringIO(), redact_keys=["ssn", "Card-Number"])
        log_both(ssn="123", card_number="4111", nested={"ssn": "1"}, password="visible now")
        for line in captured:
            assert (R, R, {"ssn": R}) == (line["ssn"], line["card_number"], line["nested"])
            assert "visible now" == line["password"]

    def test_reset_restores_default_keys(self, captured):
        """reset_defaults() brings back the default secret keys."""
        obslog.configure(stream=io.StringIO(), redact_keys=["ssn"])
        obslog.reset_defaults()
        obslog.configure(stream=io.StringIO())
        logging.getLogger("t.redact.reset").info("x", extra={"password": "p", "ssn": "1"})
        (line,) = captured
        assert (R, "1") == (line["password"], line["ssn"])



@dataclasses.dataclass
class Credentials:
    user: str
    password: str


Login = collections.namedtuple("Login", "user token")


class HeaderLike:
    """A mapping-like object that is not a Mapping (as werkzeug's Headers): items() and keys()."""

    def __init__(self, pairs):
        self._pairs = pairs

    def items(self):
        return list(self._pairs)

    def keys(self):
        return [k for k, _ in self._pairs]

    def __getitem__(self, key):
        return dict(self._pairs)[key]


def nested(depth: int, leaf) -> dict:
    """*leaf* under *depth* levels of {"a": ...}."""
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


class TestRedactionAnyContainer:
    """Issue 8, item 4: a value under a secret key is never written, whatever the container."""

    CONTAINERS = {
        "OrderedDict": lambda: collections.OrderedDict(password="s3cr3t", user="u"),
        "defaultdict": lambda: collections.defaultdict(list, password="s3cr3t", user="u"),
        "MappingProxyType": lambda: types.MappingProxyType({"password": "s3cr3t", "user": "u"}),
        "dataclass": lambda: Credentials("u", "s3cr3t"),
        "namedtuple": lambda: Login("u", "s3cr3t"),
        "mapping-like": lambda: HeaderLike([("password", "s3cr3t"), ("user", "u")]),
    }

    @pytest.mark.parametrize("kind", list(CONTAINERS))
    def test_top_level_and_nested(self, captured, kind):
        """Each kind of container, as a field and nested in a list, never shows the secret."""
        make = self.CONTAINERS[kind]
        log_both(creds=make(), listed=[make()])
        assert "s3cr3t" not in captured.text
        for line in captured:
            secret_key = "token" if kind == "namedtuple" else "password"
            assert {"user": "u", secret_key: R} == line["creds"] == line["listed"][0]

    def test_top_level_dict_subclass_as_extras(self, captured):
        """A dict subclass passed as the whole extra mapping is redacted too."""
        logging.getLogger("t.redact").info("x", extra=collections.OrderedDict(password="s3cr3t"))
        (line,) = captured
        assert R == line["password"]

    def test_multi_value_headers_keep_every_value(self, captured):
        """A mapping-like multi-dict keeps repeated keys as a list; secret ones redacted."""
        headers = HeaderLike([("Accept", "a"), ("Accept", "b"), ("Cookie", "c1"), ("Cookie", "c2")])
        log_both(headers=headers)
        for line in captured:
            assert {"Accept": ["a", "b"], "Cookie": [R, R]} == line["headers"]

    @pytest.mark.parametrize("depth", [31, 32, 40, 3000])
    def test_beyond_the_depth_limit_never_raw(self, captured, depth):
        """A secret nested past the depth limit is replaced by a marker, never written raw."""
        log_both(deep=nested(depth, {"password": "s3cr3t", "x": ["list-s3cr3t"]}))
        raw = captured.text
        assert "s3cr3t" not in raw
        assert (depth >= 31) == ("<too deep>" in raw)

    @pytest.mark.parametrize(
        "key",
        [
            "X-Api-Key", "x-api-key", "api-key", "API_KEY", "apiKey", "access_token",
            "accessToken", "refresh_token", "client_secret", "set-cookie", "Set-Cookie",
            "proxy-authorization", "Proxy-Authorization", "db.password", "private_key",
        ],
    )
    def test_key_spellings(self, captured, key):
        """Case, "-"/"_"/"." and camelCase spellings of secret keys match, at any depth."""
        log_both(**{key: "s3cr3t"}, nested={"inner": {key: "s3cr3t"}})
        assert "s3cr3t" not in captured.text

    def test_bytes_header_names(self, captured):
        """Raw ASGI-style bytes keys are matched like text keys."""
        log_both(raw={b"authorization": b"Bearer zz", b"accept": b"*/*"})
        for line in captured:
            assert {"authorization": R, "accept": "*/*"} == line["raw"]

    def test_cycle_in_container(self, captured):
        """A cycle through a mapping-like container gives "<cycle>", not an endless walk."""
        d: dict = {"password": "s3cr3t"}
        d["me"] = types.MappingProxyType(d)
        log_both(c=d)
        for line in captured:
            assert {"password": R, "me": {"password": R, "me": "<cycle>"}} == line["c"]


class TestTextScrubber:
    """Issue 8, item 5: credentials with an unambiguous shape are scrubbed from free text."""

    CASES = [
        ("postgresql://app:pw@db/x", f"postgresql://app:{R}@db/x"),
        ("redis://:s3cret@cache:6379/0", f"redis://:{R}@cache:6379/0"),
        ("amqp://guest:p%40ss@mq//", f"amqp://guest:{R}@mq//"),
        ("Authorization: Bearer eyJhbGciOi.payload.sig", f"Authorization: Bearer {R}"),
        ("bearer abcdefgh12", f"bearer {R}"),
        ("Authorization: Basic dXNlcjpwYXNz", f"Authorization: Basic {R}"),
        ("GET /cb?code=1&password=hunter2&next=/", f"GET /cb?code=1&password={R}&next=/"),
        ("url ?access_token=abc.def&x=1", f"url ?access_token={R}&x=1"),
        ("payload {'password': 'hunter2', 'user': 'u'}", f"payload {{'password': '{R}', 'user': 'u'}}"),
        ("Creds(user='u', password='hunter2')", f"Creds(user='u', password='{R}')"),
        ("[('Cookie', 'sid=1'), ('Accept', '*/*')]", f"[('Cookie', '{R}'), ('Accept', '*/*')]"),
    ]
    KEPT = [
        "user@example.com wrote",
        "see https://example.com/a?page=2",
        "basic setup done",
        "the bearer of bad news",
        "count=3 total=4",
        "ssh://git@github.com/x.git",
    ]

    @pytest.mark.parametrize(("text", "expected"), CASES)
    def test_in_message_and_values(self, captured, text, expected):
        """The shape is scrubbed in the message, a field value and a nested value, both paths."""
        logging.getLogger("t.text").info(text, extra={"v": text, "n": {"l": [text]}})
        structlog.get_logger("t.text").info(text, v=text, n={"l": [text]})
        for line in captured:
            assert (expected, expected, expected) == (line["event"], line["v"], line["n"]["l"][0])

    @pytest.mark.parametrize("text", KEPT)
    def test_ordinary_text_kept(self, captured, text):
        """Text without a credential shape is written unchanged."""
        log_both(v=text)
        for line in captured:
            assert text == line["v"]

    def test_exception_message_and_stack(self, captured):
        """exc_message and stack are scrubbed too."""
        try:
            raise ConnectionError("cannot reach postgresql://app:pw-9@db/x")
        except ConnectionError:
            logging.getLogger("t.text").exception("failed")
            structlog.get_logger("t.text").exception("failed")
        assert "pw-9" not in captured.text
        for line in captured:
            assert f"cannot reach postgresql://app:{R}@db/x" == line["exc_message"]

    def test_turned_off(self, captured):
        """configure(redact_text=False) writes text as it is; key redaction stays on."""
        obslog.configure(stream=io.StringIO(), redact_text=False)
        log_both(v="postgresql://app:pw@db/x", password="p")
        for line in captured:
            assert ("postgresql://app:pw@db/x", R) == (line["v"], line["password"])

    def test_added_patterns(self, captured):
        """redact_patterns adds patterns: the "secret" group, or the whole match, is scrubbed."""
        obslog.configure(
            stream=io.StringIO(),
            redact_patterns=[r"ssn (?P<secret>\d{3}-\d{2}-\d{4})", r"sk_live_\w+"],
        )
        log_both(v="ssn 123-45-6789 key sk_live_abc")
        for line in captured:
            assert f"ssn {R} key {R}" == line["v"]

    def test_invalid_pattern_is_a_clear_error(self):
        """An invalid pattern raises ValueError naming the setting."""
        with pytest.raises(ValueError, match="redact_patterns"):
            obslog.configure(stream=io.StringIO(), redact_patterns=["("])

    def test_reset_turns_it_back_on(self, captured):
        """reset_defaults() turns the scrubber back on, without added patterns."""
        obslog.configure(stream=io.StringIO(), redact_text=False, redact_patterns=["zz"])
        obslog.reset_defaults()
        obslog.configure(stream=io.StringIO())
        log_both(v="zz postgresql://a:b@h/x")
        for line in captured:
            assert f"zz postgresql://a:{R}@h/x" == line["v"]

    def test_console_format(self):
        """The console format is scrubbed as well."""
        stream = io.StringIO()
        obslog.configure(stream=stream, fmt="console")
        logging.getLogger("t.text").info("dsn postgresql://app:pw@db/x")
        assert f"postgresql://app:{R}@db/x" in stream.getvalue()
        assert ":pw@" not in stream.getvalue()


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
    def test_off_by_default_with_sample_rate_1(self, captured):
        """Without sampling every canonical line is kept and carries sample_rate 1."""
        run_scopes(50)
        lines = captured
        assert 50 == len(lines)
        assert {1} == {line["sample_rate"] for line in lines}

    def test_ok_lines_kept_about_one_in_n(self, captured):
        """With sample_rate N, ok lines are kept with probability 1/N and carry sample_rate N."""
        obslog.configure(stream=io.StringIO(), sample_rate=10)
        random.seed(12345)
        before = obslog.stats()["sampled_out"]
        run_scopes(4000)
        lines = captured
        # Binomial(4000, 0.1): mean 400, sd 19; the bound is more than 6 sd wide.
        assert 280 <= len(lines) <= 520
        assert {10} == {line["sample_rate"] for line in lines}
        assert 4000 - len(lines) == obslog.stats()["sampled_out"] - before

    def test_errors_always_kept(self, captured):
        """Exceptions and status >= 500 are always kept, with sample_rate 1."""
        obslog.configure(stream=io.StringIO(), sample_rate=1000)
        random.seed(1)
        run_scopes(100, fail=True)
        run_scopes(100, status=503)
        lines = captured
        assert 200 == len(lines)
        assert {("error", 1)} == {(line["outcome"], line["sample_rate"]) for line in lines}

    def test_cancelled_always_kept(self, captured):
        """A cancelled scope is not an ok line: it is always kept."""
        obslog.configure(stream=io.StringIO(), sample_rate=1000)
        for _ in range(20):
            with obslog.request_scope() as req:
                req.outcome = "cancelled"
        assert 20 == len(captured)

    def test_slow_lines_always_kept(self, captured):
        """A line at least slow_ms long is always kept, with sample_rate 1."""
        obslog.configure(stream=io.StringIO(), sample_rate=1_000_000, slow_ms=5)
        random.seed(2)
        for _ in range(3):
            with obslog.request_scope("GET", "/slow"):
                time.sleep(0.006)
        lines = captured
        assert [("/slow", 1)] * 3 == [(line["route"], line["sample_rate"]) for line in lines]
        assert all(line["duration_ms"] >= 5 for line in lines)

    def test_zero_threshold_keeps_everything(self, captured):
        """slow_ms=0 makes every line slow, so every line is kept."""
        obslog.configure(stream=io.StringIO(), sample_rate=1000, slow_ms=0)
        run_scopes(30)
        assert 30 == len(captured)

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

    def test_only_canonical_lines_are_sampled(self, captured):
        """Ordinary log lines inside a sampled scope are always written."""
        obslog.configure(stream=io.StringIO(), sample_rate=1_000_000)
        random.seed(4)
        for _ in range(10):
            with obslog.request_scope():
                logging.getLogger("t.sampled").info("kept")
        assert ["kept"] * 10 == [line["event"] for line in captured if line["logger"] == "t.sampled"]

    @pytest.mark.parametrize("rate", [0, -1, 1.5, True, "10"])
    def test_invalid_rate(self, rate):
        """sample_rate must be an int >= 1."""
        with pytest.raises(ValueError):
            obslog.configure(stream=io.StringIO(), sample_rate=rate)
