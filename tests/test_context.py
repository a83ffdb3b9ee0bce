"""
Scopes, timers, the canonical line and scope listeners (obslog._context).
"""

from __future__ import annotations

import asyncio
import http
import io
import logging
import re
import time

import pytest

import obslog

from obslog._context import on_scope_end, on_scope_start


HEX32 = re.compile(r"[0-9a-f]{32}")


@pytest.fixture(name="out")
def _out(captured):
    """The lines obslog writes, configured for "shop" (the ``captured`` fixture)."""
    return captured


class TestScope:
    def test_current_scope_inside_and_outside(self, out):
        """current_scope() is the entered scope inside the block and None outside it."""
        assert None is obslog.current_scope()
        with obslog.request_scope("GET", "/orders") as req:
            assert req is obslog.current_scope()
        assert None is obslog.current_scope()

    def test_request_id_generated_as_32_hex(self, out):
        """Without a given or inherited id, the scope generates 32 lower-case hex characters."""
        with obslog.request_scope() as first:
            pass
        with obslog.request_scope() as second:
            pass
        assert HEX32.fullmatch(first.request_id) is not None
        assert HEX32.fullmatch(second.request_id) is not None
        assert first.request_id != second.request_id

    def test_given_request_id_is_kept(self, out):
        """A request_id passed in is the id of the scope and of its lines."""
        with obslog.request_scope(request_id="edge-123") as req:
            logging.getLogger("t.given").info("inside")
        assert "edge-123" == req.request_id
        assert ["edge-123", "edge-123"] == [line["request_id"] for line in list(out)]

    def test_nested_scope_inherits_ids_and_fields(self, out):
        """A nested scope inherits request_id, trace ids and bound fields of the enclosing one."""
        with obslog.request_scope(
            "GET", "/o", request_id="outer", trace_id="a" * 32, span_id="b" * 16, tenant="t1"
        ) as outer, obslog.scope("job", job="resize") as inner:
            assert "outer" == inner.request_id
            assert ("a" * 32, "b" * 16) == (inner.trace_id, inner.span_id)
            assert {"method": "GET", "route": "/o", "tenant": "t1", "job": "resize"} == inner.fields
            assert inner is obslog.current_scope()
        assert {"method": "GET", "route": "/o", "tenant": "t1"} == outer.fields

    def test_nested_scope_own_request_id_wins(self, out):
        """An id given to the nested scope wins over the inherited one."""
        with obslog.request_scope(request_id="outer"), obslog.scope("job", request_id="inner") as inner:
            assert "inner" == inner.request_id

    def test_nesting_restores_outer_scope(self, out):
        """Leaving a nested scope makes the enclosing one current again."""
        with obslog.request_scope() as outer:
            with obslog.scope("job"):
                pass
            assert outer is obslog.current_scope()
        assert None is obslog.current_scope()

    def test_exception_restores_outer_scope(self, out):
        """A scope left by an exception still resets the context to the enclosing scope."""
        with obslog.request_scope() as outer:
            with pytest.raises(KeyError), obslog.scope("job"):
                raise KeyError("x")
            assert outer is obslog.current_scope()
        assert None is obslog.current_scope()

    async def test_async_with(self, out):
        """A scope works with ``async with`` and emits its canonical line."""
        async with obslog.request_scope("GET", "/a") as req:
            assert req is obslog.current_scope()
            await asyncio.sleep(0)
        assert None is obslog.current_scope()
        assert [req.request_id] == [line["request_id"] for line in out.canonical()]

    def test_scope_entered_twice_is_an_error(self, out):
        """A Scope object is single-use: entering it again raises RuntimeError."""
        s = obslog.scope("job")
        with s:
            pass
        with pytest.raises(RuntimeError), s:
            pass

    def test_bind_adds_fields_to_later_lines(self, out):
        """obslog.bind() adds fields to the later lines of the scope and to its canonical line."""
        log = logging.getLogger("t.bind")
        with obslog.request_scope("GET", "/b"):
            log.info("before")
            obslog.bind(user_id=42)
            log.info("after")
        before, after, canonical = list(out)
        assert "user_id" not in before
        assert 42 == after["user_id"]
        assert 42 == canonical["user_id"]

    def test_bind_outside_scope_is_noop(self, out):
        """obslog.bind() outside any scope does nothing and does not raise."""
        obslog.bind(user_id=1)
        logging.getLogger("t.bindout").info("plain")
        assert "user_id" not in out[0]

    def test_bound_field_cannot_take_schema_name(self, out):
        """A bound field named like a schema field (status, request_id) is kept as extra_<key>."""
        with obslog.request_scope(request_id="rid", status="bogus") as req:
            req.bind(request_id="evil")
        (line,) = list(out)
        assert ("rid", "bogus", "evil") == (line["request_id"], line["extra_status"], line["extra_request_id"])
        assert "status" not in line

    @pytest.mark.parametrize("kind", ["", "1job", "a b", "x" * 65, "job-name"])
    def test_bad_kind_is_value_error(self, kind):
        """A scope kind that is not a valid name is a ValueError when the scope is made."""
        with pytest.raises(ValueError, match="invalid scope kind"):
            obslog.scope(kind)

    def test_non_str_ids_are_type_error(self):
        """request_id, trace_id and span_id must be strings."""
        with pytest.raises(TypeError):
            obslog.request_scope(request_id=123)
        with pytest.raises(TypeError):
            obslog.scope("job", trace_id=b"ab")


class TestScopeValidation:
    """Issue 8, finding 1: bad values fail where they are set, and a scope never leaks."""

    @pytest.mark.parametrize(
        ("value", "error"),
        [("200", TypeError), (200.0, TypeError), (True, TypeError), (99, ValueError),
         (600, ValueError)],
    )
    def test_bad_status_fails_at_assignment_and_scope_ends(self, out, value, error):
        """A status that is not an int 100-599 raises at the assignment; the scope still ends."""
        log = logging.getLogger("t.status")
        with (
            pytest.raises(error, match="status must be an int from 100 to 599"),
            obslog.request_scope("GET", "/o") as leaked,
        ):
            leaked.status = value
        assert None is obslog.current_scope()
        log.info("after")
        with obslog.request_scope() as nxt:
            pass
        after, = [line for line in list(out) if line["event"] == "after"]
        assert "request_id" not in after
        assert leaked.request_id != nxt.request_id
        assert None is nxt.parent
        assert ["error", "ok"] == [line["outcome"] for line in out.canonical()]

    def test_status_accepts_http_status_and_none(self, out):
        """An HTTPStatus is kept as its int and None clears the status."""
        with obslog.request_scope() as req:
            req.status = http.HTTPStatus.CREATED
            assert 201 == req.status
            assert int is type(req.status)
            req.status = None
        assert "status" not in out.canonical()[0]

    def test_raising_filter_on_canonical_logger_is_counted_not_raised(self, out):
        """A filter that raises on the canonical line is counted and the outer scope comes back."""

        def boom(record):
            raise RuntimeError("filter broke")

        logging.getLogger("obslog").addFilter(boom)
        before = obslog.stats()["canonical_errors"]
        try:
            with obslog.request_scope() as outer:
                with obslog.scope("job"):
                    pass
                assert outer is obslog.current_scope()
        finally:
            logging.getLogger("obslog").removeFilter(boom)
        assert None is obslog.current_scope()
        assert before + 2 == obslog.stats()["canonical_errors"]

    @pytest.mark.parametrize(
        ("level", "expected"), [("INFO", "info"), ("warning", "warning"), (logging.ERROR, "error")]
    )
    def test_level_names_accepted(self, out, level, expected):
        """scope(level=...) takes a level name (any case) or an int."""
        with obslog.scope("job", level=level) as job:
            pass
        assert [expected] == [line["level"] for line in out.canonical("job")]
        assert isinstance(job.level, int)

    @pytest.mark.parametrize(
        ("level", "error"),
        [("LOUD", ValueError), (1.5, TypeError), (True, TypeError), (-1, ValueError),
         (b"INFO", TypeError)],
    )
    def test_bad_level_fails_at_creation(self, out, level, error):
        """An unknown level name or a non-int level fails when the scope is made, not at exit."""
        with pytest.raises(error, match="level"):
            obslog.scope("job", level=level)
        with pytest.raises(error, match="level"):
            obslog.request_scope(level=level)
        assert None is obslog.current_scope()

    def test_bad_level_assignment_fails_there(self, out):
        """Assigning a bad level to an entered scope raises at the assignment; exit still works."""
        with obslog.scope("job") as job:
            with pytest.raises(ValueError, match="unknown level name"):
                job.level = "LOUD"
            job.level = "warning"
        assert ["warning"] == [line["level"] for line in out.canonical("job")]
        assert None is obslog.current_scope()


class TestTimed:
    def test_context_manager_records_count_total_max(self, out):
        """Repeated blocks of one name add up: count, total ms and max ms."""
        with obslog.request_scope() as req:
            for _ in range(3):
                with obslog.timed("db_query"):
                    pass
        count, total, longest = req.timers["db_query"]
        assert 3 == count
        assert 0.0 <= longest <= total
        assert {"db_query"} == set(req.timings())
        assert {"ms", "count", "max_ms"} == set(req.timings()["db_query"])

    def test_sleep_is_measured(self, out):
        """A block that sleeps 5 ms records at least 5 ms."""
        with obslog.request_scope() as req, obslog.timed("remote_call"):
            time.sleep(0.005)
        assert req.timers["remote_call"][1] >= 5.0

    def test_sync_decorator(self, out):
        """As a decorator of a sync function, each call is timed and the result is returned."""

        @obslog.timed("cache_get")
        def get(key):
            """Fetch."""
            return key * 2

        with obslog.request_scope() as req:
            assert 4 == get(2)
            assert 6 == get(3)
        assert 2 == req.timers["cache_get"][0]
        assert "get" == get.__name__
        assert "Fetch." == get.__doc__

    async def test_async_decorator(self, out):
        """As a decorator of a coroutine function, the awaited call is timed, not just its creation."""

        @obslog.timed("remote_call")
        async def fetch(x):
            await asyncio.sleep(0.003)
            return x

        assert asyncio.iscoroutinefunction(fetch)
        async with obslog.request_scope() as req:
            assert "v" == await fetch("v")
        assert 1 == req.timers["remote_call"][0]
        assert req.timers["remote_call"][1] >= 3.0

    async def test_async_with_timed(self, out):
        """timed also works with ``async with``."""
        async with obslog.request_scope() as req:
            async with obslog.timed("db_query"):
                await asyncio.sleep(0)
        assert 1 == req.timers["db_query"][0]

    def test_nested_timers(self, out):
        """Nested timers of different names are both recorded; the outer includes the inner."""
        with obslog.request_scope() as req, obslog.timed("outer"):
            with obslog.timed("inner"):
                time.sleep(0.001)
        assert req.timers["outer"][1] >= req.timers["inner"][1]
        assert (1, 1) == (req.timers["outer"][0], req.timers["inner"][0])

    def test_timer_recorded_in_every_enclosing_scope(self, out):
        """A timer inside a nested scope counts in the nested scope and in each enclosing scope."""
        with obslog.request_scope() as outer:
            with obslog.scope("job") as inner, obslog.timed("db_query"):
                pass
            with obslog.timed("db_query"):
                pass
        assert 1 == inner.timers["db_query"][0]
        assert 2 == outer.timers["db_query"][0]

    def test_exception_records_time_and_propagates_unchanged(self, out):
        """A block that raises still records its time, and the very same exception propagates."""
        error = ValueError("boom")
        with obslog.request_scope() as req:
            with pytest.raises(ValueError) as caught, obslog.timed("db_query"):
                raise error
            assert error is caught.value
        assert 1 == req.timers["db_query"][0]

    def test_exception_in_decorated_function_propagates(self, out):
        """A decorated function that raises is timed and its exception propagates unchanged."""

        @obslog.timed("db_query")
        def fail():
            raise LookupError("gone")

        with obslog.request_scope() as req, pytest.raises(LookupError, match="gone"):
            fail()
        assert 1 == req.timers["db_query"][0]

    def test_outside_scope_is_noop(self, out):
        """Outside any scope timed records nothing, does not raise and writes no line."""
        with obslog.timed("db_query") as t:
            pass

        @obslog.timed("db_query")
        def work():
            return 1

        assert 1 == work()
        assert "db_query" == t.name
        assert [] == list(out)

    def test_timings_on_lines_in_scope(self, out):
        """Lines logged inside a scope carry the timings so far; the canonical line carries all."""
        log = logging.getLogger("t.timings")
        with obslog.request_scope():
            with obslog.timed("db_query"):
                pass
            log.info("mid")
            with obslog.timed("cache_get"):
                pass
        mid, canonical = list(out)
        assert {"db_query"} == set(mid["timings"])
        assert {"db_query", "cache_get"} == set(canonical["timings"])
        assert 1 == canonical["timings"]["cache_get"]["count"]

    @pytest.mark.parametrize("name", [None, 1, b"db", ["db"]])
    def test_non_str_name_is_type_error(self, name):
        """A timer name that is not a str is a TypeError where timed() is called."""
        with pytest.raises(TypeError, match="timer name must be a str"):
            obslog.timed(name)

    @pytest.mark.parametrize("name", ["", "1db", "db query", "db-query", "x" * 65, "é"])
    def test_invalid_name_is_value_error(self, name):
        """An empty or malformed timer name is a ValueError where timed() is called."""
        with pytest.raises(ValueError, match="invalid timer name"):
            obslog.timed(name)

    def test_bad_name_as_decorator_fails_at_decoration(self):
        """A bad name used as a decorator fails when the function is decorated, not when called."""
        with pytest.raises(ValueError):

            @obslog.timed("")
            def work():  # pragma: no cover - never defined
                pass

    async def test_shared_instance_in_concurrent_tasks(self, out):
        """One timed instance used by two overlapping tasks records one call in each task's scope."""
        shared = obslog.timed("db_query")
        both_inside = asyncio.Barrier(2) if hasattr(asyncio, "Barrier") else None
        if both_inside is None:
            pytest.skip("asyncio.Barrier needs Python 3.11")

        async def work():
            async with obslog.request_scope() as req:
                with shared:
                    await both_inside.wait()
                return req

        first, second = await asyncio.gather(work(), work())
        assert (1, 1) == (first.timers.get("db_query", [0])[0], second.timers.get("db_query", [0])[0])

    def test_many_uses_fold_exactly(self, out):
        """1000 uses of two names in one scope (folded every 256) keep exact counts and sane sums."""
        with obslog.request_scope() as req:
            for i in range(1000):
                with obslog.timed("db_query"):
                    if i % 2:
                        with obslog.timed("cache_get"):
                            pass
                if i == 500:
                    assert 501 == req.timers["db_query"][0]
        db_count, db_total, db_max = req.timers["db_query"]
        assert (1000, 500) == (db_count, req.timers["cache_get"][0])
        assert 0.0 < db_max <= db_total
        assert {"db_query", "cache_get"} == set(out.canonical()[0]["timings"])

    def test_longest_valid_name(self, out):
        """A 64-character name is valid."""
        name = "a" * 64
        with obslog.request_scope() as req, obslog.timed(name):
            pass
        assert [name] == list(req.timers)


class TestCanonicalLine:
    def test_exactly_one_request_line(self, out):
        """A request scope ends with exactly one line carrying the request schema."""
        log = logging.getLogger("t.canon")
        with obslog.request_scope("GET", "/orders/{id}") as req:
            with obslog.timed("db_query"):
                pass
            with obslog.timed("db_query"):
                pass
            log.info("order listed", extra={"order_count": 3})
            req.status = 200
        lines = list(out)
        (line,) = out.canonical()
        assert 2 == len(lines)
        assert {
            "timestamp", "level", "logger", "event", "service", "pid", "request_id", "method",
            "route", "status", "duration_ms", "outcome", "sample_rate", "timings",
        } == set(line)
        assert ("info", "GET", "/orders/{id}", 200, "ok", 1) == (
            line["level"], line["method"], line["route"], line["status"], line["outcome"],
            line["sample_rate"],
        )
        assert 2 == line["timings"]["db_query"]["count"]
        assert req.request_id == line["request_id"] == lines[0]["request_id"]
        assert isinstance(line["duration_ms"], float)

    def test_no_status_when_unset(self, out):
        """The status field appears only when it was set."""
        with obslog.scope("job", job="nightly"):
            pass
        (line,) = out.canonical("job")
        assert "status" not in line
        assert "nightly" == line["job"]

    def test_duration_is_measured(self, out):
        """duration_ms covers the whole scope, and the scope keeps it after exit."""
        with obslog.request_scope() as req:
            time.sleep(0.005)
        (line,) = out.canonical()
        assert line["duration_ms"] >= 5.0
        assert round(req.duration_ms, 3) == line["duration_ms"]

    def test_nested_scopes_each_emit_once(self, out):
        """Nested scopes each emit their own single canonical line, inner first."""
        with obslog.request_scope(), obslog.scope("job"):
            pass
        assert ["job", "request"] == [line["event"] for line in list(out)]

    def test_exception_gives_error_outcome_and_propagates(self, out):
        """An exception leaving the scope gives outcome error at level error, with exception fields."""
        with pytest.raises(ZeroDivisionError), obslog.request_scope() as req:
            1 / 0  # noqa: B018
        (line,) = out.canonical()
        assert ("error", "error", "ZeroDivisionError") == (line["outcome"], line["level"], line["exc_type"])
        assert "division by zero" == line["exc_message"]
        assert isinstance(req.exc, ZeroDivisionError)

    @pytest.mark.parametrize(
        ("status", "outcome", "level"),
        [(200, "ok", "info"), (404, "ok", "info"), (499, "ok", "info"), (500, "error", "error"), (503, "error", "error")],
    )
    def test_status_decides_outcome(self, out, status, outcome, level):
        """A status >= 500 makes the outcome error; lower statuses are ok."""
        with obslog.request_scope() as req:
            req.status = status
        (line,) = out.canonical()
        assert (status, outcome, level) == (line["status"], line["outcome"], line["level"])

    def test_explicit_outcome_wins(self, out):
        """An outcome set before exit is kept; cancelled logs at warning."""
        with obslog.request_scope() as req:
            req.outcome = "cancelled"
        (line,) = out.canonical()
        assert ("cancelled", "warning") == (line["outcome"], line["level"])

    async def test_cancelled_task_emits_cancelled_line(self, out):
        """An asyncio.CancelledError gives outcome cancelled, still emits the line and propagates."""
        entered = asyncio.Event()

        async def handler():
            async with obslog.request_scope("GET", "/slow"):
                with obslog.timed("remote_call"):
                    entered.set()
                    await asyncio.sleep(10)

        task = asyncio.create_task(handler())
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        (line,) = out.canonical()
        assert ("cancelled", "warning", "/slow") == (line["outcome"], line["level"], line["route"])
        assert 1 == line["timings"]["remote_call"]["count"]

    def test_base_exception_is_cancelled(self, out):
        """Another BaseException that is not an Exception (KeyboardInterrupt) also gives cancelled."""
        with pytest.raises(KeyboardInterrupt), obslog.request_scope():
            raise KeyboardInterrupt
        assert "cancelled" == out.canonical()[0]["outcome"]

    def test_level_configurable_per_scope(self, out):
        """The level argument sets the canonical line's level whatever the outcome."""
        obslog.configure(stream=io.StringIO(), level="DEBUG")
        with obslog.scope("job", level=logging.DEBUG):
            pass
        with pytest.raises(RuntimeError), obslog.scope("job", level=logging.CRITICAL):
            raise RuntimeError
        assert ["debug", "critical"] == [line["level"] for line in out.canonical("job")]

    def test_level_below_threshold_suppresses_line(self, out):
        """A canonical line below the logger's level is filtered like any other record."""
        with obslog.scope("job", level=logging.DEBUG):
            pass
        assert [] == list(out)

    def test_logger_name_configurable(self, out):
        """configure(canonical_logger=...) changes the logger of canonical lines."""
        obslog.configure(stream=io.StringIO(), canonical_logger="shop.access")
        with obslog.request_scope():
            pass
        (line,) = list(out)
        assert ("shop.access", "request") == (line["logger"], line["event"])

    def test_canonical_logger_made_again_gets_the_lines(self, out):
        """A canonical logger dropped from logging's registry and made again gets the next line."""
        manager = logging.Logger.manager
        with obslog.request_scope():
            pass
        old = manager.loggerDict.pop("obslog")
        records: list[logging.LogRecord] = []
        handler = logging.Handler()
        handler.emit = records.append  # type: ignore[method-assign]
        try:
            new = logging.getLogger("obslog")
            new.addHandler(handler)
            new.propagate = False
            with obslog.request_scope():
                pass
        finally:
            manager.loggerDict["obslog"] = old
        assert ["request"] == [record.getMessage() for record in records]
        assert ["request"] == [line["event"] for line in out]

    def test_canonical_logger_level_can_silence_it(self, out):
        """The canonical logger is a normal stdlib logger: its level filters canonical lines."""
        obslog.configure(stream=io.StringIO(), canonical_logger="t.quiet_access")
        logging.getLogger("t.quiet_access").setLevel(logging.ERROR)
        with obslog.request_scope():
            pass
        with pytest.raises(ValueError), obslog.request_scope():
            raise ValueError
        assert ["error"] == [line["outcome"] for line in list(out)]

    def test_emit_false_suppresses_line(self, out):
        """Setting emit=False before exit writes no canonical line."""
        with obslog.request_scope() as req:
            req.emit = False
        assert [] == list(out)

    def test_exit_without_handler_does_not_raise(self):
        """With no configuration at all, leaving a scope never raises."""
        with obslog.request_scope() as req:
            req.status = 200
        assert "ok" == req.outcome


class TestModules:
    def test_old_and_public_paths(self):
        """timed lives in obslog._timers and is still importable from obslog._context."""
        import obslog._context
        import obslog._timers

        assert obslog.timed is obslog._timers.timed is obslog._context.timed
        assert obslog.on_scope_end is obslog._context.on_scope_end
        assert obslog.on_scope_start is obslog._context.on_scope_start
        with pytest.raises(AttributeError):
            obslog._context.no_such_name  # noqa: B018


class TestListeners:
    def test_start_and_end_listeners(self, out):
        """Start listeners see the entered scope; end listeners run after it is reset."""
        seen = []
        remove_start = on_scope_start(lambda s: seen.append(("start", s.kind, obslog.current_scope() is s)))
        remove_end = on_scope_end(lambda s: seen.append(("end", s.outcome, obslog.current_scope())))
        try:
            with obslog.request_scope():
                pass
        finally:
            remove_start()
            remove_end()
        assert [("start", "request", True), ("end", "ok", None)] == seen

    def test_unregister(self, out):
        """The callable returned by on_scope_end unregisters the listener."""
        seen = []
        remove = on_scope_end(seen.append)
        with obslog.request_scope():
            pass
        remove()
        with obslog.request_scope():
            pass
        assert 1 == len(seen)

    def test_raising_listener_is_counted(self, out):
        """A listener that raises is counted in listener_errors; the scope and its line are unaffected."""

        def broken(scope):
            raise RuntimeError("listener bug")

        before = obslog.stats()["listener_errors"]
        removes = [on_scope_start(broken), on_scope_end(broken)]
        try:
            with obslog.request_scope() as req:
                req.status = 200
        finally:
            for remove in removes:
                remove()
        assert 2 == obslog.stats()["listener_errors"] - before
        assert ["ok"] == [line["outcome"] for line in out.canonical()]

    def test_end_listener_fires_when_emit_is_off(self, out):
        """on_scope_end fires even when the canonical line is suppressed."""
        seen = []
        remove = on_scope_end(seen.append)
        try:
            with obslog.request_scope() as req:
                req.emit = False
        finally:
            remove()
        assert [req] == seen

    def test_non_callable_listener_is_type_error(self):
        """Registering something that is not callable is a TypeError."""
        with pytest.raises(TypeError):
            on_scope_end("not callable")
