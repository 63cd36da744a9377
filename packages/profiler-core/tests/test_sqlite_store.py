"""The embedded sqlite store under contention: a locked database is an outage, not bad data."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from xprofiler.core.dispatcher import Dispatcher
from xprofiler.core.registry import load_driver
from xprofiler.core.testing import make_trace


def _wait(cond, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return False


def test_a_locked_database_keeps_points_and_delivers_them_when_released(tmp_path: Path) -> None:
    path = tmp_path / "traces.db"
    url = f"sqlite:///{path}?timeout=50ms"
    load_driver(url).get_report("warm-up")  # create the schema
    locker = sqlite3.connect(str(path), isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    # One try per part and short backoff: a content error would be split down and rejected
    # within a few failures, so surviving 25 failures proves the lock counts as an outage.
    d = Dispatcher(url, batch_size=10, flush_interval=0.02, max_attempts=1, retry_backoff_max=0.1)
    points = make_trace(10)
    try:
        for p in points:
            d.put(p)
        assert _wait(lambda: d.stats()["failed_batches"] >= 25)
        stats = d.stats()
        assert stats["rejected"] == 0
        assert stats["delivered"] == 0
        assert "locked" in (stats["last_error"] or "")
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert d.flush(20)
    assert d.stats()["delivered"] == len(points)
    d.close()
    got = load_driver(url).get_report(points[0]["base_id"])
    assert len(got) == len(points)
