"""The tree builder: pairing points into spans, linking them, and the report around them."""

from __future__ import annotations

import json
import random
import sys

from xprofiler.core.points import Point
from xprofiler.core.testing import make_point
from xprofiler.core.tree import REPORT_SCHEMA_VERSION, build_report

BASE = "base-1"


def span_points(
    tid: str,
    parent: str,
    name: str,
    start: int | None,
    stop: int | None,
    *,
    service: str = "svc",
    host: str = "h1",
    error: bool = False,
    info: dict | None = None,
) -> list[Point]:
    out = []
    if start is not None:
        out.append(make_point(BASE, tid, parent, "start", name, start, service=service, host=host))
    if stop is not None:
        stop_info = info or ({"etype": "ValueError", "message": "boom"} if error else {})
        out.append(
            make_point(
                BASE,
                tid,
                parent,
                "stop",
                name,
                stop,
                service=service,
                host=host,
                error=error,
                info=stop_info,
            )
        )
    return out


def test_pairs_and_nests_spans() -> None:
    pts = (
        span_points("a", BASE, "wsgi", 100, 900, service="api")
        + span_points("b", "a", "db", 200, 300, service="api")
        + span_points("c", "a", "rpc", 400, 800, service="api", host="h2")
        + span_points("d", "c", "db", 500, 600, service="worker")
    )
    report = build_report(BASE, pts)
    assert [r.trace_id for r in report.roots] == ["a"]
    a = report.roots[0]
    assert [c.trace_id for c in a.children] == ["b", "c"]
    assert [c.trace_id for c in a.children[1].children] == ["d"]
    assert [(s.trace_id, s.depth) for s in report.spans()] == [
        ("a", 0),
        ("b", 1),
        ("c", 1),
        ("d", 2),
    ]
    assert a.duration == 800 and a.finished
    assert report.start == 100 and report.end == 900 and report.duration == 800
    assert report.span_count == 4
    assert report.services == ["api", "worker"] and report.hosts == ["h1", "h2"]
    assert report.stats == {
        "db": {"count": 2, "duration": 200},
        "rpc": {"count": 1, "duration": 400},
        "wsgi": {"count": 1, "duration": 800},
    }
    assert (report.error_count, report.unfinished_count, report.orphan_count) == (0, 0, 0)
    assert not report.error


def test_input_order_does_not_matter() -> None:
    pts = (
        span_points("a", BASE, "x", 100, 900)
        + span_points("b", "a", "y", 300, 400)
        + span_points("c", "a", "y", 200, 250)
        + span_points("d", "b", "z", 310, 320)
    )
    expected = build_report(BASE, pts).to_dict()
    rng = random.Random(7)
    for _ in range(20):
        shuffled = pts[:]
        rng.shuffle(shuffled)
        assert build_report(BASE, shuffled).to_dict() == expected


def test_children_ordered_by_start_and_ties_are_stable() -> None:
    pts = (
        span_points("root", BASE, "r", 0, 1000)
        + span_points("late", "root", "n", 500, 600)
        + span_points("early", "root", "n", 100, 200)
        + span_points("tie-b", "root", "n", 300, 301)
        + span_points("tie-a", "root", "n", 300, 302)
    )
    report = build_report(BASE, pts)
    assert [c.trace_id for c in report.roots[0].children] == ["early", "tie-a", "tie-b", "late"]
    assert [c.trace_id for c in build_report(BASE, reversed(pts)).roots[0].children] == [
        "early",
        "tie-a",
        "tie-b",
        "late",
    ]


def test_roots_ordered_by_start() -> None:
    pts = span_points("two", BASE, "n", 50, 60) + span_points("one", BASE, "n", 10, 20)
    assert [r.trace_id for r in build_report(BASE, pts).roots] == ["one", "two"]


def test_unfinished_span_is_kept_and_flagged() -> None:
    pts = span_points("a", BASE, "wsgi", 100, None) + span_points("b", "a", "db", 200, 300)
    report = build_report(BASE, pts)
    a = report.roots[0]
    assert not a.finished and a.duration is None and a.stop is None
    assert [c.trace_id for c in a.children] == ["b"]
    assert report.unfinished_count == 1
    assert report.stats["wsgi"] == {"count": 1, "duration": 0}
    d = report.to_dict()["children"][0]
    assert d["finished"] is False and d["duration"] is None and d["stop"] is None


def test_stop_without_start_is_kept_with_what_the_stop_says() -> None:
    pts = span_points("a", BASE, "wsgi", 100, 900) + span_points(
        "b", "a", "db", None, 500, service="db-svc", host="h9"
    )
    report = build_report(BASE, pts)
    b = report.roots[0].children[0]
    assert b.start is None and b.stop == 500 and not b.finished
    assert (b.service, b.host, b.name) == ("db-svc", "h9", "db")
    assert report.unfinished_count == 1


def test_orphans_are_top_level_and_flagged() -> None:
    pts = (
        span_points("a", BASE, "wsgi", 100, 900)
        + span_points("lost", "never-seen", "rpc", 50, 60)
        + span_points("lost-child", "lost", "db", 52, 55)
    )
    report = build_report(BASE, pts)
    assert [r.trace_id for r in report.roots] == ["lost", "a"]
    lost = report.roots[0]
    assert lost.orphan and not report.roots[1].orphan
    assert [c.trace_id for c in lost.children] == ["lost-child"]
    assert not lost.children[0].orphan
    assert report.orphan_count == 1
    assert report.to_dict()["children"][0]["orphan"] is True


def test_duplicate_points_count_once() -> None:
    pts = span_points("a", BASE, "wsgi", 100, 900) + span_points("b", "a", "db", 200, 300)
    report = build_report(BASE, pts + pts + pts[:1])
    assert report.span_count == 2
    assert report.stats == {
        "db": {"count": 1, "duration": 100},
        "wsgi": {"count": 1, "duration": 800},
    }
    assert len(report.roots) == 1 and len(report.roots[0].children) == 1


def test_errors_are_counted_and_exposed() -> None:
    pts = span_points("a", BASE, "wsgi", 100, 900) + span_points(
        "b", "a", "db", 200, 300, error=True, info={"etype": "KeyError", "message": "'x'"}
    )
    report = build_report(BASE, pts)
    b = report.roots[0].children[0]
    assert b.error and b.exception == {"type": "KeyError", "message": "'x'"}
    assert report.roots[0].exception is None
    assert report.error_count == 1 and report.error
    d = report.to_dict()
    assert d["error_count"] == 1
    assert d["children"][0]["children"][0]["exception"]["type"] == "KeyError"


def test_parent_cycle_is_broken_once_not_dropped() -> None:
    # Corrupt data: x -> y -> x, and z under y. Nothing reachable from the base id.
    pts = (
        span_points("x", "y", "n", 10, 20)
        + span_points("y", "x", "n", 11, 19)
        + span_points("z", "y", "n", 12, 13)
    )
    report = build_report(BASE, pts)
    assert [r.trace_id for r in report.roots] == ["x"]
    x = report.roots[0]
    assert x.orphan
    assert [(s.trace_id, s.depth, s.orphan) for s in report.spans()] == [
        ("x", 0, True),
        ("y", 1, False),
        ("z", 2, False),
    ]
    assert report.orphan_count == 1 and report.span_count == 3
    assert report.stats["n"]["count"] == 3
    json.dumps(report.to_dict())


def test_self_parented_span_is_a_root() -> None:
    report = build_report(BASE, span_points("s", "s", "n", 1, 2))
    assert [r.trace_id for r in report.roots] == ["s"] and not report.roots[0].orphan


def test_empty_input_gives_an_empty_report() -> None:
    report = build_report(BASE, [])
    assert report.roots == [] and report.span_count == 0
    assert report.start is None and report.duration is None
    assert report.to_dict()["children"] == []


def test_report_to_dict_is_the_stable_json_shape() -> None:
    pts = span_points("a", BASE, "wsgi", 100, 900, info={"function": {"result": "1"}})
    d = build_report(BASE, pts).to_dict()
    assert d["schema"] == REPORT_SCHEMA_VERSION
    assert set(d) == {
        "schema",
        "base_id",
        "start",
        "end",
        "duration",
        "span_count",
        "services",
        "hosts",
        "error_count",
        "unfinished_count",
        "orphan_count",
        "stats",
        "children",
    }
    child = d["children"][0]
    assert set(child) == {
        "trace_id",
        "parent_id",
        "name",
        "service",
        "project",
        "host",
        "start",
        "stop",
        "duration",
        "finished",
        "error",
        "exception",
        "orphan",
        "start_info",
        "stop_info",
        "children",
    }
    assert child["stop_info"] == {"function": {"result": "1"}}
    assert json.loads(json.dumps(d)) == d


def test_hundred_thousand_spans_build() -> None:
    # A wide and moderately deep trace: 100 top-level spans, each with a 999-span subtree
    # made of chains of length 9 hanging off it.
    pts: list[Point] = []
    n = 0
    ts = 0
    for r in range(100):
        rid = f"r{r}"
        pts += span_points(rid, BASE, "root", ts, ts + 10_000)
        n += 1
        parent = rid
        for i in range(999):
            tid = f"r{r}-{i}"
            parent = rid if i % 9 == 0 else parent
            pts += span_points(tid, parent, f"op{i % 7}", ts + i + 1, ts + i + 2)
            parent = tid
            n += 1
        ts += 20_000
    assert n == 100_000
    report = build_report(BASE, pts)
    assert report.span_count == 100_000
    assert len(report.roots) == 100
    spans = list(report.spans())
    assert len(spans) == 100_000
    assert max(s.depth for s in spans) == 9
    assert sum(v["count"] for v in report.stats.values()) == 100_000
    assert report.unfinished_count == 0 and report.orphan_count == 0
    assert [len(r.children) for r in report.roots] == [111] * 100


def test_deep_chain_of_ten_thousand_builds_without_recursion() -> None:
    depth = 10_000
    assert depth > sys.getrecursionlimit()
    pts: list[Point] = []
    parent = BASE
    for i in range(depth):
        pts += span_points(f"s{i}", parent, "deep", i, 2 * depth - i)
        parent = f"s{i}"
    report = build_report(BASE, pts)
    assert len(report.roots) == 1
    spans = list(report.spans())
    assert len(spans) == depth
    assert spans[-1].depth == depth - 1 and spans[-1].trace_id == f"s{depth - 1}"
    d = report.to_dict()
    node, levels = d["children"][0], 1
    while node["children"]:
        node = node["children"][0]
        levels += 1
    assert levels == depth
