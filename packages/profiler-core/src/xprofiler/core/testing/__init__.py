"""The driver conformance suite: every driver, ours or a third party's, proves itself here.

Use it from a driver package's tests with a few lines::

    import pytest
    from xprofiler.core.testing import DriverConformance

    class TestMyDriver(DriverConformance):
        @pytest.fixture
        def driver_url(self, my_server):
            # a connection string to a fresh, EMPTY store for each test
            return f"{my_server.url}/xp_{uuid.uuid4().hex}"

    # networked stores subclass NetworkDriverConformance and also give a URL of their scheme
    # that points at nothing listening, with the password "s3cret" in it:
        @pytest.fixture
        def unreachable_url(self):
            return "myscheme://user:s3cret@127.0.0.1:9/db"

The suite checks the contract written in :mod:`xprofiler.core.protocol`: exact round trips,
idempotent re-delivery, read-your-writes, ``list_traces`` semantics (order, paging, filters),
large batches, concurrent writers, and that an unreachable store fails in bounded time with an
error that does not hold the password.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from ..points import POINT_KEYS, Point, TraceFilter, TraceSummary
from ..registry import load_driver
from ..tree import build_report

__all__ = ["DriverConformance", "NetworkDriverConformance", "make_trace", "make_point"]

_counter = itertools.count()


def make_point(
    base_id: str,
    trace_id: str,
    parent_id: str,
    event: str,
    name: str,
    timestamp: int,
    *,
    service: str = "svc",
    project: str = "proj",
    host: str = "host-1",
    error: bool = False,
    info: dict[str, Any] | None = None,
) -> Point:
    return {
        "id": f"{trace_id}-{event}",
        "base_id": base_id,
        "trace_id": trace_id,
        "parent_id": parent_id,
        "event": event,  # type: ignore[typeddict-item]
        "name": name,
        "timestamp": timestamp,
        "service": service,
        "project": project,
        "host": host,
        "error": error,
        "info": info if info is not None else {},
    }


def make_trace(
    spans: int = 3,
    *,
    start: int | None = None,
    step: int = 1_000,
    service: str = "svc",
    services: list[str] | None = None,
    name: str = "op",
    error_at: int | None = None,
    base_id: str | None = None,
) -> list[Point]:
    """A trace: a chain of ``spans`` nested spans, each starting ``step`` ns after its parent.

    Span i is named ``f"{name}{i}"`` (the first is ``name`` itself); services cycle through
    ``services`` if given. ``error_at`` marks that span's stop as an error.
    """
    base_id = base_id or uuid.uuid4().hex
    start = start if start is not None else time.time_ns() - 10_000_000_000
    points: list[Point] = []
    ids = [f"{base_id[:8]}-s{i}-{next(_counter)}" for i in range(spans)]
    for i, tid in enumerate(ids):
        parent = base_id if i == 0 else ids[i - 1]
        svc = services[i % len(services)] if services else service
        nm = name if i == 0 else f"{name}{i}"
        points.append(
            make_point(
                base_id,
                tid,
                parent,
                "start",
                nm,
                start + i * step,
                service=svc,
                info={"i": i, "args": ["a", 1], "nested": {"x": None, "y": 1.5}},
            )
        )
    for i in reversed(range(spans)):
        svc = services[i % len(services)] if services else service
        nm = name if i == 0 else f"{name}{i}"
        err = error_at == i
        info: dict[str, Any] = {"etype": "ValueError", "message": "boom"} if err else {}
        parent = base_id if i == 0 else ids[i - 1]
        points.append(
            make_point(
                base_id,
                ids[i],
                parent,
                "stop",
                nm,
                start + (2 * spans - i) * step,
                service=svc,
                error=err,
                info=info,
            )
        )
    return points


def _key(points: list[Point]) -> list[tuple[Any, ...]]:
    return sorted(
        tuple(repr(p[k]) if k == "info" else p[k] for k in POINT_KEYS)  # type: ignore[literal-required]
        for p in points
    )


def _ids(rows: list[TraceSummary]) -> list[str]:
    return [r.base_id for r in rows]


class DriverConformance:
    """Subclass in a test module and provide the ``driver_url`` fixture (fresh store per test)."""

    @pytest.fixture
    def driver_url(self) -> str:  # pragma: no cover - must be overridden
        raise NotImplementedError("provide a driver_url fixture returning a fresh store's URL")

    @pytest.fixture
    def driver(self, driver_url: str) -> Iterator[Any]:
        drv = load_driver(driver_url)
        try:
            yield drv
        finally:
            drv.close()

    # -- round trips --------------------------------------------------------------------------
    def test_points_round_trip_exactly(self, driver: Any) -> None:
        points = make_trace(4)
        points[0]["info"] = {
            "function": {"name": "m.f", "args": "('x', 2)", "kwargs": "{}"},
            "unicode": "naïve ☃ 日本",
            "quotes": "a \"quoted\" 'value', with = signs\nand a newline\tand tab",
            "big": 2**62,
            "neg": -5,
            "float": 0.1,
            "bool": True,
            "none": None,
            "list": [1, "two", [3.0], {"four": 4}],
        }
        driver.notify(points)
        got = driver.get_report(points[0]["base_id"])
        assert _key(got) == _key(points)
        for p in got:
            assert isinstance(p["timestamp"], int)
            assert isinstance(p["error"], bool)

    def test_unknown_trace_reads_as_empty(self, driver: Any) -> None:
        driver.notify(make_trace(1))
        assert driver.get_report(uuid.uuid4().hex) == []

    def test_traces_do_not_mix(self, driver: Any) -> None:
        a, b = make_trace(3), make_trace(2)
        driver.notify(a + b)
        assert _key(driver.get_report(a[0]["base_id"])) == _key(a)
        assert _key(driver.get_report(b[0]["base_id"])) == _key(b)

    def test_redelivery_is_idempotent(self, driver: Any) -> None:
        points = make_trace(3)
        driver.notify(points)
        driver.notify(points)
        driver.notify(points[:2])
        got = driver.get_report(points[0]["base_id"])
        assert len(got) == len(points)
        (row,) = driver.list_traces(TraceFilter())
        assert row.span_count == 3

    def test_special_characters_in_names_and_services(self, driver: Any) -> None:
        odd = 'we ird, name="x" \\ \n☃'
        points = make_trace(2, name=odd, service="svc with space,comma=eq")
        driver.notify(points)
        assert _key(driver.get_report(points[0]["base_id"])) == _key(points)
        (row,) = driver.list_traces(TraceFilter(service="svc with space,comma=eq"))
        assert row.name == odd

    def test_a_new_instance_reads_what_another_wrote(self, driver: Any, driver_url: str) -> None:
        points = make_trace(2)
        driver.notify(points)
        other = load_driver(driver_url)
        try:
            assert _key(other.get_report(points[0]["base_id"])) == _key(points)
        finally:
            other.close()
        driver.close()  # closing twice is harmless (the fixture closes again)

    def test_unfinished_spans_are_stored_and_reported(self, driver: Any) -> None:
        points = make_trace(3)
        open_span = [p for p in points if not (p["event"] == "stop" and p["name"] == "op2")]
        driver.notify(open_span)
        report = build_report(points[0]["base_id"], driver.get_report(points[0]["base_id"]))
        assert report.span_count == 3
        assert report.unfinished_count == 1

    # -- volume and concurrency ---------------------------------------------------------------
    def test_large_batch_and_large_trace(self, driver: Any) -> None:
        points = make_trace(1500)  # 3,000 points in one batch and one trace
        driver.notify(points)
        got = driver.get_report(points[0]["base_id"])
        assert len(got) == 3000
        assert _key(got) == _key(points)

    def test_concurrent_writers(self, driver: Any) -> None:
        traces = [make_trace(5) for _ in range(8)]
        errors: list[BaseException] = []

        def write(t: list[Point]) -> None:
            try:
                for i in range(0, len(t), 3):
                    driver.notify(t[i : i + 3])
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(t,)) for t in traces]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        assert not errors
        for t in traces:
            assert len(driver.get_report(t[0]["base_id"])) == 10

    # -- list_traces ----------------------------------------------------------------------------
    def _three(self, driver: Any) -> list[list[Point]]:
        t0 = time.time_ns() - 3_600_000_000_000
        traces = [
            make_trace(2, start=t0, service="api", step=1_000),
            make_trace(3, start=t0 + 10_000_000, services=["api", "worker"], step=5_000_000),
            make_trace(1, start=t0 + 20_000_000, service="db", name="query", error_at=0),
        ]
        for t in traces:
            driver.notify(t)
        return traces

    def test_list_traces_newest_first_with_summary(self, driver: Any) -> None:
        a, b, c = self._three(driver)
        rows = driver.list_traces(TraceFilter())
        assert _ids(rows) == [c[0]["base_id"], b[0]["base_id"], a[0]["base_id"]]
        rb = rows[1]
        assert rb.start == min(p["timestamp"] for p in b)
        assert rb.end == max(p["timestamp"] for p in b)
        assert rb.duration == rb.end - rb.start
        assert rb.span_count == 3
        assert tuple(rb.services) == ("api", "worker")
        assert rb.name == "op"
        assert rb.error is False
        assert rows[0].error is True
        assert rows[0].name == "query"

    def test_list_traces_paging(self, driver: Any) -> None:
        t0 = time.time_ns() - 7_200_000_000_000
        traces = [make_trace(1, start=t0 + i * 1_000_000) for i in range(7)]
        driver.notify([p for t in traces for p in t])
        expected = [t[0]["base_id"] for t in reversed(traces)]
        pages = [_ids(driver.list_traces(TraceFilter(limit=3, offset=off))) for off in (0, 3, 6, 9)]
        assert pages[0] == expected[:3]
        assert pages[1] == expected[3:6]
        assert pages[2] == expected[6:]
        assert pages[3] == []

    def test_list_traces_filters(self, driver: Any) -> None:
        a, b, c = self._three(driver)
        ida, idb, idc = a[0]["base_id"], b[0]["base_id"], c[0]["base_id"]
        assert set(_ids(driver.list_traces(TraceFilter(service="api")))) == {ida, idb}
        assert _ids(driver.list_traces(TraceFilter(service="worker"))) == [idb]
        assert _ids(driver.list_traces(TraceFilter(service="nope"))) == []
        assert _ids(driver.list_traces(TraceFilter(name="op2"))) == [idb]
        assert _ids(driver.list_traces(TraceFilter(name="query"))) == [idc]
        start_b = min(p["timestamp"] for p in b)
        assert _ids(driver.list_traces(TraceFilter(since=start_b))) == [idc, idb]
        assert _ids(driver.list_traces(TraceFilter(until=start_b))) == [idb, ida]
        assert _ids(driver.list_traces(TraceFilter(since=start_b, until=start_b))) == [idb]
        assert _ids(driver.list_traces(TraceFilter(min_duration=10_000_000))) == [idb]
        assert _ids(driver.list_traces(TraceFilter(errors=True))) == [idc]
        assert _ids(driver.list_error_traces(TraceFilter())) == [idc]
        assert _ids(driver.list_error_traces(TraceFilter(service="api"))) == []
        assert _ids(driver.list_traces(TraceFilter(service="api", name="op1"))) == [idb, ida]

    def test_empty_store_lists_nothing(self, driver: Any) -> None:
        assert driver.list_traces(TraceFilter()) == []
        assert driver.list_error_traces(TraceFilter()) == []


class NetworkDriverConformance(DriverConformance):
    """For drivers of a networked store: also provide ``unreachable_url``."""

    @pytest.fixture
    def unreachable_url(self) -> str:  # pragma: no cover - must be overridden
        raise NotImplementedError(
            "provide unreachable_url: this scheme, nothing listening, password s3cret"
        )

    # -- failure ------------------------------------------------------------------------------
    def test_unreachable_store_fails_fast_without_leaking_the_password(
        self, unreachable_url: str
    ) -> None:
        drv = load_driver(unreachable_url)
        assert "s3cret" not in repr(drv) and "s3cret" not in str(drv.url)
        began = time.monotonic()
        with pytest.raises(Exception) as info:  # noqa: B017 - any error, but bounded and clean
            drv.notify(make_trace(1))
        elapsed = time.monotonic() - began
        drv.close()
        assert elapsed < 30, f"notify to an unreachable store took {elapsed:.1f}s"
        assert "s3cret" not in str(info.value)
        assert "s3cret" not in repr(info.value)
