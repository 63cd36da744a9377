"""What the driver stores and where: template, mapping, daily indices, large traces."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from xprofiler.core.points import TraceFilter
from xprofiler.core.registry import load_driver
from xprofiler.core.testing import make_point, make_trace
from xprofiler.drivers.elasticsearch.schema import MAPPING, index_for

DAY = 86_400 * 1_000_000_000


def _key(points: list[Any]) -> list[tuple[Any, ...]]:
    return sorted((p["id"], repr(sorted(p.items()))) for p in points)


def _count(es: Elasticsearch, prefix: str) -> int:
    es.indices.refresh(index=f"{prefix}-*", allow_no_indices=True)
    return int(es.count(index=f"{prefix}-*", allow_no_indices=True)["count"])


def test_first_write_installs_the_template_with_an_explicit_mapping(
    es_url: str, prefix: str, es_admin: Elasticsearch
) -> None:
    drv = load_driver(es_url)
    assert not es_admin.indices.exists_index_template(name=f"{prefix}-template")
    points = make_trace(2)
    # Free-form info with many distinct keys must not become mapped fields.
    points[0]["info"] = {f"key_{i}": {"nested": i, "s": str(i)} for i in range(300)}
    points[1]["info"] = {"list": [1, {"a": "b"}], "value": "x" * 10_000}
    drv.notify(points)
    tpl = es_admin.indices.get_index_template(name=f"{prefix}-template")["index_templates"][0]
    assert tpl["index_template"]["index_patterns"] == [f"{prefix}-*"]
    assert tpl["index_template"]["_meta"]["managed_by"] == "xprofiler"
    index = index_for(prefix, "day", points[0]["timestamp"])
    mapping = es_admin.indices.get_mapping(index=index)[index]["mappings"]
    assert mapping["dynamic"] == "false"
    assert set(mapping["properties"]) == set(MAPPING["properties"])
    for field in ("id", "base_id", "trace_id", "parent_id", "name", "service", "host"):
        assert mapping["properties"][field]["type"] == "keyword"
    assert mapping["properties"]["@timestamp"]["type"] == "date_nanos"
    assert mapping["properties"]["timestamp"]["type"] == "long"
    assert mapping["properties"]["info"] == {"type": "object", "enabled": False}
    settings = es_admin.indices.get_settings(index=index)[index]["settings"]["index"]
    assert settings["number_of_shards"] == "1" and settings["number_of_replicas"] == "0"
    # ... and they still come back exactly.
    assert _key(drv.get_report(points[0]["base_id"])) == _key(points)
    drv.close()


def test_points_go_to_the_index_of_their_own_day(
    es_url: str, prefix: str, es_admin: Elasticsearch
) -> None:
    drv = load_driver(es_url)
    now = time.time_ns()
    traces = [make_trace(2, start=now - d * DAY) for d in (0, 2, 5)]
    points = [p for t in traces for p in t]
    drv.notify(points)
    expected = {index_for(prefix, "day", now - d * DAY) for d in (0, 2, 5)}
    assert set(drv.indices()) == expected
    es_admin.indices.refresh(index=f"{prefix}-*")
    for t in traces:
        index = index_for(prefix, "day", t[0]["timestamp"])
        hits = es_admin.search(index=index, query={"term": {"base_id": t[0]["base_id"]}})
        assert hits["hits"]["total"]["value"] == 4
    # Re-delivery days later goes to the same index under the same id: no duplicate.
    drv.notify(list(reversed(points)))
    assert _count(es_admin, prefix) == len(points)
    assert drv.stats()["duplicates"] == len(points)
    drv.close()


def test_monthly_indices(es_url: str, prefix: str, es_admin: Elasticsearch) -> None:
    drv = load_driver(es_url + "&index_period=month")
    now = time.time_ns()
    points = make_trace(1, start=now) + make_trace(1, start=now - 40 * DAY)
    drv.notify(points)
    names = drv.indices()
    assert names == sorted({index_for(prefix, "month", p["timestamp"]) for p in points})
    assert all(len(n.split("-")[-1]) == len("2024.01") for n in names)
    assert _count(es_admin, prefix) == 4
    drv.close()


def test_a_trace_of_20000_points_is_read_back_whole(es_url: str) -> None:
    drv = load_driver(es_url)
    points = make_trace(10_000, step=1)  # 20,000 points, well past the 10,000 result window
    for i in range(0, len(points), 2000):
        drv.notify(points[i : i + 2000])
    got = drv.get_report(points[0]["base_id"])
    assert len(got) == 20_000
    assert len({p["id"] for p in got}) == 20_000
    assert _key(got) == _key(points)
    (row,) = drv.list_traces(TraceFilter())
    assert row.start == min(p["timestamp"] for p in points)
    assert row.end == max(p["timestamp"] for p in points)
    assert row.span_count == 10_000  # recounted exactly (the cardinality estimate may be off)
    drv.close()


def test_extra_keys_round_trip_without_being_mapped(
    es_url: str, prefix: str, es_admin: Elasticsearch
) -> None:
    drv = load_driver(es_url)
    p = make_point("b1", "t1", "b1", "start", "op", time.time_ns(), info={"k": [1, 2]})
    p["zone"] = "eu-1"  # type: ignore[typeddict-unknown-key]
    drv.notify([p])
    assert drv.get_report("b1") == [p]
    index = index_for(prefix, "day", p["timestamp"])
    assert "zone" not in es_admin.indices.get_mapping(index=index)[index]["mappings"]["properties"]
    drv.close()


def test_malformed_points_are_dropped_counted_and_logged_others_stored(
    es_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    drv = load_driver(es_url.replace("://", "://user:s3cret@", 1))
    good = make_trace(2)
    no_id = dict(make_trace(1)[0])
    del no_id["id"]
    str_ts = dict(make_trace(1)[0], timestamp="yesterday")
    bool_ts = dict(make_trace(1)[0], timestamp=True)
    negative_ts = dict(make_trace(1)[0], timestamp=-5)
    with caplog.at_level(logging.WARNING, logger="xprofiler.drivers.elasticsearch"):
        drv.notify([no_id, *good[:2], str_ts, "not a point", bool_ts, negative_ts, *good[2:]])  # type: ignore[list-item]
    assert drv.stats()["rejected"] == 5
    assert drv.stats()["stored"] == len(good)
    assert _key(drv.get_report(good[0]["base_id"])) == _key(good)
    text = caplog.text
    assert "5 trace point(s) cannot be stored" in text and "no 'id' string" in text
    assert "s3cret" not in text
    drv.close()


def test_a_document_the_client_cannot_serialize_is_isolated(es_url: str) -> None:
    drv = load_driver(es_url)
    points = make_trace(3)
    points[2]["info"] = {"odd": {1, 2}}  # a set: not JSON
    drv.notify(points)
    assert drv.stats()["rejected"] == 1
    assert drv.stats()["stored"] == 5
    assert len(drv.get_report(points[0]["base_id"])) == 5
    drv.close()


def test_a_value_the_mapping_refuses_is_rejected_alone(es_url: str) -> None:
    drv = load_driver(es_url)
    points = make_trace(3)
    points[1]["error"] = "maybe"  # type: ignore[typeddict-item]  # not a boolean
    drv.notify(points)
    s = drv.stats()
    assert (s["stored"], s["rejected"]) == (5, 1)
    assert sorted(p["id"] for p in drv.get_report(points[0]["base_id"])) == sorted(
        p["id"] for i, p in enumerate(points) if i != 1
    )
    drv.close()


def test_several_hosts_fail_over_to_a_live_one(
    elasticsearch_server: Any, prefix: str, unused_port: int
) -> None:
    host, port = elasticsearch_server.host, elasticsearch_server.port
    drv = load_driver(
        f"elasticsearch://127.0.0.1:{unused_port},{host}:{port}/{prefix}?replicas=0&timeout=3s"
    )
    for _ in range(3):  # whichever node the client starts with
        t = make_trace(2)
        drv.notify(t)
        assert len(drv.get_report(t[0]["base_id"])) == 4
    drv.close()
