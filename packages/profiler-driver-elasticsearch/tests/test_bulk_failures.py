"""Partial bulk failures, provoked for real with index blocks on one day's index.

A write block (``index.blocks.write``) refuses items with 403 for good: they are counted and
logged, the rest of the batch is stored. A read-only-allow-delete block (what the server sets
when a disk fills up) refuses with 429: those items are retried, and if they still fail notify
raises so the dispatcher keeps the batch.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from xprofiler.core.errors import StoreUnavailable
from xprofiler.core.registry import load_driver
from xprofiler.core.testing import make_trace
from xprofiler.drivers.elasticsearch.schema import index_for

DAY = 86_400 * 1_000_000_000
LOGGER = "xprofiler.drivers.elasticsearch"


def _secret_url(es_url: str) -> str:
    # Security is off on the test server, so credentials are accepted and ignored: they are
    # here to prove that no message or log line shows them.
    return es_url.replace("://", "://tracer:s3cret@", 1)


def _two_days(
    drv: Any, es: Elasticsearch, prefix: str, spans: int = 3
) -> tuple[list[Any], list[Any], str]:
    """A trace of yesterday and one of today; yesterday's index exists (empty of them)."""
    now = time.time_ns()
    old = make_trace(spans, start=now - DAY)
    new = make_trace(3, start=now)
    blocked = index_for(prefix, "day", old[0]["timestamp"])
    assert blocked != index_for(prefix, "day", new[0]["timestamp"])
    drv.notify(make_trace(1, start=now - DAY))  # creates yesterday's index through the template
    return old, new, blocked


def _block(es: Elasticsearch, index: str, block: str, value: bool | None) -> None:
    es.indices.put_settings(index=index, settings={f"index.blocks.{block}": value})


def test_items_refused_for_good_are_counted_logged_and_not_retried(
    es_url: str, prefix: str, es_admin: Elasticsearch, caplog: pytest.LogCaptureFixture
) -> None:
    drv = load_driver(_secret_url(es_url))
    old, new, blocked = _two_days(drv, es_admin, prefix, spans=8)  # 16 points refused
    _block(es_admin, blocked, "write", True)
    try:
        before = drv.stats()
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            drv.notify(old + new)  # does not raise: retrying cannot help
        after = drv.stats()
        assert after["rejected"] - before["rejected"] == len(old)
        assert after["stored"] - before["stored"] == len(new)
        assert after["retried"] == before["retried"]
        assert after["bulk_requests"] - before["bulk_requests"] == 1
        refused = [r.getMessage() for r in caplog.records if "for good" in r.getMessage()]
        # Ten refusals one by one (id, index, status, reason), the rest summed up.
        assert len(refused) == 11
        assert all("403" in m and blocked in m for m in refused[:10])
        assert "and 6 more trace point(s)" in refused[10]
        assert "cluster_block_exception" in caplog.text
        assert "s3cret" not in caplog.text
        assert drv.get_report(old[0]["base_id"]) == []
        assert len(drv.get_report(new[0]["base_id"])) == len(new)
    finally:
        _block(es_admin, blocked, "write", None)
    drv.close()


def test_items_refused_for_now_are_retried_until_stored(
    es_url: str, prefix: str, es_admin: Elasticsearch
) -> None:
    drv = load_driver(_secret_url(es_url) + "&max_retries=6")
    old, new, blocked = _two_days(drv, es_admin, prefix)
    _block(es_admin, blocked, "read_only_allow_delete", True)
    lifted = threading.Timer(0.5, _block, (es_admin, blocked, "read_only_allow_delete", None))
    lifted.start()
    try:
        before = drv.stats()
        drv.notify(old + new)
        after = drv.stats()
    finally:
        lifted.join()
    assert after["retried"] - before["retried"] >= len(old)
    assert after["stored"] - before["stored"] == len(old) + len(new)
    assert after["rejected"] == before["rejected"]
    assert len(drv.get_report(old[0]["base_id"])) == len(old)
    assert len(drv.get_report(new[0]["base_id"])) == len(new)
    drv.close()


def test_items_still_refused_after_the_retries_raise_and_redelivery_completes_the_batch(
    es_url: str, prefix: str, es_admin: Elasticsearch
) -> None:
    drv = load_driver(_secret_url(es_url) + "&max_retries=1")
    old, new, blocked = _two_days(drv, es_admin, prefix)
    _block(es_admin, blocked, "read_only_allow_delete", True)
    try:
        with pytest.raises(StoreUnavailable) as info:
            drv.notify(old + new)
        text = str(info.value)
        assert f"refused {len(old)} trace point(s) temporarily" in text
        assert "429" in text and "after 2 tries" in text
        assert "s3cret" not in text
        assert drv.stats()["retried"] == len(old)
        # What could be stored was stored.
        assert len(drv.get_report(new[0]["base_id"])) == len(new)
        assert drv.get_report(old[0]["base_id"]) == []
    finally:
        _block(es_admin, blocked, "read_only_allow_delete", None)
    before = drv.stats()
    drv.notify(old + new)  # what the dispatcher does: the same batch again
    after = drv.stats()
    assert after["stored"] - before["stored"] == len(old)
    assert after["duplicates"] - before["duplicates"] == len(new)
    assert len(drv.get_report(old[0]["base_id"])) == len(old)
    assert len(drv.get_report(new[0]["base_id"])) == len(new)
    drv.close()


def test_a_batch_larger_than_bulk_size_is_sent_in_several_requests(es_url: str) -> None:
    drv = load_driver(es_url + "&bulk_size=100")
    points = make_trace(125)
    drv.notify(points)
    assert drv.stats()["bulk_requests"] == 3
    assert len(drv.get_report(points[0]["base_id"])) == 250
    drv.close()
