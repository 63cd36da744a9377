"""The collector in-process: dead letters, taking over a dead collector's entries, poison
entries, trimmed pending entries, graceful stop, progress display, /api/stats."""

from __future__ import annotations

import io
import json
import threading
import time
from typing import Any

import pytest
import redis
from xp_messaging_helpers import bus_url, sqlite_count

from xprofiler.core.errors import DriverError
from xprofiler.core.registry import load_driver
from xprofiler.core.testing import make_trace
from xprofiler.drivers.messaging import Collector, CollectorOptions
from xprofiler.drivers.messaging.cli import Progress
from xprofiler.drivers.messaging.codec import encode

FAST = {"block": 0.05, "heartbeat": 0.05}


def _good(redis_admin: redis.Redis, stream: str, n_traces: int, spans: int = 2) -> list[Any]:
    points = [p for _ in range(n_traces) for p in make_trace(spans)]
    for fields in encode(points, entry_size=2 * spans):
        redis_admin.xadd(stream, fields)
    return points


def _ghost_reads(
    redis_admin: redis.Redis, stream: str, group: str = "xprofiler-collectors"
) -> list:
    """A collector that read entries and died: they stay pending under its name."""
    try:
        redis_admin.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.ResponseError:
        pass
    reply = redis_admin.xreadgroup(group, "ghost", {stream: ">"}, count=1000)
    return [entry_id for entry_id, _ in reply[0][1]] if reply else []


def test_malformed_entries_go_to_the_dead_letter_stream_and_never_block_the_rest(
    redis_admin: redis.Redis, bus: str, stream: str, sqlite_path: Any
) -> None:
    good_before = _good(redis_admin, stream, 5)
    bad_entries = [
        {b"v": b"1", b"n": b"1", b"p": b"{not json"},
        {b"v": b"2", b"n": b"0", b"p": b"[]"},
        {b"v": b"1", b"n": b"0"},
        {b"v": b"1", b"n": b"5", b"p": b"[]"},
        {b"v": b"1", b"p": b'"\xff\xfe"'},
        {b"v": b"1", b"p": b'{"an": "object"}'},
        {b"something": b"else entirely"},
    ]
    bad_ids = [redis_admin.xadd(stream, fields) for fields in bad_entries]
    # One entry with a single invalid point among good ones: only that point is set aside.
    mixed = make_trace(2)
    broken = dict(mixed[0], id="broken-point", timestamp="yesterday")
    mixed_id = redis_admin.xadd(
        stream,
        {b"v": b"1", b"n": b"5", b"p": json.dumps([*mixed, broken]).encode()},
    )
    good_after = _good(redis_admin, stream, 5)

    collector = Collector(bus, options=CollectorOptions(**FAST))
    try:
        collector.drain(30)
    finally:
        collector.close()

    assert sqlite_count(sqlite_path) == len(good_before) + len(mixed) + len(good_after)
    dead = redis_admin.xrange(f"{stream}:dead")
    assert [f[b"xp-dead-id"] for _, f in dead] == [*bad_ids, mixed_id]
    reasons = [f[b"xp-dead-reason"].decode() for _, f in dead]
    assert "not JSON" in reasons[0]
    assert "unknown entry format version" in reasons[1]
    assert "no 'p'" in reasons[2]
    assert "says it holds b'5' points but carries 0" in reasons[3]
    assert "not UTF-8" in reasons[4] or "not JSON" in reasons[4]
    assert "must be a JSON array" in reasons[5]
    assert "unknown entry format version (missing)" in reasons[6]
    assert "'timestamp'" in reasons[7]
    # The original fields ride along, for whoever repairs and replays them.
    assert dead[0][1][b"p"] == b"{not json"
    assert json.loads(dead[7][1][b"point"])["id"] == "broken-point"
    assert collector.counters.dead_entries == 7 and collector.counters.dead_points == 1
    assert int(redis_admin.hget(f"{stream}:stats", "dead_lettered")) == 8
    assert redis_admin.xpending(stream, "xprofiler-collectors")["pending"] == 0


def test_entries_a_dead_collector_left_pending_are_taken_over(
    redis_admin: redis.Redis, bus: str, stream: str, sqlite_path: Any
) -> None:
    points = _good(redis_admin, stream, 10)
    held = _ghost_reads(redis_admin, stream)
    assert len(held) == 10
    later = _good(redis_admin, stream, 3)
    time.sleep(0.3)
    collector = Collector(bus, options=CollectorOptions(claim_idle=0.2, **FAST))
    try:
        collector.drain(30)
    finally:
        collector.close()
    assert sqlite_count(sqlite_path) == len(points) + len(later)
    assert collector.counters.claimed == 10
    assert redis_admin.xpending(stream, "xprofiler-collectors")["pending"] == 0


def test_entries_held_by_a_live_collector_are_not_taken(
    redis_admin: redis.Redis, bus: str, stream: str
) -> None:
    _good(redis_admin, stream, 4)
    held = _ghost_reads(redis_admin, stream)
    collector = Collector(bus, options=CollectorOptions(claim_idle=30, **FAST))
    try:
        collector.ensure_group()
        threading.Timer(0.5, collector.stop).start()
        collector.run()
    finally:
        collector.close()
    assert collector.counters.claimed == 0
    pending = redis_admin.xpending_range(stream, "xprofiler-collectors", "-", "+", 100)
    assert {p["consumer"] for p in pending} == {b"ghost"}
    assert len(pending) == len(held)


def test_an_entry_delivered_too_often_is_dead_lettered(
    redis_admin: redis.Redis, bus: str, stream: str, sqlite_path: Any
) -> None:
    _good(redis_admin, stream, 1)
    (poison,) = _ghost_reads(redis_admin, stream)
    # As if collectors had died on it 20 times.
    redis_admin.xclaim(
        stream, "xprofiler-collectors", "ghost", 0, [poison], idle=60_000, retrycount=20
    )
    fine = _good(redis_admin, stream, 2)
    collector = Collector(bus, options=CollectorOptions(claim_idle=1, max_deliveries=10, **FAST))
    try:
        collector.drain(30)
    finally:
        collector.close()
    assert sqlite_count(sqlite_path) == len(fine)
    ((_, fields),) = redis_admin.xrange(f"{stream}:dead")
    assert fields[b"xp-dead-id"] == poison
    assert b"delivered 21 times" in fields[b"xp-dead-reason"]
    assert collector.counters.poison == 1


def test_pending_entries_trimmed_away_are_counted_as_lost(
    redis_admin: redis.Redis, bus: str, stream: str, sqlite_path: Any
) -> None:
    _good(redis_admin, stream, 3)
    held = _ghost_reads(redis_admin, stream)
    redis_admin.xtrim(stream, maxlen=0, approximate=False)  # the bound cut them
    kept = _good(redis_admin, stream, 2)
    time.sleep(0.25)
    collector = Collector(bus, options=CollectorOptions(claim_idle=0.2, **FAST))
    try:
        collector.drain(30)
    finally:
        collector.close()
    assert collector.counters.lost_trimmed == len(held)
    assert sqlite_count(sqlite_path) == len(kept)
    assert "trimmed from the stream before they were stored" in (
        collector.counters.last_error or ""
    )


def test_a_collector_restarted_under_its_name_finishes_its_own_pending_entries(
    redis_admin: redis.Redis, bus: str, stream: str, sqlite_path: Any
) -> None:
    points = _good(redis_admin, stream, 6)
    redis_admin.xgroup_create(stream, "xprofiler-collectors", id="0")
    redis_admin.xreadgroup("xprofiler-collectors", "worker-7", {stream: ">"}, count=100)
    collector = Collector(bus, options=CollectorOptions(name="worker-7", claim_idle=60, **FAST))
    try:
        collector.drain(30)
    finally:
        collector.close()
    assert sqlite_count(sqlite_path) == len(points)
    assert collector.counters.redelivered == 6 and collector.counters.claimed == 0


def test_stop_finishes_the_batch_in_hand(
    redis_admin: redis.Redis, bus: str, stream: str, sqlite_store: str, sqlite_path: Any
) -> None:
    points = _good(redis_admin, stream, 4)
    store = load_driver(sqlite_store)
    collector: Collector

    class StopsWhileWriting:
        url = store.url

        def notify(self, batch: Any) -> None:
            collector.stop()  # the signal arrives in the middle of a write
            store.notify(batch)

        def close(self) -> None:
            store.close()

    collector = Collector(bus, StopsWhileWriting(), CollectorOptions(**FAST))
    try:
        collector.ensure_group()
        collector.run()
    finally:
        collector.close()
        store.close()
    assert sqlite_count(sqlite_path) == len(points)
    assert redis_admin.xpending(stream, "xprofiler-collectors")["pending"] == 0


def test_a_collector_needs_a_store(redis_server: Any, stream: str) -> None:
    with pytest.raises(DriverError, match="--to"):
        Collector(bus_url(redis_server, stream))


def test_progress_on_a_terminal_rewrites_one_line(bus: str) -> None:
    collector = Collector(bus, options=CollectorOptions(**FAST))
    collector.counters.points = 12345
    out = io.StringIO()
    progress = Progress(out, interval=10, tty=True)
    progress.tick(collector)
    progress.tick(collector, final=True)
    collector.close()
    text = out.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n") and text.count("\n") == 1
    assert "12,345 points stored" in text and "points/s" in text and "pending" in text


def test_progress_elsewhere_is_a_line_per_interval(bus: str) -> None:
    collector = Collector(bus, options=CollectorOptions(**FAST))
    out = io.StringIO()
    progress = Progress(out, interval=3600, tty=False)
    progress.tick(collector)
    progress.tick(collector)  # within the interval: nothing
    progress.tick(collector, final=True)
    collector.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in out.getvalue()
    assert all("points/s" in line and "lag" in line for line in lines)


def test_the_web_viewer_shows_the_collectors_counters(
    redis_admin: redis.Redis, bus: str, stream: str
) -> None:
    from xprofiler.core.web import make_app

    points = _good(redis_admin, stream, 3)
    collector = Collector(bus, options=CollectorOptions(name="c-web", **FAST))
    collector.drain(30)
    collector.close()
    app = make_app(bus)
    status: list[str] = []
    body = b"".join(
        app(
            {"PATH_INFO": "/api/stats", "REQUEST_METHOD": "GET", "QUERY_STRING": "window=1d"},
            lambda s, h, *a: status.append(s),
        )
    )
    app.close()
    assert status == ["200 OK"], body[:300]
    data = json.loads(body)
    assert data["traces"] == 3
    store = data["store"]
    assert store["stream"] == stream
    assert store["group"]["pending"] == 0
    assert [c["name"] for c in store["collectors"]] == ["c-web"]
    assert store["collectors"][0]["points"] == len(points)


def test_a_collector_rides_out_a_redis_restart(
    redis_server: Any, stream: str, sqlite_store: str, sqlite_path: Any
) -> None:
    from xp_messaging_helpers import wait_for

    url = bus_url(redis_server, stream, sqlite_store, timeout="1s", connect_timeout="1s")
    producer = load_driver(url)
    collector = Collector(url, options=CollectorOptions(retry_max=0.2, **FAST))
    collector.ensure_group()
    runner = threading.Thread(target=collector.run, daemon=True)
    runner.start()
    try:
        before = [p for _ in range(5) for p in make_trace(3)]
        producer.notify(before)
        wait_for("the first points", lambda: sqlite_count(sqlite_path) == len(before))
        with redis_server.down():
            wait_for("the collector to notice", lambda: collector.counters.bus_errors > 0)
            assert collector.state == "bus failing"
        after = [p for _ in range(5) for p in make_trace(3)]
        producer.notify(after)
        wait_for("the points sent after the restart", lambda: sqlite_count(sqlite_path) == 60)
        assert collector.state == "running"
    finally:
        collector.stop()
        runner.join(10)
        collector.close()
        producer.close()
    assert not runner.is_alive()


class _Refusing:
    """A real sqlite store in front of which some points are refused, as a store refuses a
    value it cannot hold (a field type conflict, a key it forbids)."""

    def __init__(self, store: Any, refuse: Any) -> None:
        self.inner, self.refuse, self.url, self.calls = store, refuse, store.url, 0

    def notify(self, points: Any) -> None:
        self.calls += 1
        if any(self.refuse(p) for p in points):
            raise ValueError("field type conflict: 'name' is a string, the store wants an int")
        self.inner.notify(points)

    def close(self) -> None:
        self.inner.close()


def test_points_the_store_refuses_are_isolated_and_dead_lettered(
    redis_admin: redis.Redis, bus: str, stream: str, sqlite_store: str, sqlite_path: Any
) -> None:
    points = _good(redis_admin, stream, 40)
    poison = make_trace(1, name="poison")
    poison_id = redis_admin.xadd(stream, encode(poison, 10)[0])
    more = _good(redis_admin, stream, 40)
    store = _Refusing(load_driver(sqlite_store), lambda p: p["name"] == "poison")
    collector = Collector(bus, store, CollectorOptions(count=100, retry_max=0.05, **FAST))
    try:
        collector.drain(30)
    finally:
        collector.close()
        store.close()
    assert sqlite_count(sqlite_path) == len(points) + len(more)
    dead = redis_admin.xrange(f"{stream}:dead")
    assert len(dead) == 2  # the span's start and stop points
    for _, fields in dead:
        assert fields[b"xp-dead-id"] == poison_id
        assert b"refused by the store: ValueError: field type conflict" in fields[b"xp-dead-reason"]
        assert json.loads(fields[b"point"])["name"] == "poison"
    assert collector.counters.dead_points == 2
    assert collector.counters.points == len(points) + len(more)
    assert redis_admin.xpending(stream, "xprofiler-collectors")["pending"] == 0


def test_a_store_refusing_everything_loses_nothing(
    redis_admin: redis.Redis, bus: str, stream: str, sqlite_store: str, sqlite_path: Any
) -> None:
    points = _good(redis_admin, stream, 10)
    failing = {"on": True}
    store = _Refusing(load_driver(sqlite_store), lambda p: failing["on"])
    collector = Collector(bus, store, CollectorOptions(retry_max=0.05, **FAST))
    collector.ensure_group()
    runner = threading.Thread(target=collector.run, daemon=True)
    runner.start()
    try:
        from xp_messaging_helpers import wait_for

        wait_for("several failed attempts", lambda: collector.counters.store_errors >= 6)
        assert sqlite_count(sqlite_path) == 0
        assert redis_admin.xlen(f"{stream}:dead") == 0  # not the points' fault: nothing aside
        failing["on"] = False
        wait_for("everything stored", lambda: sqlite_count(sqlite_path) == len(points))
    finally:
        collector.stop()
        runner.join(10)
        collector.close()
        store.close()
    assert redis_admin.xlen(f"{stream}:dead") == 0
    assert redis_admin.xpending(stream, "xprofiler-collectors")["pending"] == 0
