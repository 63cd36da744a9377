"""What the MongoDB driver stores, and how it reads it back, on the real test server."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pymongo
import pytest
from pymongo import monitoring

from xprofiler.core.errors import DriverError, StoreUnavailable
from xprofiler.core.points import Point, TraceFilter, summarize
from xprofiler.core.registry import load_driver
from xprofiler.core.testing import make_trace
from xprofiler.drivers.mongodb import driver as driver_module
from xprofiler.drivers.mongodb.driver import MongoDBDriver

DAY_NS = 86_400 * 10**9


@pytest.fixture
def driver(mongo_url: str) -> Iterator[MongoDBDriver]:
    drv = load_driver(mongo_url)
    yield drv
    drv.close()


def _db(admin: pymongo.MongoClient[dict[str, Any]], name: str) -> Any:
    return admin[name]


def _ids(rows: list[Any]) -> list[str]:
    return [r.base_id for r in rows]


class _Commands(monitoring.CommandListener):
    """Records the commands one client sends (pymongo's own monitoring API)."""

    def __init__(self) -> None:
        self.events: list[monitoring.CommandStartedEvent] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.events.append(event)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


# -- writes -----------------------------------------------------------------------------------
def test_a_batch_is_one_unordered_insert(mongo_url: str) -> None:
    drv = load_driver(mongo_url)
    listener = _Commands()
    drv.settings = replace(
        drv.settings, client_kwargs={**drv.settings.client_kwargs, "event_listeners": [listener]}
    )
    try:
        drv.notify(make_trace(3))  # first use: creates the indexes
        listener.events.clear()
        drv.notify([p for _ in range(50) for p in make_trace(5)])  # 500 points, 50 traces
        inserts = [e for e in listener.events if e.command_name == "insert"]
        assert [e.command["insert"] for e in inserts] == ["points", "points_traces"]
        assert all(e.command["ordered"] is False for e in inserts)
        assert len(inserts[0].command["documents"]) == 500
        assert len(inserts[1].command["documents"]) == 50  # one summary per new trace
        assert not [e for e in listener.events if e.command_name == "update"]
        assert len(listener.events) == 2

        # A trace continued in a later batch: its summary is merged with one update command.
        listener.events.clear()
        trace = make_trace(3)
        drv.notify(trace[:3])
        drv.notify(trace[3:])
        updates = [e for e in listener.events if e.command_name == "update"]
        assert len(updates) == 1 and len(updates[0].command["updates"]) == 1
        (row,) = [r for r in drv.list_traces(TraceFilter()) if r.base_id == trace[0]["base_id"]]
        assert row == summarize(trace)
    finally:
        drv.close()


def test_redelivery_stores_each_point_once(
    driver: MongoDBDriver, mongo_admin: Any, database_name: str
) -> None:
    a, b = make_trace(4), make_trace(2)
    driver.notify(a)
    driver.notify(a + b)  # a retried batch topped up with new points
    driver.notify(list(reversed(b)))
    points = _db(mongo_admin, database_name)["points"]
    assert points.count_documents({}) == len(a) + len(b)
    assert points.count_documents({"base_id": a[0]["base_id"]}) == len(a)
    rows = {r.base_id: r for r in driver.list_traces(TraceFilter())}
    assert rows[a[0]["base_id"]] == summarize(a)
    assert rows[b[0]["base_id"]] == summarize(b)


def test_retry_after_a_half_written_batch_completes_without_duplicates(
    driver: MongoDBDriver, mongo_admin: Any, database_name: str
) -> None:
    # As if an earlier attempt stored some points and then lost the connection before the
    # trace summary was written: the retry must fill the gap and duplicate nothing.
    trace = make_trace(3)
    driver.notify(trace[:1])
    points = _db(mongo_admin, database_name)["points"]
    raw = points.find_one({"_id": trace[1]["id"]})
    assert raw is None
    doc = dict(points.find_one({"_id": trace[0]["id"]}) or {})
    doc["_id"] = trace[1]["id"]
    for key in ("trace_id", "parent_id", "event", "name", "timestamp"):
        doc[key] = trace[1][key]
    points.insert_one(doc)  # stored, but not in the summary
    driver.notify(trace)
    assert points.count_documents({"base_id": trace[0]["base_id"]}) == len(trace)
    (row,) = driver.list_traces(TraceFilter())
    assert row == summarize(trace)


def test_points_round_trip_with_keys_bson_documents_cannot_hold(driver: MongoDBDriver) -> None:
    (p,) = make_trace(1)[:1]
    p["info"] = {
        "$where": "1",
        "a.b": {"": "empty key", "$in": [1]},
        "huge": 2**70,
        "neg_huge": -(2**80),
        "float": 1.0,
        "nan_text": "NaN",
        "nul": "a\x00b",
    }
    driver.notify([p])
    (got,) = driver.get_report(p["base_id"])
    assert got == p
    assert type(got["info"]["huge"]) is int and type(got["info"]["float"]) is float
    assert type(got["timestamp"]) is int


def test_points_that_can_never_be_stored_are_skipped_and_the_rest_kept(
    driver: MongoDBDriver, caplog: pytest.LogCaptureFixture
) -> None:
    good = make_trace(2)
    missing: Any = dict(good[0], id="bad-missing")
    del missing["timestamp"]
    wrong: Any = dict(good[0], id="bad-type", timestamp="yesterday")
    circular: dict[str, Any] = {}
    circular["self"] = circular
    loop: Any = dict(good[0], id="bad-json", info=circular)
    driver.notify([missing, *good, wrong, loop])  # never raises for bad points
    assert len(driver.get_report(good[0]["base_id"])) == len(good)
    assert driver.rejected_points == 3
    assert "bad-missing" in caplog.text and "bad-type" in caplog.text
    driver.notify([missing])  # a batch of only bad points is a no-op, not an error
    assert driver.rejected_points == 4


def test_concurrent_writers_of_one_trace_build_one_summary(
    mongo_url: str, mongo_admin: Any, database_name: str, server_is_ferretdb: bool
) -> None:
    # Services in several processes write points of the same trace at the same moment: the
    # first batches race to create the summary, the later ones to merge into it.
    trace = make_trace(45, services=["api", "worker", "db"])
    writers, batches = 6, 3
    drivers = [load_driver(mongo_url) for _ in range(writers)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(writers)

    def write(i: int) -> None:
        try:
            barrier.wait(10)
            for k in range(batches):
                drivers[i].notify(trace[i * batches + k :: writers * batches])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert not errors
        (row,) = drivers[0].list_traces(TraceFilter())
        assert row == summarize(trace)
        # FerretDB 1.x updates are not atomic: merges take turns under per-trace locks, and
        # no lock is left behind.
        assert drivers[0].server_features["atomic_updates"] is (not server_is_ferretdb)
        assert mongo_admin[database_name]["points_locks"].count_documents({}) == 0
    finally:
        for d in drivers:
            d.close()


def test_a_lock_left_by_a_dead_writer_expires_and_a_live_one_is_waited_for(
    driver: MongoDBDriver, mongo_admin: Any, database_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace = make_trace(3)
    driver.notify(trace[:2])
    driver.server_features["atomic_updates"] = False  # take the lock path on any server
    locks = mongo_admin[database_name]["points_locks"]
    now = dt.datetime.now(dt.timezone.utc)
    base_id = trace[0]["base_id"]

    locks.insert_one({"_id": base_id, "at": now})  # a live writer holds the trace
    monkeypatch.setattr(driver_module, "_LOCK_WAIT", 0.3)
    with pytest.raises(DriverError, match="locked by another writer"):
        driver.notify(trace[2:4])
    assert locks.count_documents({"_id": base_id}) == 1  # another writer's lock is left alone
    locks.delete_many({})

    locks.insert_one({"_id": base_id, "at": now - dt.timedelta(minutes=5)})  # a dead one
    driver.notify(trace[2:4])
    assert locks.count_documents({}) == 0

    # A lock this writer left when its connection broke between merge and unlock: taken back
    # on the next attempt instead of waiting for it to go stale.
    monkeypatch.setattr(driver_module, "_LOCK_WAIT", 5.0)
    locks.insert_one({"_id": base_id, "at": now, "owner": driver._owner})
    driver._orphan_locks.add(base_id)
    began = time.monotonic()
    driver.notify(trace[4:])
    assert time.monotonic() - began < 5.0
    (row,) = driver.list_traces(TraceFilter())
    assert row == summarize(trace)
    assert locks.count_documents({}) == 0


# -- indexes and retention ----------------------------------------------------------------------
def _index_names(col: Any) -> set[str]:
    return {ix["name"] for ix in col.list_indexes()}


def test_indexes_are_created_on_first_use(
    driver: MongoDBDriver, mongo_admin: Any, database_name: str, server_is_ferretdb: bool
) -> None:
    db = _db(mongo_admin, database_name)
    assert database_name not in mongo_admin.list_database_names()  # construction wrote nothing
    driver.list_traces(TraceFilter())
    assert "xp_trace_time" in _index_names(db["points"])
    names = _index_names(db["points_traces"])
    assert {"xp_start", "xp_service_start", "xp_name_start"} <= names
    if server_is_ferretdb:
        # FerretDB 1.x answers NotImplemented to partialFilterExpression: the driver falls
        # back to a full index and says so.
        assert driver.server_features["partial_index"] is False
        assert "xp_error_start" in names and "xp_errors" not in names
    else:
        assert driver.server_features["partial_index"] is True
        spec = next(ix for ix in db["points_traces"].list_indexes() if ix["name"] == "xp_errors")
        assert spec["partialFilterExpression"] == {"error": True}


def test_ttl_option_creates_the_retention_index(
    mongodb_server: Any, database_name: str, mongo_admin: Any, server_is_ferretdb: bool
) -> None:
    url = f"mongodb://{mongodb_server.host}:{mongodb_server.port}/{database_name}?ttl=7d"
    drv = load_driver(url)
    try:
        drv.notify(make_trace(1))
        db = _db(mongo_admin, database_name)
        if server_is_ferretdb:
            # No TTL indexes in FerretDB 1.x: a plain date index, and the driver expires.
            assert drv.server_features["ttl_index"] is False
            assert "xp_ts_date" in _index_names(db["points"])
            assert "xp_end_date" in _index_names(db["points_traces"])
        else:
            assert drv.server_features["ttl_index"] is True
            for col, field in (("points", "ts_date"), ("points_traces", "end_date")):
                spec = next(ix for ix in db[col].list_indexes() if ix["name"] == "xp_ttl")
                assert spec["expireAfterSeconds"] == 7 * 86400
                assert list(spec["key"]) == [field]
    finally:
        drv.close()


def test_traces_older_than_the_ttl_are_deleted_on_the_server(
    mongodb_server: Any, database_name: str, mongo_admin: Any
) -> None:
    url = f"mongodb://{mongodb_server.host}:{mongodb_server.port}/{database_name}?ttl=1d"
    drv = load_driver(url)
    try:
        now = time.time_ns()
        old = make_trace(2, start=now - 3 * DAY_NS)
        fresh = make_trace(2, start=now - DAY_NS // 2)
        drv.notify(old + fresh)
        drv.purge_expired()  # what the TTL monitor (or the fallback in notify) does
        assert drv.get_report(old[0]["base_id"]) == []
        assert len(drv.get_report(fresh[0]["base_id"])) == len(fresh)
        assert _ids(drv.list_traces(TraceFilter())) == [fresh[0]["base_id"]]
        points = _db(mongo_admin, database_name)["points"]
        assert points.count_documents({"base_id": old[0]["base_id"]}) == 0
    finally:
        drv.close()


def test_without_ttl_nothing_expires(driver: MongoDBDriver) -> None:
    old = make_trace(1, start=time.time_ns() - 400 * DAY_NS)
    driver.notify(old)
    assert driver.purge_expired() == (0, 0)
    assert len(driver.get_report(old[0]["base_id"])) == 2


# -- list_traces ------------------------------------------------------------------------------
@pytest.fixture
def catalogue(driver: MongoDBDriver) -> list[list[Point]]:
    """Twelve traces one second apart; odd ones also call a worker; every third one fails."""
    t0 = time.time_ns() - 3600 * 10**9
    traces = []
    for i in range(12):
        traces.append(
            make_trace(
                2 + i % 3,
                start=t0 + i * 10**9,
                services=["api", "worker"] if i % 2 else ["api"],
                name=f"req{i % 4}",
                step=(i + 1) * 1000,
                error_at=1 if i % 3 == 0 else None,
            )
        )
    driver.notify([p for t in traces for p in t])
    return traces


def test_list_traces_pages_through_everything_newest_first(
    driver: MongoDBDriver, catalogue: list[list[Point]]
) -> None:
    expected = [t[0]["base_id"] for t in reversed(catalogue)]
    seen = []
    for offset in range(0, 15, 5):
        seen += _ids(driver.list_traces(TraceFilter(limit=5, offset=offset)))
    assert seen == expected
    assert driver.list_traces(TraceFilter(limit=0)) == []
    assert [r for r in driver.list_traces(TraceFilter(limit=100))] == [
        summarize(t) for t in reversed(catalogue)
    ]


def test_list_traces_combines_filters_and_pages_filtered_rows(
    driver: MongoDBDriver, catalogue: list[list[Point]]
) -> None:
    def ids(pred: Any) -> list[str]:
        return [t[0]["base_id"] for i, t in reversed(list(enumerate(catalogue))) if pred(i, t)]

    def has(t: list[Point], key: str, value: Any) -> bool:
        return any(p[key] == value for p in t)  # type: ignore[literal-required]

    worker_errors = ids(lambda i, t: has(t, "service", "worker") and has(t, "error", True))
    assert len(worker_errors) == 2
    assert _ids(driver.list_traces(TraceFilter(service="worker", errors=True))) == worker_errors
    assert _ids(driver.list_error_traces(TraceFilter(service="worker"))) == worker_errors
    req1 = ids(lambda i, t: has(t, "name", "req1"))
    assert len(req1) == 3
    assert _ids(driver.list_traces(TraceFilter(name="req1"))) == req1
    req11 = ids(lambda i, t: has(t, "name", "req11"))  # a child span's name
    assert len(req11) == 3
    assert _ids(driver.list_traces(TraceFilter(name="req11"))) == req11
    since = catalogue[4][0]["timestamp"]
    until = catalogue[9][0]["timestamp"]
    window = ids(lambda i, t: 4 <= i <= 9)
    assert _ids(driver.list_traces(TraceFilter(since=since, until=until))) == window
    assert (
        _ids(driver.list_traces(TraceFilter(since=since, until=until, limit=2, offset=2)))
        == (window[2:4])
    )
    api_errors = ids(lambda i, t: has(t, "error", True))
    assert len(api_errors) == 4
    assert (
        _ids(driver.list_traces(TraceFilter(service="api", errors=True, offset=1)))
        == (api_errors[1:])
    )


def test_list_traces_min_duration_with_paging(
    driver: MongoDBDriver, catalogue: list[list[Point]], server_is_ferretdb: bool
) -> None:
    durations = {t[0]["base_id"]: summarize(t).duration for t in catalogue}
    cut = sorted(durations.values())[6]
    expected = [t[0]["base_id"] for t in reversed(catalogue) if durations[t[0]["base_id"]] >= cut]
    assert len(expected) >= 3
    got = _ids(driver.list_traces(TraceFilter(min_duration=cut, limit=2)))
    got += _ids(driver.list_traces(TraceFilter(min_duration=cut, limit=2, offset=2)))
    got += _ids(driver.list_traces(TraceFilter(min_duration=cut, limit=50, offset=4)))
    assert got == expected
    both = _ids(driver.list_traces(TraceFilter(min_duration=cut, service="worker")))
    assert both == [i for i in expected if any(p["service"] == "worker" for t in catalogue
                                                for p in t if p["base_id"] == i)]  # fmt: skip
    # FerretDB 1.x has no $subtract in $expr: the driver's documented fallback is in use.
    assert driver.server_features["expr"] is (not server_is_ferretdb)


# -- failures ---------------------------------------------------------------------------------
def test_a_down_server_is_store_unavailable_within_the_timeouts(unused_port: int) -> None:
    drv = load_driver(
        f"mongodb://tracer:s3cret@127.0.0.1:{unused_port}/db?serverSelectionTimeoutMS=500"
    )
    began = time.monotonic()
    for call in (lambda: drv.notify(make_trace(1)), lambda: drv.list_traces(TraceFilter())):
        with pytest.raises(StoreUnavailable) as info:
            call()
        assert "s3cret" not in str(info.value)
        assert f"127.0.0.1:{unused_port}" in str(info.value)
        assert "check that it is running" in str(info.value)
    assert time.monotonic() - began < 5
    drv.close()


def test_reads_on_an_empty_database_do_not_fail(driver: MongoDBDriver) -> None:
    assert driver.get_report(uuid.uuid4().hex) == []
    assert driver.list_traces(TraceFilter(min_duration=1)) == []
