"""The server goes away and comes back: the dispatcher keeps, retries, and stores once.

One outage (a real stop and restart of the session's server, same port and data) serves two
dispatchers: one with room for everything, one whose small queue must drop and count.
"""

from __future__ import annotations

import time
from typing import Any

from xprofiler.core.dispatcher import Dispatcher
from xprofiler.core.errors import StoreUnavailable
from xprofiler.core.registry import load_driver
from xprofiler.core.testing import make_trace


def test_an_outage_keeps_or_drops_and_counts_then_stores_each_point_once(
    elasticsearch_server: Any, es_url: str
) -> None:
    url = es_url.replace("://", "://tracer:s3cret@", 1) + "&timeout=2s&max_retries=0"
    driver = load_driver(url)
    before = make_trace(5)
    driver.notify(before)  # the store works (and its template exists) before the outage
    roomy = Dispatcher(driver, batch_size=40, flush_interval=0.05, retry_backoff_max=0.5)
    small = Dispatcher(
        load_driver(url), max_queue=50, batch_size=20, flush_interval=0.05, retry_backoff_max=0.5
    )
    traces = [make_trace(10) for _ in range(10)]  # 200 points
    overflow = make_trace(60)  # 120 points into a queue of 50
    try:
        with elasticsearch_server.down():
            began = time.monotonic()
            try:
                driver.get_report(before[0]["base_id"])
                raise AssertionError("a read while the server is down must fail")
            except StoreUnavailable as exc:
                assert "s3cret" not in str(exc)
            assert time.monotonic() - began < 15  # bounded, not a hang
            for t in traces:
                for p in t:
                    roomy.put(p)
            for p in overflow:
                small.put(p)
            assert roomy.flush(timeout=3) is False
            assert small.flush(timeout=1) is False
            stats = roomy.stats()
            assert stats["delivered"] == 0
            assert stats["failed_batches"] >= 1
            assert stats["queued"] == 200
            assert stats["dropped"] == 0
            assert "s3cret" not in (stats["last_error"] or "")
            stats = small.stats()
            assert stats["delivered"] == 0
            assert stats["dropped"] >= 120 - 50 - 20  # beyond the queue and the batch in flight
        # Leaving the block restarted the server.
        assert roomy.flush(timeout=120) is True
        assert small.flush(timeout=60) is True
        assert roomy.stats()["delivered"] == 200
        for t in traces:
            got = driver.get_report(t[0]["base_id"])
            assert len(got) == 20
            assert len({p["id"] for p in got}) == 20
        assert len(driver.get_report(before[0]["base_id"])) == 10
        stats = small.stats()
        assert stats["delivered"] + stats["dropped"] == 120
        assert len(driver.get_report(overflow[0]["base_id"])) == stats["delivered"]
        assert len(driver.list_traces()) == 12
    finally:
        roomy.close()
        small.close()
        driver.close()
