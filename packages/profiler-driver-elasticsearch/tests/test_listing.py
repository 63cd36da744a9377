"""list_traces over many days: the aggregation walk agrees with the reference semantics."""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

import pytest

from xprofiler.core.points import TraceFilter, TraceSummary
from xprofiler.core.registry import load_driver
from xprofiler.core.testing import make_trace
from xprofiler.drivers.elasticsearch.listing import TraceLister

HOUR = 3_600 * 1_000_000_000
DAY = 24 * HOUR


@pytest.fixture(scope="module")
def stores(elasticsearch_server: Any, es_admin: Any, dropper: Any) -> Any:
    """One Elasticsearch store and one memory store (the reference) with the same 60 traces
    over 12 days: some cross midnight, one lasts two days, services/names/errors vary."""
    prefix = f"xp_{uuid.uuid4().hex[:16]}"
    url = (
        f"elasticsearch://{elasticsearch_server.host}:{elasticsearch_server.port}/{prefix}"
        "?replicas=0"
    )
    es = load_driver(url)
    ref = load_driver(f"memory://listing-{prefix}")
    rng = random.Random(20241122)
    midnight = (time.time_ns() // DAY) * DAY
    points = []
    for i in range(60):
        start = midnight - rng.randrange(0, 12 * DAY)
        if i < 4:
            start = midnight - (i + 1) * DAY - 30_000_000_000  # 30s before a midnight
        step = rng.choice([1_000, 1_000_000, 20_000_000_000])  # up to minutes per level
        if i == 4:
            step = DAY // 2  # a trace that lasts two days
        services = rng.sample(["api", "worker", "db", "cache"], rng.randint(1, 3))
        trace = make_trace(
            rng.randint(1, 5),
            start=start,
            step=step,
            services=services,
            name=rng.choice(["op", "query", "call"]),
            error_at=0 if rng.random() < 0.25 else None,
        )
        points.extend(trace)
    # Two traces starting at the same nanosecond: base_id decides their order.
    tie = midnight - 3 * HOUR
    points.extend(make_trace(2, start=tie, base_id="tie-a"))
    points.extend(make_trace(2, start=tie, base_id="tie-b"))
    rng.shuffle(points)
    for i in range(0, len(points), 97):
        es.notify(points[i : i + 97])
        ref.notify(points[i : i + 97])
    yield es, ref, midnight
    es.close()
    dropper(es_admin, prefix)


def _rows(rows: list[TraceSummary]) -> list[dict[str, Any]]:
    return [r.to_dict() for r in rows]


def _filters(midnight: int) -> list[TraceFilter]:
    return [
        TraceFilter(),
        TraceFilter(limit=7),
        TraceFilter(limit=5, offset=5),
        TraceFilter(limit=10, offset=55),
        TraceFilter(limit=1000),
        TraceFilter(service="worker", limit=100),
        TraceFilter(service="cache", limit=3, offset=2),
        TraceFilter(name="query", limit=100),
        TraceFilter(name="call2", limit=100),
        TraceFilter(errors=True, limit=100),
        TraceFilter(errors=True, service="db", limit=100),
        TraceFilter(since=midnight - 5 * DAY, limit=100),
        TraceFilter(until=midnight - 5 * DAY, limit=100),
        TraceFilter(since=midnight - 7 * DAY, until=midnight - 2 * DAY, limit=100),
        TraceFilter(since=midnight - 7 * DAY, until=midnight - 2 * DAY, service="api", limit=4),
        TraceFilter(min_duration=60_000_000_000, limit=100),
        TraceFilter(min_duration=DAY, limit=100),
        TraceFilter(service="nope"),
        TraceFilter(since=midnight + DAY),
        TraceFilter(since=midnight - DAY, until=midnight - 2 * DAY),
        TraceFilter(limit=0),
    ]


def test_list_traces_agrees_with_the_reference_across_days(stores: Any) -> None:
    es, ref, midnight = stores
    for f in _filters(midnight):
        assert _rows(es.list_traces(f)) == _rows(ref.list_traces(f)), f


def test_list_error_traces_agrees_with_the_reference(stores: Any) -> None:
    es, ref, midnight = stores
    for f in (TraceFilter(limit=100), TraceFilter(service="api", limit=2, offset=1)):
        assert _rows(es.list_error_traces(f)) == _rows(ref.list_error_traces(f))


@pytest.mark.parametrize("window", [1_000, 1_000_000_000, 3 * HOUR, 400 * DAY])
def test_the_walk_gives_the_same_rows_whatever_its_first_window(stores: Any, window: int) -> None:
    es, ref, midnight = stores
    es.refresh()
    for f in (TraceFilter(limit=12), TraceFilter(errors=True, limit=3, offset=1)):
        lister = TraceLister(es._search_all, initial_window_ns=window)
        assert _rows(lister.run(f)) == _rows(ref.list_traces(f))


def test_a_first_page_touches_only_recent_data(stores: Any) -> None:
    es, ref, midnight = stores
    lister = TraceLister(es._search_all)
    rows = lister.run(TraceFilter(limit=3))
    assert _rows(rows) == _rows(ref.list_traces(TraceFilter(limit=3)))
    full = TraceLister(es._search_all)
    full.run(TraceFilter(limit=1000))
    assert lister.requests < full.requests
