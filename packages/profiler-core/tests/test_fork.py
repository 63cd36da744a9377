"""Surviving fork: the child traces and delivers its own points; the parent's queued points
are delivered once, by the parent."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from xprofiler.core import profiler, registry
from xprofiler.core.points import Point, TraceFilter, TraceSummary
from xprofiler.core.tracing import Trace
from xprofiler.core.uri import URL


class JsonLinesDriver:
    """A real (if tiny) file store: one JSON line per point, with the writing process's pid.

    Unlike sqlite it does not hide duplicates, which is what these tests must see.
    """

    def __init__(self, url: URL) -> None:
        self.url = url
        assert url.database
        self.path = url.database

    def notify(self, points: Sequence[Point]) -> None:
        data = "".join(
            json.dumps({"pid": os.getpid(), "base_id": p["base_id"], "id": p["id"]}) + "\n"
            for p in points
        )
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data.encode())
        finally:
            os.close(fd)

    def get_report(self, base_id: str) -> list[Point]:
        return []

    def list_traces(self, filters: TraceFilter | None = None) -> list[TraceSummary]:
        return []

    def list_error_traces(self, filters: TraceFilter | None = None) -> list[TraceSummary]:
        return []

    def close(self) -> None:
        pass


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Path]:
    registry.register("xptjsonl", JsonLinesDriver)
    path = tmp_path / "points.jsonl"
    profiler.clean()
    # Nothing is delivered unless flushed: the parent's points sit in the queue at fork time.
    profiler.setup(f"xptjsonl:///{path}", service="svc", flush_interval=3600, batch_size=10**6)
    yield path
    profiler.clean()
    profiler.shutdown()
    registry.unregister("xptjsonl")


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def run_in_child(body: Any) -> int:
    """Fork; run ``body()`` in the child, exit 0 if it returned True. Returns the exit code."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            code = 0 if body() else 2
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_child_delivers_its_own_points_and_parents_are_not_duplicated(store: Path) -> None:
    parent_base = profiler.init("k").get_base_id()
    for _ in range(3):
        with Trace("parent-work"):
            pass
    assert profiler.dispatcher_stats()["queued"] == 6

    def child() -> bool:
        if profiler.dispatcher_stats()["queued"] != 0:  # the parent's points stay with it
            return False
        base = profiler.init("k").get_base_id()
        for _ in range(2):
            with Trace("child-work"):
                pass
        if not profiler.flush(10):
            return False
        return profiler.dispatcher_stats()["delivered"] == 4 and base != parent_base

    assert run_in_child(child) == 0
    assert profiler.flush(10)
    rows = read(store)
    by_pid: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        by_pid.setdefault(r["pid"], []).append(r)
    assert set(by_pid) - {os.getpid()}, "the child delivered nothing"
    mine = by_pid.pop(os.getpid())
    (theirs,) = by_pid.values()
    assert len(mine) == 6 and {r["base_id"] for r in mine} == {parent_base}
    assert len(theirs) == 4 and parent_base not in {r["base_id"] for r in theirs}
    parent_ids = {r["id"] for r in mine}
    assert len(parent_ids) == 6
    assert not parent_ids & {r["id"] for r in theirs}  # span ids never collide across fork


def test_child_continuing_the_parents_trace_gets_fresh_span_ids(store: Path) -> None:
    base = profiler.init("k").get_base_id()
    with Trace("before-fork"):
        pass

    def child() -> bool:
        # The forking thread's context comes along: the child continues the same trace.
        with Trace("in-child"):
            pass
        return profiler.flush(10)

    with Trace("around-fork"):
        assert run_in_child(child) == 0
    assert profiler.flush(10)
    rows = read(store)
    assert {r["base_id"] for r in rows} == {base}
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) == 6


def test_parent_keeps_tracing_after_fork(store: Path) -> None:
    profiler.init("k")
    with Trace("a"):
        pass
    assert run_in_child(lambda: True) == 0
    with Trace("b"):
        pass
    assert profiler.flush(10)
    assert [r["pid"] for r in read(store)] == [os.getpid()] * 4
