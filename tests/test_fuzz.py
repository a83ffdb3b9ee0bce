"""
Property-based fuzzing of the promise "bad input never breaks the application, secrets never leak".

Hypothesis draws ``extra``/keyword dicts with any keys (LogRecord attributes, obslog's own fields,
empty, private, non-string through structlog) and values (every built-in container, sets, Enums,
dataclasses, namedtuples, mappings that are not dicts, bytes, NaN/inf/-0.0, huge ints, Decimal,
datetime, objects whose ``__repr__``/``__str__`` raise, cycles, nesting 3000 deep), messages with
control characters, line separators and lone surrogates, and ``%`` arguments that may not match.
Each example is logged through both paths (stdlib, structlog) with both encoders (orjson, the
standard library) inside a request scope, and each of the four lines must be exactly one line of
valid JSON without ``NaN``/``Infinity`` tokens, carry the scope's ``request_id``, and not contain
any value that was under a secret key.

CI runs a bounded number of examples; set ``OBSLOG_FUZZ_EXAMPLES`` (e.g. 5000) for a longer run.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import enum
import io
import json
import logging
import os
import types

import pytest
import structlog

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import obslog

from obslog import _json
from obslog._schema import BOUND_RESERVED, LOG_RECORD_KEYS
from obslog.processors import BoundLogger, render_to_stdlib


EXAMPLES = int(os.environ.get("OBSLOG_FUZZ_EXAMPLES", "60"))
MARK = "S3CR3TMARK"
RID = "fuzz-request-1"
SECRET_KEYS = [
    "password", "Authorization", "X-Api-Key", "set-cookie", "access_token", "clientSecret",
    "Proxy-Authorization", "db.password", "Cookie",
]


class Color(enum.Enum):
    RED = "red"
    BLUE = 2


class Level(enum.IntEnum):
    LOW = 1


@dataclasses.dataclass
class Point:
    x: object
    y: object


@dataclasses.dataclass(frozen=True)
class Creds:
    user: str
    password: str


Pair = collections.namedtuple("Pair", "left right")
Login = collections.namedtuple("Login", "user token")


class BrokenRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    __str__ = __repr__


class BrokenStr:
    def __str__(self) -> str:
        raise RuntimeError("no str")


class HeaderLike:
    """Mapping-like but not a Mapping, as werkzeug's Headers."""

    def __init__(self, pairs: list) -> None:
        self._pairs = pairs

    def items(self) -> list:
        return list(self._pairs)

    def keys(self) -> list:
        return [k for k, _ in self._pairs]

    def __getitem__(self, key: object) -> object:
        return dict(self._pairs)[key]


def make_cycle() -> list:
    """A list and a dict that contain each other."""
    lst: list = [1]
    d: dict = {"l": lst}
    lst.append(d)
    return lst


def make_deep() -> list:
    """A list nested 3000 deep."""
    value: list = []
    for _ in range(3000):
        value = [value]
    return value


def with_secret(kind: int, key: str) -> object:
    """A container that holds MARK under the secret *key*."""
    makers = [
        lambda: {key: MARK, "ok": 1},
        lambda: collections.OrderedDict([(key, MARK)]),
        lambda: collections.defaultdict(list, {key: MARK}),
        lambda: types.MappingProxyType({key: [MARK, {"x": MARK}]}),
        lambda: HeaderLike([(key, MARK), ("Accept", "*/*")]),
        lambda: Creds("u", MARK),
        lambda: Login("u", MARK),
    ]
    return makers[kind % len(makers)]()


KEYS = (
    st.sampled_from(sorted(LOG_RECORD_KEYS | BOUND_RESERVED))
    | st.sampled_from(["", "_private", "extra_request_id", "extra_extra_level", "obslog_error"])
    | st.text(max_size=8)
)
HASHABLE = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=6)
    | st.sampled_from([Color.RED, Color.BLUE, Level.LOW])
    | st.builds(Pair, st.integers(), st.text(max_size=3))
)
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**64, max_value=2**200)
    | st.floats()
    | st.sampled_from([float("nan"), float("inf"), float("-inf"), -0.0])
    | st.text()
    | st.sampled_from(["\u2028", "\u2029", "\x85", "\ud800", "a\x00b\x1bc", "\r\n"])
    | st.binary(max_size=8)
    | st.decimals(allow_nan=True)
    | st.datetimes()
    | st.sampled_from([Color.RED, Color.BLUE, Level.LOW, dt.date(2026, 1, 2)])
    | st.builds(BrokenRepr)
    | st.builds(BrokenStr)
    | st.builds(make_cycle)
    | st.builds(make_deep)
)
SECRET_HOLDERS = st.builds(with_secret, st.integers(0, 6), st.sampled_from(SECRET_KEYS))


def _containers(inner: st.SearchStrategy) -> st.SearchStrategy:
    return (
        st.lists(inner, max_size=3)
        | st.lists(inner, max_size=3).map(tuple)
        | st.sets(HASHABLE, max_size=3)
        | st.frozensets(HASHABLE, max_size=3)
        | st.dictionaries(KEYS | st.integers(), inner, max_size=3)
        | st.dictionaries(st.text(max_size=4), inner, max_size=3).map(collections.OrderedDict)
        | st.dictionaries(st.text(max_size=4), inner, max_size=3).map(types.MappingProxyType)
        | st.builds(Point, inner, inner)
        | st.builds(Pair, inner, inner)
    )


# Values that may hold a secret under a secret key somewhere inside (for fields), and values that
# do not (for % arguments: text formatted into the message is covered by the text scrubber only,
# see the README).
VALUES = st.recursive(LEAVES | SECRET_HOLDERS, _containers, max_leaves=12)
PLAIN_VALUES = st.recursive(LEAVES, _containers, max_leaves=12)
FIELDS = st.dictionaries(KEYS, VALUES, max_size=5) | st.dictionaries(
    st.sampled_from(SECRET_KEYS), st.just(MARK) | VALUES, min_size=1, max_size=2
)
MESSAGES = (
    st.text()
    | st.sampled_from(["%s %d", "%(x)s", "100%", "%s", "a\u2028b", "bad \ud800", "nul\x00"])
    | st.builds(BrokenStr)
)
ARGS = st.lists(PLAIN_VALUES, max_size=2).map(tuple)
# Non-string keys can only reach a structlog event dict through a processor.
ODD_KEYS = st.dictionaries(
    st.integers() | st.none() | st.builds(Pair, st.integers(), st.integers()) | st.just(b"k"),
    VALUES,
    max_size=2,
)
NAME = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)


@pytest.fixture(name="target")
def _target():
    """A logger of its own writing through obslog's formatter, not propagating to the root."""
    obslog.configure(stream=io.StringIO(), service="fuzz")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(obslog.JsonFormatter())
    logger = logging.getLogger("fuzz.target")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger, handler, stream
    logger.handlers[:] = []
    logger.propagate = True


def check(text: str) -> None:
    """*text* is exactly one JSON line with the scope's id, no NaN/Infinity and no secret."""
    assert text.endswith("\n")
    assert 1 == len(text.splitlines())

    def reject(token: str) -> None:
        raise ValueError(f"not JSON: {token}")

    line = json.loads(text, parse_constant=reject)
    assert RID == line["request_id"]
    assert MARK not in text


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(
    message=MESSAGES,
    args=ARGS,
    extras=FIELDS,
    bound=st.dictionaries(NAME, VALUES, max_size=3),
    structlog_bound=FIELDS,
    odd=ODD_KEYS,
)
def test_any_input_gives_one_safe_line(target, message, args, extras, bound, structlog_bound, odd):
    """Any fields, message and arguments give one valid, secret-free line on every path."""
    logger, handler, stream = target
    # pytest adds its capture handlers to loggers between fixture setup and the test's call.
    logger.handlers[:] = [handler]

    def inject(_logger, _method, event_dict):
        event_dict.update(odd)
        return event_dict

    slog = structlog.wrap_logger(
        logger,
        processors=[structlog.contextvars.merge_contextvars, inject, render_to_stdlib],
        wrapper_class=BoundLogger,
    )
    keywords = {k: v for k, v in extras.items() if k != "event"}
    safe_bound = {k: v for k, v in bound.items() if k not in BOUND_RESERVED}
    for use_orjson in (True, False):
        _json.use_orjson(use_orjson)
        with obslog.request_scope("GET", "/fuzz", request_id=RID) as scope:
            scope.bind(**safe_bound)
            for emit in (
                lambda: logger.info(message, *args, extra=extras),
                lambda: slog.bind(**{k: v for k, v in structlog_bound.items() if k != "event"})
                .info(message, *args, **keywords),
            ):
                stream.seek(0)
                stream.truncate()
                emit()
                check(stream.getvalue())
