"""Trace state lives in contextvars: concurrent asyncio tasks and threads, each with their own
trace, produce exactly their own tree; nothing leaks between them."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from xprofiler.core import profiler
from xprofiler.core.builtin.memory import MemoryDriver
from xprofiler.core.tracing import Trace, trace
from xprofiler.core.tree import Report, build_report
from xprofiler.core.uri import parse_url

TASKS = 200
THREADS = 32
STEPS = 3


@pytest.fixture
def driver() -> Iterator[MemoryDriver]:
    url = f"memory://{uuid.uuid4().hex}"
    profiler.clean()
    profiler.setup(url, service="svc", hmac_keys=["k1"], flush_interval=0.05)
    yield MemoryDriver(parse_url(url))
    profiler.clean()
    profiler.shutdown()


def shape(report: Report) -> list[Any]:
    def one(span: Any) -> list[Any]:
        return [span.name, [one(c) for c in span.children]]

    return [one(r) for r in report.roots]


def expected(i: int) -> list[Any]:
    return [
        [
            f"root-{i}",
            [[f"step-{i}-{j}", [[f"leaf-{i}-{j}", []]]] for j in range(STEPS)]
            + [[f"fan-{i}-{k}", [[f"fan-leaf-{i}-{k}", []]]] for k in range(2)],
        ]
    ]


def check(driver: MemoryDriver, bases: dict[int, str]) -> None:
    assert profiler.flush(30)
    stats = profiler.dispatcher_stats()
    assert stats["dropped"] == 0 and stats["failed_batches"] == 0
    assert len(set(bases.values())) == len(bases)
    for i, base in bases.items():
        points = driver.get_report(base)
        assert {p["base_id"] for p in points} == {base}
        report = build_report(base, points)
        assert shape(report) == expected(i), f"trace {i}"
        assert report.orphan_count == 0 and report.unfinished_count == 0
        # Every span's parent is the span it was started under.
        for span in report.spans():
            for child in span.children:
                assert child.parent_id == span.trace_id


async def aleaf(name: str) -> None:
    @trace(name)
    async def leaf() -> None:
        await asyncio.sleep(0)

    await leaf()


def test_many_asyncio_tasks_keep_their_own_trees(driver: MemoryDriver) -> None:
    async def fan(i: int, k: int) -> None:
        async with Trace(f"fan-{i}-{k}"):
            await asyncio.sleep(0)
            await aleaf(f"fan-leaf-{i}-{k}")

    async def worker(i: int, go: asyncio.Event) -> str:
        base = profiler.init("k1").get_base_id()
        await go.wait()  # start together, so the tasks really interleave
        async with Trace(f"root-{i}"):
            for j in range(STEPS):
                await asyncio.sleep(0)
                async with Trace(f"step-{i}-{j}"):
                    await asyncio.sleep(0)
                    await aleaf(f"leaf-{i}-{j}")
            # Child tasks inherit the current span: they are siblings under root, in parallel.
            await asyncio.gather(fan(i, 0), fan(i, 1))
        assert profiler.get().get_id() == base
        return base

    async def main() -> dict[int, str]:
        assert profiler.get() is None
        go = asyncio.Event()
        tasks = [asyncio.create_task(worker(i, go)) for i in range(TASKS)]
        await asyncio.sleep(0)
        go.set()
        bases = await asyncio.gather(*tasks)
        assert profiler.get() is None  # nothing leaked into the parent task
        return dict(enumerate(bases))

    check(driver, asyncio.run(main()))


def test_many_threads_keep_their_own_trees(driver: MemoryDriver) -> None:
    barrier = threading.Barrier(THREADS)
    bases: dict[int, str] = {}
    errors: list[BaseException] = []

    def leaf(name: str) -> None:
        @trace(name)
        def f() -> None:
            time.sleep(0)

        f()

    def fan(i: int, k: int) -> None:
        with Trace(f"fan-{i}-{k}"):
            leaf(f"fan-leaf-{i}-{k}")

    def worker(i: int) -> None:
        try:
            assert profiler.get() is None  # a new thread starts with no trace
            base = profiler.init("k1").get_base_id()
            barrier.wait()
            with Trace(f"root-{i}"):
                for j in range(STEPS):
                    time.sleep(0)
                    with Trace(f"step-{i}-{j}"):
                        time.sleep(0)
                        leaf(f"leaf-{i}-{j}")
                # Work handed to a pool carries the trace only with an explicit context copy.
                with ThreadPoolExecutor(2) as pool:
                    futs = [
                        pool.submit(contextvars.copy_context().run, fan, i, k) for k in range(2)
                    ]
                    for f in futs:
                        f.result()
                    assert pool.submit(profiler.get).result() is None
            bases[i] = base
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    profiler.init("k1")  # the main thread's trace must not leak into the workers
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[0]
    assert len(bases) == THREADS
    check_threads(driver, bases)


def check_threads(driver: MemoryDriver, bases: dict[int, str]) -> None:
    assert profiler.flush(30)
    for i, base in bases.items():
        report = build_report(base, driver.get_report(base))
        got = shape(report)
        root_name, children = got[0]
        steps = children[:STEPS]
        fans = sorted(children[STEPS:])  # the two fans ran in parallel in pool threads
        assert [[root_name, steps + fans]] == expected(i), f"thread {i}"
        assert len(got) == 1 and report.orphan_count == 0 and report.unfinished_count == 0


def test_a_task_started_inside_a_span_does_not_change_the_parents_stack(
    driver: MemoryDriver,
) -> None:
    async def child() -> str:
        profiler.start("child-span")  # left open on purpose: it must stay in this task
        return profiler.get().get_id()

    async def main() -> tuple[str, str, str]:
        base = profiler.init("k1").get_base_id()
        profiler.start("parent-span")
        mine = profiler.get().get_id()
        child_id = await asyncio.create_task(child())
        assert profiler.get().get_id() == mine
        profiler.stop()
        return base, mine, child_id

    base, mine, child_id = asyncio.run(main())
    assert child_id != mine
    assert profiler.flush(10)
    report = build_report(base, driver.get_report(base))
    assert shape(report) == [["parent-span", [["child-span", []]]]]
    assert report.unfinished_count == 1  # the child's span was never stopped, and is shown
