"""
Scopes and timers under concurrency: asyncio tasks, threads, executors.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import threading
import time

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

import obslog


TIMER_NAMES = ("db_query", "cache_get", "remote_call")


def own_timers(i: int) -> dict[str, int]:
    """The timers (name -> count) that worker *i* records: its own mix, different per worker."""
    return {name: (i + k) % 3 + 1 for k, name in enumerate(TIMER_NAMES) if (i >> k) & 1 or k == 0}


class TestAsyncioTasks:
    async def test_200_tasks_see_only_their_own_values(self, captured):
        """200 concurrent tasks with interleaved timers and awaits each see only their own scope."""
        log = logging.getLogger("t.async200")
        rng = random.Random(7)
        delays = [rng.random() / 1000 for _ in range(200 * 8)]
        errors: list[str] = []

        async def worker(i: int) -> None:
            async with obslog.request_scope("GET", "/w", request_id=f"req-{i}", worker=i) as req:
                d = iter(delays[i * 8 : i * 8 + 8])
                for name, count in own_timers(i).items():
                    for _ in range(count):
                        async with obslog.timed(name):
                            await asyncio.sleep(next(d, 0) if i % 2 else 0)
                        if obslog.current_scope() is not req:
                            errors.append(f"worker {i} lost its scope")
                log.info("working", extra={"i": i})
                await asyncio.sleep(0)
                if {n: c[0] for n, c in req.timers.items()} != own_timers(i):
                    errors.append(f"worker {i} sees foreign timers {req.timers}")

        await asyncio.gather(*(worker(i) for i in range(200)))
        assert [] == errors
        lines = captured
        assert 400 == len(lines)
        for line in lines:
            i = int(line["request_id"].removeprefix("req-"))
            assert i == line["worker"]
            if line["logger"] == "obslog":
                assert own_timers(i) == {n: t["count"] for n, t in line["timings"].items()}
            else:
                assert i == line["i"]
        assert Counter({"request": 200, "working": 200}) == Counter(line["event"] for line in lines)

    async def test_scope_never_leaks_into_next_task(self, captured):
        """A scope entered inside a task is invisible to the parent and to tasks created afterwards."""

        async def enter_and_leave() -> str:
            s = obslog.request_scope()
            s.__enter__()  # left open on purpose: the task's context dies with it
            return s.request_id

        await asyncio.create_task(enter_and_leave())
        assert None is obslog.current_scope()

        async def look() -> object:
            return obslog.current_scope()

        assert None is await asyncio.create_task(look())

    async def test_child_task_inherits_but_does_not_leak_back(self, captured):
        """A task created inside a scope sees it; the child's own nested scope stays in the child."""
        async with obslog.request_scope() as req:

            async def child() -> tuple[object, object]:
                seen = obslog.current_scope()
                async with obslog.scope("job") as job:
                    pass
                return seen, job.request_id

            seen, job_request_id = await asyncio.create_task(child())
            assert req is seen
            assert req.request_id == job_request_id
            assert req is obslog.current_scope()


class TestThreads:
    def test_16_threads_see_only_their_own_values(self, captured):
        """16 threads, stepping in lock-step through their timers, each see only their own scope."""
        log = logging.getLogger("t.threads16")
        barrier = threading.Barrier(16)
        errors: list[str] = []

        def worker(i: int) -> None:
            try:
                with obslog.request_scope("GET", "/t", request_id=f"thr-{i}", worker=i) as req:
                    barrier.wait()
                    for name, count in own_timers(i).items():
                        for _ in range(count):
                            with obslog.timed(name):
                                barrier.wait()  # every thread is inside a timer at once
                            if obslog.current_scope() is not req:
                                errors.append(f"thread {i} lost its scope")
                    log.info("working", extra={"i": i})
                    if {n: c[0] for n, c in req.timers.items()} != own_timers(i):
                        errors.append(f"thread {i} sees foreign timers {req.timers}")
            except threading.BrokenBarrierError:
                errors.append(f"thread {i}: broken barrier")

        # Every thread makes the same number of barrier waits so that none is left waiting.
        steps = max(sum(own_timers(i).values()) for i in range(16))

        def padded(i: int) -> None:
            worker(i)
            for _ in range(steps - sum(own_timers(i).values())):
                try:
                    barrier.wait()
                except threading.BrokenBarrierError:
                    return

        threads = [threading.Thread(target=padded, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert [] == errors
        lines = captured
        assert 32 == len(lines)
        for line in lines:
            i = int(line["request_id"].removeprefix("thr-"))
            assert i == line["worker"]
            if line["logger"] == "obslog":
                assert own_timers(i) == {n: t["count"] for n, t in line["timings"].items()}

    def test_new_thread_does_not_see_caller_scope(self, captured):
        """A plain thread starts with an empty context: the caller's scope does not leak into it."""
        seen = []
        with obslog.request_scope():
            t = threading.Thread(target=lambda: seen.append(obslog.current_scope()))
            t.start()
            t.join()
        assert [None] == seen


class TestInContext:
    def test_thread_pool_without_wrapper_loses_scope(self, captured):
        """Without in_context a ThreadPoolExecutor worker sees no scope (what in_context is for)."""
        with ThreadPoolExecutor(max_workers=1) as pool, obslog.request_scope():
            assert None is pool.submit(obslog.current_scope).result()

    def test_thread_pool_submit(self, captured):
        """pool.submit(in_context(fn, ...)) runs fn with the caller's scope: ids, fields and timers."""
        log = logging.getLogger("t.pool")

        def fetch(order_id, *, shard):
            with obslog.timed("db_query"):
                log.info("fetched", extra={"order_id": order_id, "shard": shard})
            return obslog.current_scope()

        with ThreadPoolExecutor(max_workers=4) as pool, obslog.request_scope("GET", "/p") as req:
            futures = [pool.submit(obslog.in_context(fetch, n, shard="a")) for n in range(8)]
            assert [req] * 8 == [f.result() for f in futures]
        assert 8 == req.timers["db_query"][0]
        lines = captured
        assert {req.request_id} == {line["request_id"] for line in lines}
        assert {"/p"} == {line["route"] for line in lines}
        assert 8 == lines[-1]["timings"]["db_query"]["count"]

    def test_exception_and_return_value_pass_through(self, captured):
        """in_context returns fn's value and lets its exception reach the future."""

        def fail():
            raise KeyError("nope")

        with ThreadPoolExecutor(max_workers=1) as pool, obslog.request_scope():
            assert 3 == pool.submit(obslog.in_context(len, "abc")).result()
            with pytest.raises(KeyError):
                pool.submit(obslog.in_context(fail)).result()

    def test_scope_opened_in_worker_does_not_leak_into_next_job(self, captured):
        """A scope entered by wrapped work stays out of the next job on the same worker thread."""

        def enter_and_leave():
            obslog.request_scope().__enter__()  # never exited

        with ThreadPoolExecutor(max_workers=1) as pool:
            with obslog.request_scope():
                pool.submit(obslog.in_context(enter_and_leave)).result()
            assert None is pool.submit(obslog.current_scope).result()
            assert None is pool.submit(obslog.in_context(obslog.current_scope)).result()

    def test_same_wrapper_callable_twice(self, captured):
        """One wrapped callable can run in two threads at once (each run gets its own context copy)."""
        barrier = threading.Barrier(2)

        def work():
            barrier.wait(timeout=10)
            return obslog.current_scope()

        with ThreadPoolExecutor(max_workers=2) as pool, obslog.request_scope() as req:
            wrapped = obslog.in_context(work)
            futures = [pool.submit(wrapped), pool.submit(wrapped)]
            assert [req, req] == [f.result() for f in futures]

    async def test_run_in_executor(self, captured):
        """loop.run_in_executor(None, in_context(fn, x)) carries the scope and timers."""

        def blocking(x):
            with obslog.timed("remote_call"):
                return obslog.current_scope(), x

        loop = asyncio.get_running_loop()
        async with obslog.request_scope() as req:
            seen, x = await loop.run_in_executor(None, obslog.in_context(blocking, 5))
            plain = await loop.run_in_executor(None, obslog.current_scope)
        assert (req, 5) == (seen, x)
        assert 1 == req.timers["remote_call"][0]
        # The default executor does not copy the context by itself:
        assert None is plain

    async def test_asyncio_to_thread_works_as_is(self, captured):
        """asyncio.to_thread copies the context by itself: no wrapper needed."""
        log = logging.getLogger("t.to_thread")

        def blocking():
            with obslog.timed("db_query"):
                log.info("in thread")
            return obslog.current_scope()

        async with obslog.request_scope() as req:
            assert req is await asyncio.to_thread(blocking)
        assert 1 == req.timers["db_query"][0]
        assert [req.request_id] * 2 == [line["request_id"] for line in captured]


class TestGeneratorsHoldingScopes:
    """Issue 8, finding 8: a scope held by a suspended generator never leaks into a request."""

    def test_sync_generator_closed_in_next_request(self, captured):
        """Closed during request B, a generator's scope from request A leaves B current in B."""
        log = logging.getLogger("t.gen")

        def rows():
            with obslog.scope("job", job="export"):
                yield 1
                yield 2

        before = obslog.stats()["scope_foreign_exits"]
        with obslog.request_scope(request_id="req-a"):
            gen = rows()
            assert 1 == next(gen)
        assert None is obslog.current_scope()
        with obslog.request_scope(request_id="req-b") as b:
            gen.close()
            assert b is obslog.current_scope()
            log.info("in b")
        assert None is obslog.current_scope()
        log.info("outside")
        lines = captured
        by_event = {line["event"]: line for line in lines}
        assert "req-b" == by_event["in b"]["request_id"]
        assert "request_id" not in by_event["outside"]
        # The job's canonical line carries its own (inherited) id, not the closing request's.
        assert ("req-a", "export") == (by_event["job"]["request_id"], by_event["job"]["job"])
        assert before + 1 == obslog.stats()["scope_foreign_exits"]

    def test_request_exit_ends_scope_left_open_by_generator(self, captured):
        """A request that ends while its generator still holds a scope is not current after it."""

        def rows():
            with obslog.scope("job"):
                yield 1

        with obslog.request_scope(request_id="req-a") as a:
            gen = rows()
            next(gen)
            assert a is obslog.current_scope().parent
        assert None is obslog.current_scope()
        with obslog.request_scope(request_id="req-b") as b:
            gen.close()
            assert b is obslog.current_scope()
        requests = [line for line in captured if line["event"] == "request"]
        assert ["req-a", "req-b"] == [line["request_id"] for line in requests]

    async def test_async_generator_closed_by_another_task(self, captured):
        """aclose() from task B does not make the ended request A current in task B."""
        log = logging.getLogger("t.agen")

        async def rows():
            async with obslog.scope("job"):
                yield 1
                yield 2

        async def request_a():
            async with obslog.request_scope(request_id="req-a"):
                agen = rows()
                assert 1 == await agen.__anext__()
            return agen

        agen = await asyncio.create_task(request_a())
        before = obslog.stats()["scope_foreign_exits"]

        async def request_b():
            async with obslog.request_scope(request_id="req-b") as b:
                await agen.aclose()
                log.info("in b")
                return obslog.current_scope() is b

        assert await asyncio.create_task(request_b())
        assert None is obslog.current_scope()
        (in_b,) = [line for line in captured if line["event"] == "in b"]
        assert "req-b" == in_b["request_id"]
        assert before + 1 == obslog.stats()["scope_foreign_exits"]


class _LateName(str):
    """A timer name whose hash, when armed, first records a timer of another name."""

    armed = False

    def __hash__(self) -> int:
        if _LateName.armed:
            _LateName.armed = False
            with obslog.timed("late_name"):  # as another thread may do at this moment
                pass
        return str.__hash__(self)


class TestScopeFold:
    def test_name_added_while_the_scope_folds(self):
        """A timer name added while the scope folds its timers is kept and nothing raises."""
        with obslog.scope("batch") as batch:
            batch.emit = False
            with obslog.timed(_LateName("first")):
                pass
            _LateName.armed = True
            try:
                first = batch.timings()  # hashes "first" while folding
            finally:
                _LateName.armed = False
            counts = {name: entry[0] for name, entry in batch.timers.items()}
        assert ["first"] == list(first)
        assert {"first": 1, "late_name": 1} == counts


class TestSharedTimer:
    """Issue 8, finding 9: one module-level timed instance shared by every thread is exact."""

    def test_32_threads_2000_scopes_tiny_switch_interval(self):
        """32 threads x 2000 scopes on one instance, switching every 10 us: exact, no raise."""
        shared = obslog.timed("db_query")
        errors: list[BaseException] = []
        totals: dict[int, int] = {}
        wrong: list[tuple[int, object]] = []
        start = threading.Barrier(32)

        def worker(i: int) -> None:
            try:
                start.wait()
                with obslog.scope("batch", worker=i) as batch:
                    batch.emit = False
                    for n in range(2000):
                        with obslog.scope("job") as job:
                            job.emit = False
                            with shared:
                                if n % 4 == 0:
                                    time.sleep(0)  # let other threads in while this use is open
                                if n % 2:
                                    with shared:  # nested in itself
                                        pass
                            count = job.timers["db_query"][0]
                            if count != 1 + n % 2:
                                wrong.append((i, count))
                totals[i] = batch.timers["db_query"][0]
            except BaseException as exc:  # every escape is a failure here
                errors.append(exc)

        old = sys.getswitchinterval()
        sys.setswitchinterval(1e-5)
        try:
            threads = [threading.Thread(target=worker, args=(i,)) for i in range(32)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=300)
        finally:
            sys.setswitchinterval(old)
        assert [] == errors
        assert [] == wrong
        assert {i: 3000 for i in range(32)} == totals
        assert [None] == shared._free  # the instance is free again

    async def test_shared_instance_across_tasks_keeps_each_max(self, captured):
        """Overlapping uses in two tasks each get their own start: each scope's max is its own."""
        shared = obslog.timed("db_query")
        long_inside = asyncio.Event()

        async def long():
            async with obslog.request_scope() as req:
                with shared:
                    long_inside.set()
                    await asyncio.sleep(0.2)
                return req

        async def short():
            await long_inside.wait()
            async with obslog.request_scope() as req:
                with shared:
                    await asyncio.sleep(0)
                return req

        slow, fast = await asyncio.gather(long(), short())
        assert slow.timers["db_query"][2] >= 200.0
        assert fast.timers["db_query"][2] < 200.0

    def test_child_context_uses_instance_its_parent_holds(self, captured):
        """Work given to a thread with in_context may use the instance its caller is inside."""
        shared = obslog.timed("db_query")

        def work() -> None:
            with shared:
                pass

        # The inner use of "shared, shared" overlaps: it sits on this context's stack.
        with obslog.request_scope() as req, ThreadPoolExecutor(2) as pool, shared, shared:
            futures = [pool.submit(obslog.in_context(work)) for _ in range(4)]
            for f in futures:
                f.result()
            with shared:
                pass
        assert 7 == req.timers["db_query"][0]
        assert [None] == shared._free
        assert not shared._more
