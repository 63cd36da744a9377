"""The traced service's side: what notify puts on the stream, the maxlen bound, Redis outages."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest
import redis
from xp_messaging_helpers import bus_url, sqlite_count

from xprofiler.core.dispatcher import Dispatcher
from xprofiler.core.errors import StoreUnavailable
from xprofiler.core.registry import load_driver
from xprofiler.core.testing import make_trace
from xprofiler.drivers.messaging import Collector, CollectorOptions


def _points(n_traces: int, spans: int = 5) -> list[Any]:
    return [p for _ in range(n_traces) for p in make_trace(spans)]


def test_a_batch_becomes_entries_of_entry_size_points(
    redis_server: Any, redis_admin: redis.Redis, stream: str
) -> None:
    drv = load_driver(bus_url(redis_server, stream, entry_size=500))
    points = _points(120)  # 1,200 points
    try:
        drv.notify(points)
    finally:
        drv.close()
    entries = redis_admin.xrange(stream)
    assert [int(f[b"n"]) for _, f in entries] == [500, 500, 200]
    assert all(f[b"v"] == b"1" for _, f in entries)
    decoded = [p for _, f in entries for p in json.loads(f[b"p"])]
    assert decoded == points


def test_an_empty_batch_writes_nothing(
    redis_server: Any, redis_admin: redis.Redis, stream: str
) -> None:
    drv = load_driver(bus_url(redis_server, stream))
    drv.notify([])
    drv.close()
    assert redis_admin.exists(stream) == 0


def test_a_point_that_is_not_json_is_refused_before_anything_is_sent(
    redis_server: Any, redis_admin: redis.Redis, stream: str
) -> None:
    drv = load_driver(bus_url(redis_server, stream))
    points = make_trace(1)
    points[0]["info"] = {"obj": object()}
    with pytest.raises(Exception, match="JSON-safe"):
        drv.notify(points)
    drv.close()
    assert redis_admin.exists(stream) == 0


def test_without_collectors_the_bound_trims_and_counts_exactly(
    redis_server: Any, redis_admin: redis.Redis, stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    drv = load_driver(bus_url(redis_server, stream, maxlen=150, entry_size=1))
    caplog.set_level(logging.WARNING)
    try:
        for _ in range(100):
            drv.notify(_points(1, spans=5))  # 10 entries per call
        length = redis_admin.xlen(stream)
        added = redis_admin.xinfo_stream(stream)["entries-added"]
        stats = drv.stats()
    finally:
        drv.close()
    assert added == 1000
    # Approximate trimming cuts whole nodes (100 entries): the bound holds within one node.
    assert 150 <= length <= 250
    assert drv.trimmed_entries == added - length
    assert stats["counters"]["trimmed_entries"] == added - length
    assert stats["producer"]["trimmed_entries"] == added - length
    assert any("passed maxlen=150" in r.getMessage() for r in caplog.records)


def test_with_a_collector_keeping_up_nothing_is_trimmed(
    redis_server: Any, redis_admin: redis.Redis, stream: str, sqlite_store: str, sqlite_path: Any
) -> None:
    url = bus_url(redis_server, stream, sqlite_store, maxlen=150, entry_size=1)
    drv = load_driver(url)
    collector = Collector(url, options=CollectorOptions(block=0.05, heartbeat=0.05))
    try:
        for _ in range(10):
            drv.notify(_points(10, spans=5))  # 100 entries: 1,000 in all, maxlen 150
            collector.drain(30)
    finally:
        collector.close()
        drv.close()
    # Collectors trim what they acknowledged, so the bound only ever cuts unstored entries.
    assert drv.trimmed_entries == 0
    assert sqlite_count(sqlite_path) == 1000
    assert redis_admin.xlen(stream) == 0


def test_redis_down_the_dispatcher_keeps_points_and_delivers_them_when_it_returns(
    redis_server: Any, redis_admin: redis.Redis, stream: str, sqlite_store: str, sqlite_path: Any
) -> None:
    url = bus_url(redis_server, stream, sqlite_store, timeout="1s", connect_timeout="1s")
    points = _points(40)
    dispatcher = Dispatcher(url, batch_size=50, flush_interval=0.05, retry_backoff_max=0.5)
    try:
        with redis_server.down():
            began = time.monotonic()
            for p in points[:200]:
                dispatcher.put(p)
            assert dispatcher.flush(1.5) is False
            stats = dispatcher.stats()
            assert stats["delivered"] == 0
            assert stats["failed_batches"] >= 1
            assert "unreachable" in (stats["last_error"] or "")
            assert time.monotonic() - began < 10  # put never blocked, notify timed out
        for p in points[200:]:
            dispatcher.put(p)
        assert dispatcher.flush(30), dispatcher.stats()
        assert dispatcher.stats()["delivered"] == len(points)
    finally:
        dispatcher.close()
    collector = Collector(url, options=CollectorOptions(block=0.05))
    try:
        collector.drain(30)
    finally:
        collector.close()
    assert sqlite_count(sqlite_path) == len(points)


def test_stats_show_the_bus_and_the_collectors(
    redis_server: Any, stream: str, sqlite_store: str
) -> None:
    url = bus_url(redis_server, stream, sqlite_store)
    drv = load_driver(url)
    try:
        drv.notify(_points(10))
        before = drv.stats()
        assert before["length"] == 1
        assert before["group"] is None  # no collector yet
        assert before["producer"] == {"entries": 1, "points": 100, "trimmed_entries": 0}
        collector = Collector(url, options=CollectorOptions(block=0.05, name="c-one"))
        collector.drain(30)
        collector.close()
        after = drv.stats()
    finally:
        drv.close()
    assert after["group"]["pending"] == 0
    assert after["group"]["lag"] == 0
    assert after["length"] == 0  # acknowledged entries are trimmed
    (record,) = after["collectors"]
    assert record["name"] == "c-one"
    assert record["points"] == 100 and record["acked"] == 1
    assert record["state"] == "stopped" and record["alive"] is False
    assert after["points_stored"] == 100
    assert after["dead_letter"]["length"] == 0


def test_stats_on_an_unreachable_bus_is_a_clear_error() -> None:
    drv = load_driver("redis://u:s3cret@127.0.0.1:1/0?connect_timeout=1s")
    try:
        with pytest.raises(StoreUnavailable) as info:
            drv.stats()
    finally:
        drv.close()
    assert "s3cret" not in str(info.value)
    assert "unreachable" in str(info.value)
