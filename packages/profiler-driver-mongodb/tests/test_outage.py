"""The server goes away mid-run: points wait in the dispatcher and arrive once when it returns."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from xprofiler import core as profiler
from xprofiler.core.dispatcher import Dispatcher
from xprofiler.core.points import TraceFilter
from xprofiler.core.registry import load_driver
from xprofiler.core.testing import make_trace


def _wait_for(cond: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


@pytest.fixture
def quick_url(mongo_url: str) -> str:
    # Shorter selection timeout so that each failed attempt during the outage is quick.
    return mongo_url + "?serverSelectionTimeoutMS=800"


@pytest.fixture
def reader(mongo_url: str) -> Iterator[Any]:
    drv = load_driver(mongo_url)
    yield drv
    drv.close()


def test_server_stopped_mid_run_buffers_then_delivers_each_point_once(
    mongodb_server: Any, quick_url: str, reader: Any, mongo_admin: Any, database_name: str
) -> None:
    d = Dispatcher(quick_url, batch_size=40, flush_interval=0.05, retry_backoff_max=0.5)
    try:
        before = [make_trace(3) for _ in range(5)]
        for p in (p for t in before for p in t):
            d.put(p)
        assert d.flush(timeout=30)
        delivered_before = d.stats()["delivered"]
        assert delivered_before == 30

        during = [make_trace(4) for _ in range(40)]  # 320 points while the server is down
        with mongodb_server.down():
            for p in (p for t in during for p in t):
                d.put(p)  # never blocks, never raises
            assert _wait_for(lambda: d.stats()["failed_batches"] >= 2)
            stats = d.stats()
            assert stats["delivered"] == delivered_before
            assert stats["queued"] == 320
            assert stats["dropped"] == 0
            assert "ServerSelectionTimeoutError" in (stats["last_error"] or "") or "reached" in (
                stats["last_error"] or ""
            )
        # The server is back (same port, same data).
        assert d.flush(timeout=60), d.stats()
        stats = d.stats()
        assert stats["delivered"] == 30 + 320
        assert stats["dropped"] == 0
    finally:
        d.close()

    for t in before + during:
        got = reader.get_report(t[0]["base_id"])
        assert sorted(p["id"] for p in got) == sorted(p["id"] for p in t)
    points = mongo_admin[database_name]["points"]
    assert points.count_documents({}) == 350
    assert len(reader.list_traces(TraceFilter(limit=1000))) == 45


def test_traced_code_never_sees_the_outage_and_overflow_is_counted(
    mongodb_server: Any, quick_url: str, reader: Any, mongo_admin: Any, database_name: str
) -> None:
    profiler.setup(quick_url, service="api", max_queue=30, batch_size=10, flush_interval=0.05)
    try:

        @profiler.trace("work")
        def work(i: int) -> int:
            return i * 2

        with mongodb_server.down():
            profiler.init("key")
            results = [work(i) for i in range(50)]  # 100 points into a queue of 30
            assert results == [i * 2 for i in range(50)]
            stats = profiler.dispatcher_stats()
            assert stats["dropped"] >= 100 - 30 - 10  # at most one batch in flight
            assert stats["delivered"] == 0
        assert profiler.flush(timeout=60)
        stats = profiler.dispatcher_stats()
        assert stats["delivered"] + stats["dropped"] == 100
        base_id = profiler.get().get_base_id()  # type: ignore[union-attr]
        profiler.clean()
    finally:
        profiler.shutdown()
    stored = mongo_admin[database_name]["points"].count_documents({})
    assert stored == stats["delivered"]
    assert len(reader.get_report(base_id)) == stored
