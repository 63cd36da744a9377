"""Real processes end to end: a traced service -> Redis stream -> `profiler collect` -> store ->
`profiler trace show` through the bus URI. Collectors killed (SIGKILL), stopped (SIGTERM),
sharing the stream, and a store that goes away and comes back."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import redis
from xp_messaging_helpers import (
    bus_url,
    run_cli,
    run_service,
    sqlite_count,
    start_collector,
    stop,
    wait_for,
)

from xprofiler.core.registry import get_driver_class, load_driver
from xprofiler.core.testing import make_trace

GROUP = "xprofiler-collectors"


def _expected_points(requests: int) -> int:
    # Per request: wsgi, rpc, cache, db; every tenth also a failing "charge".
    return requests * 8 + len(range(0, requests, 10)) * 2


def _collectors(redis_admin: redis.Redis, stream: str) -> dict[str, dict[str, Any]]:
    raw = redis_admin.hgetall(f"{stream}:collectors")
    return {k.decode(): json.loads(v) for k, v in raw.items()}


def _pending(redis_admin: redis.Redis, stream: str) -> int:
    return int(redis_admin.xpending(stream, GROUP)["pending"])


def _stored_ids(path: Path) -> list[str]:
    conn = sqlite3.connect(str(path))
    try:
        return [row[0] for row in conn.execute("SELECT id FROM points")]
    finally:
        conn.close()


def test_service_to_stream_to_collector_to_store_to_report(
    bus: str, redis_admin: redis.Redis, stream: str, sqlite_path: Path, tmp_path: Path
) -> None:
    log = tmp_path / "collector.log"
    proc = start_collector("--from", bus, "--progress-interval", "0.2s", log=log)
    try:
        result = run_service(bus, 30)
        expected = _expected_points(30)
        assert result["stats"]["delivered"] == expected
        wait_for("every point stored", lambda: sqlite_count(sqlite_path) == expected)

        # The CLI reads through the very URI the service publishes to.
        show = run_cli("trace", "show", result["ids"][0], "--connection-string", bus)
        assert show.returncode == 0, show.stderr
        for name in ("wsgi", "rpc", "cache", "db", "charge", "card declined"):
            assert name in show.stdout
        listing = run_cli("trace", "list", "--json", "--limit", "100", "--connection-string", bus)
        assert listing.returncode == 0, listing.stderr
        assert {row["base_id"] for row in json.loads(listing.stdout)} == set(result["ids"])
    finally:
        code = stop(proc)
    assert code == 0, log.read_text()
    lines = log.read_text().splitlines()
    assert any("points/s" in line and "lag" in line for line in lines[:-1])
    assert f"{expected:,} points stored" in lines[-1]
    assert _pending(redis_admin, stream) == 0
    assert redis_admin.xlen(stream) == 0  # acknowledged entries are trimmed


def test_store_down_nothing_is_acknowledged_and_everything_arrives_when_it_returns(
    redis_server: Any, redis_admin: redis.Redis, mongodb_server: Any, stream: str, tmp_path: Path
) -> None:
    # The networked store: profiler-driver-mongodb, installed from its path by the nox session.
    get_driver_class("mongodb")
    store = (
        f"mongodb://{mongodb_server.host}:{mongodb_server.port}/xp_{uuid.uuid4().hex[:12]}"
        "?serverSelectionTimeoutMS=1000"
    )
    bus = bus_url(redis_server, stream, store)
    log = tmp_path / "collector.log"
    proc = start_collector(
        "--from", bus, "--retry-max", "0.5s", "--claim-idle", "2s", "--progress-interval", "1s",
        log=log,
    )  # fmt: skip
    bus_driver = load_driver(bus)
    try:
        first = run_service(bus, 10)
        wait_for(
            "the first traces stored in MongoDB",
            lambda: bus_driver.stats()["points_stored"] == _expected_points(10),
        )
        show = run_cli("trace", "show", first["ids"][-1], "--connection-string", bus)
        assert show.returncode == 0 and "wsgi" in show.stdout, show.stderr

        with mongodb_server.down():
            second = run_service(bus, 20)
            entries = redis_admin.xinfo_stream(stream)["entries-added"]

            def holding() -> bool:
                s = bus_driver.stats()
                (rec,) = s["collectors"]
                return s["group"]["lag"] == 0 and rec["store_errors"] > 0

            wait_for("the collector to read everything and hit the store error", holding)
            held = _pending(redis_admin, stream)
            acked = bus_driver.stats()["collectors"][0]["acked"]
            assert held > 0
            time.sleep(1.5)  # several retries later: still nothing acknowledged
            assert _pending(redis_admin, stream) == held
            assert bus_driver.stats()["collectors"][0]["acked"] == acked
            assert acked + held == entries

        total = _expected_points(10) + _expected_points(20)
        wait_for(
            "everything stored once MongoDB is back",
            lambda: bus_driver.stats()["points_stored"] == total,
            timeout=60,
        )
        assert _pending(redis_admin, stream) == 0
        for base_id in second["ids"]:
            assert len(bus_driver.get_report(base_id)) in (8, 10)
        assert sum(len(bus_driver.get_report(b)) for b in second["ids"]) == _expected_points(20)
    finally:
        bus_driver.close()
        code = stop(proc)
    assert code == 0, log.read_text()[-2000:]
    assert "store errors 0" not in log.read_text().splitlines()[-1]


def test_a_collector_killed_mid_batch_and_restarted_loses_and_duplicates_nothing(
    redis_server: Any, redis_admin: redis.Redis, stream: str, sqlite_path: Path, tmp_path: Path
) -> None:
    bus = bus_url(redis_server, stream, entry_size=10)
    producer = load_driver(bus)
    points = [p for _ in range(150) for p in make_trace(5)]  # 1,500 points, 150 entries
    producer.notify(points[:700])
    bad_ids = [
        redis_admin.xadd(stream, {b"v": b"1", b"p": b"[{broken"}),
        redis_admin.xadd(stream, {b"garbage": b"\x00\xff"}),
    ]
    producer.notify(points[700:])
    producer.close()

    marker = tmp_path / "stored"
    killed = start_collector(
        "--from", bus, "--to", f"slowsqlite:///{sqlite_path}", "--count", "20",
        "--claim-idle", "1s", "--quiet",
        slow=True, env={"XP_SLOW_MARKER": str(marker), "XP_SLOW_SECONDS": "30"},
    )  # fmt: skip
    try:
        wait_for("the first batch written to the store", marker.exists)
    finally:
        killed.kill()  # SIGKILL: the batch is in the store, its acknowledgement never sent
        killed.wait(10)
    in_store = sqlite_count(sqlite_path)
    assert in_store == 200  # 20 entries of 10 points
    assert _pending(redis_admin, stream) == 20

    restarted = start_collector(
        "--from", bus, "--to", f"sqlite:///{sqlite_path}", "--claim-idle", "1s", "--drain",
        "--quiet",
    )  # fmt: skip
    assert restarted.wait(60) == 0

    ids = _stored_ids(sqlite_path)
    assert len(ids) == len(set(ids)) == len(points)
    assert set(ids) == {p["id"] for p in points}
    assert _pending(redis_admin, stream) == 0
    dead = redis_admin.xrange(f"{stream}:dead")
    assert [f[b"xp-dead-id"] for _, f in dead] == bad_ids
    (first, second) = sorted(_collectors(redis_admin, stream).values(), key=lambda r: r["started"])
    assert first["points"] == 0  # killed before any acknowledgement
    assert second["claimed"] == 20  # took over the dead collector's batch ...
    assert second["points"] == len(points)  # ... and wrote it again: the store deduplicated


def test_two_collectors_share_the_stream(
    redis_server: Any, redis_admin: redis.Redis, stream: str, sqlite_path: Path, tmp_path: Path
) -> None:
    bus = bus_url(redis_server, stream, entry_size=10)
    slow = {"XP_SLOW_SECONDS": "0.05"}
    procs = [
        start_collector(
            "--from",
            bus,
            "--to",
            f"slowsqlite:///{sqlite_path}",
            "--count",
            "5",
            "--name",
            f"collector-{i}",
            "--quiet",
            slow=True,
            env=slow,
        )  # fmt: skip
        for i in (1, 2)
    ]
    try:
        wait_for("both collectors up", lambda: len(_collectors(redis_admin, stream)) == 2)
        producer = load_driver(bus)
        points = [p for _ in range(200) for p in make_trace(5)]  # 2,000 points, 200 entries
        for i in range(0, len(points), 100):
            producer.notify(points[i : i + 100])
        producer.close()
        wait_for("every point stored", lambda: sqlite_count(sqlite_path) == len(points))
        wait_for("the last acknowledgement", lambda: _pending(redis_admin, stream) == 0)
    finally:
        codes = [stop(p) for p in procs]
    assert codes == [0, 0]
    records = _collectors(redis_admin, stream)
    shares = [records[f"collector-{i}"]["points"] for i in (1, 2)]
    assert all(share > 0 for share in shares), shares
    assert sum(shares) == len(points)  # each entry went to one collector
    assert [records[f"collector-{i}"]["state"] for i in (1, 2)] == ["stopped", "stopped"]


def test_sigterm_finishes_and_acknowledges_the_batch_in_hand(
    redis_server: Any, redis_admin: redis.Redis, stream: str, sqlite_path: Path, tmp_path: Path
) -> None:
    bus = bus_url(redis_server, stream, entry_size=10)
    producer = load_driver(bus)
    producer.notify([p for _ in range(50) for p in make_trace(5)])  # 50 entries
    producer.close()
    marker = tmp_path / "stored"
    proc = start_collector(
        "--from", bus, "--to", f"slowsqlite:///{sqlite_path}", "--count", "10",
        "--name", "graceful", "--quiet",
        slow=True, env={"XP_SLOW_MARKER": str(marker), "XP_SLOW_SECONDS": "1"},
    )  # fmt: skip
    wait_for("a batch in hand", marker.exists)
    assert stop(proc) == 0
    assert sqlite_count(sqlite_path) == 100
    assert _pending(redis_admin, stream) == 0  # the batch in hand was acknowledged
    record = _collectors(redis_admin, stream)["graceful"]
    assert (record["points"], record["acked"], record["state"]) == (100, 10, "stopped")
