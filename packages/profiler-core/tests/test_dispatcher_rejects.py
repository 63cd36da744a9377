"""A store that refuses points for their content versus a store that cannot be reached.

Refused (any error but ``StoreUnavailable``/``OSError``): the batch is retried a few times, then
split in halves until the refused points stand alone; those are rejected (dropped, counted in
``stats()["rejected"]``, logged) and every other point is delivered, once, in order. Unreachable:
nothing is ever rejected; points are kept up to the bound and delivered when the store is back.

The drivers here are objects with the driver interface whose ``notify`` refuses batches
containing a marker, or raises a connection error: the behaviour under test is the
dispatcher's reaction to those errors, which no real server produces on demand.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from xprofiler.core import profiler, registry
from xprofiler.core.dispatcher import Dispatcher, SpanLabels
from xprofiler.core.errors import DriverError, StoreUnavailable
from xprofiler.core.points import POINT_KEYS, Point, TraceFilter, TraceSummary
from xprofiler.core.testing import make_point
from xprofiler.core.uri import URL, parse_url

SECRET = "pa55-w0rd"
POISON = "\u2620poison"


def points(n: int, poison: Sequence[int] = (), base: str = "b") -> list[Point]:
    return [
        make_point(
            base,
            f"t{i}",
            base,
            "start",
            "op",
            1_000 + i,
            info={"i": i, **({"marker": POISON} if i in poison else {})},
        )
        for i in range(n)
    ]


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


class PickyDriver:
    """Stores batches in a list; refuses (DriverError) every batch holding a poisoned point,
    or, with ``refuse_times``, only the first N times it sees one. ``unreachable`` makes
    notify raise ``unreachable_error`` instead, whatever the batch."""

    def __init__(self, url: URL | None = None) -> None:
        self.url = url or parse_url("picky://")
        self.stored: list[Point] = []
        self.calls: list[int] = []  # batch sizes, in order
        self.refuse_times: int | None = None
        self.refused = 0
        self.unreachable = False
        self.unreachable_error: Exception = StoreUnavailable("cannot reach picky://")
        self.lock = threading.Lock()

    def notify(self, batch: Sequence[Point]) -> None:
        with self.lock:
            self.calls.append(len(batch))
            if self.unreachable:
                raise self.unreachable_error
            bad = [p["id"] for p in batch if p["info"].get("marker") == POISON]
            if bad and (self.refuse_times is None or self.refused < self.refuse_times):
                self.refused += 1
                raise DriverError(
                    f"the store refused {bad[0]} (invalid document; url "
                    f"{self.url.render(hide_password=False)})"
                )
            self.stored.extend(dict(p) for p in batch)  # type: ignore[misc]

    def ids(self) -> list[str]:
        return [p["id"] for p in self.stored]

    def get_report(self, base_id: str) -> list[Point]:
        return [p for p in self.stored if p["base_id"] == base_id]

    def list_traces(self, filters: TraceFilter | None = None) -> list[TraceSummary]:
        return []

    def list_error_traces(self, filters: TraceFilter | None = None) -> list[TraceSummary]:
        return []

    def close(self) -> None:
        pass


@pytest.fixture
def make() -> Iterator[Callable[..., Dispatcher]]:
    made: list[Dispatcher] = []

    def factory(store: Any, **kw: Any) -> Dispatcher:
        kw.setdefault("flush_interval", 60.0)
        kw.setdefault("retry_backoff_max", 0.01)
        kw.setdefault("log_interval", 0.0)
        d = Dispatcher(store, **kw)
        made.append(d)
        return d

    yield factory
    for d in made:
        d.close(timeout=2)


# -- refused points ---------------------------------------------------------------------------


def test_refused_points_are_rejected_and_the_rest_delivered_in_order(
    make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="xprofiler")
    driver = PickyDriver()
    d = make(driver, batch_size=20)
    poison = (0, 7, 8, 33, 99)
    pts = points(100, poison=poison)
    for p in pts:
        d.put(p)
    assert d.flush(30)
    want = [p["id"] for i, p in enumerate(pts) if i not in poison]
    assert driver.ids() == want  # every good point once, in order
    st = d.stats()
    assert st["rejected"] == len(poison) and st["delivered"] == len(want)
    assert st["dropped"] == 0 and st["queued"] == 0
    assert st["last_error"].startswith("DriverError: the store refused")
    assert "refused 100" not in caplog.text  # batches are 20
    assert "refused 20 points" in caplog.text and "splitting the batch" in caplog.text
    assert f"refused {len(poison)} trace points so far" in caplog.text
    assert "point 't99-start' of trace 'b'" in caplog.text
    # Each poisoned point was tried max_attempts times on its own before being rejected.
    assert driver.calls.count(1) >= 3 * len(poison)


def test_a_refused_batch_does_not_hold_back_later_batches(make: Any) -> None:
    driver = PickyDriver()
    d = make(driver, batch_size=10)
    first = points(10, poison=range(10), base="bad")  # a batch of nothing but refused points
    later = points(30, base="good")
    for p in first + later:
        d.put(p)
    assert d.flush(30)
    assert driver.ids() == [p["id"] for p in later]
    assert [p["base_id"] for p in driver.stored] == ["good"] * 30
    assert d.stats()["rejected"] == 10 and d.stats()["delivered"] == 30


def test_a_point_refused_fewer_times_than_the_attempts_is_delivered(make: Any) -> None:
    driver = PickyDriver()
    driver.refuse_times = 2  # a passing problem: the third attempt succeeds
    d = make(driver, batch_size=8, max_attempts=3)
    pts = points(8, poison=(5,))
    for p in pts:
        d.put(p)
    assert d.flush(30)
    assert driver.ids() == [p["id"] for p in pts]
    assert driver.calls == [8, 8, 8]  # retried whole, never split
    assert d.stats()["rejected"] == 0 and d.stats()["delivered"] == 8


def test_rejection_log_and_errors_never_show_the_password(
    make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="xprofiler")
    registry.register("xptpicky", PickyDriver)
    try:
        d = make(f"xptpicky://admin:{SECRET}@127.0.0.1:9/db", batch_size=4)
        for p in points(4, poison=(2,)):
            d.put(p)
        assert d.flush(30)
    finally:
        registry.unregister("xptpicky")
    st = d.stats()
    assert st["rejected"] == 1 and st["delivered"] == 3
    assert "refused 1 trace points so far" in caplog.text
    for text in (st["last_error"], caplog.text):
        assert SECRET not in text and "pa55" not in text
    assert "admin:***@127.0.0.1:9" in caplog.text


def test_the_store_going_down_while_a_batch_is_split_loses_nothing_good(make: Any) -> None:
    driver = PickyDriver()
    d = make(driver, batch_size=16)
    pts = points(16, poison=(3,))
    gate = threading.Event()
    real_notify = driver.notify

    def notify(batch: Sequence[Point]) -> None:
        # Down from the first call on a half until the test lets it back.
        if len(batch) < 16 and not gate.is_set():
            raise ConnectionResetError("connection reset by peer")
        real_notify(batch)

    driver.notify = notify  # type: ignore[method-assign]
    for p in pts:
        d.put(p)
    d.flush(0.01)
    wait_for(lambda: d.stats()["failed_batches"] >= 10, "several failed attempts on a half")
    assert d.stats()["rejected"] == 0 and d.stats()["queued"] == 16
    gate.set()
    assert d.flush(30)
    assert driver.ids() == [p["id"] for i, p in enumerate(pts) if i != 3]
    assert d.stats()["rejected"] == 1


# -- unreachable stores ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        StoreUnavailable("cannot reach picky://"),
        ConnectionRefusedError(111, "connection denied"),
        TimeoutError(),
    ],
    ids=["StoreUnavailable", "ConnectionRefusedError", "TimeoutError"],
)
def test_an_unreachable_store_rejects_nothing_and_keeps_points_up_to_the_bound(
    make: Any, error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="xprofiler")
    driver = PickyDriver()
    driver.unreachable = True
    driver.unreachable_error = error
    d = make(driver, max_queue=40, batch_size=10)
    pts = points(60, poison=(1, 2))  # poison or not: nothing is judged while unreachable
    d.put(pts[0])
    d.flush(0.01)
    wait_for(lambda: d.stats()["failed_batches"] >= 1, "the first failure")
    for p in pts[1:]:
        d.put(p)
    failed = d.stats()["failed_batches"]
    wait_for(lambda: d.stats()["failed_batches"] >= failed + 8, "many retries")
    st = d.stats()
    assert st["rejected"] == 0 and st["queued"] == 40 and st["dropped"] == 20
    # The kept batch (one point at first) is topped up to a full one and never split.
    assert set(driver.calls) == {1, 10} and driver.calls[-6:] == [10] * 6
    assert "keeping up to 40 points and retrying" in caplog.text
    assert "the trace store picky:// refused" not in caplog.text

    driver.unreachable = False  # back; now the poisoned points are judged
    assert d.flush(30)
    assert driver.ids() == [p["id"] for i, p in enumerate(pts[:40]) if i not in (1, 2)]
    st = d.stats()
    assert st["rejected"] == 2 and st["delivered"] == 38 and st["queued"] == 0


# -- the profiler's raw points ------------------------------------------------------------------


def test_raw_tuples_become_points_and_bad_tuples_are_dropped(make: Any) -> None:
    driver = PickyDriver()
    d = make(driver, batch_size=100)
    labels = SpanLabels("svc", "proj", "host-1")
    d.put((labels, "b", "s1", "b", "start", "db", 5, False, {"q": {1, 2}}))  # type: ignore[arg-type]
    d.put((labels, "b", "s1", "b", "stop", "db", 9, True, None))  # type: ignore[arg-type]
    d.put(("svc", "b", "s2", "b", "start", "db", 5, False, None))  # type: ignore[arg-type]
    d.put((labels, "short"))  # type: ignore[arg-type]
    assert d.flush(10)
    assert d.stats()["dropped"] == 2 and d.stats()["delivered"] == 2
    start, stop = driver.stored
    assert tuple(start) == POINT_KEYS
    assert start == {
        "id": "s1-start",
        "base_id": "b",
        "trace_id": "s1",
        "parent_id": "b",
        "event": "start",
        "name": "db",
        "timestamp": 5,
        "service": "svc",
        "project": "proj",
        "host": "host-1",
        "error": False,
        "info": {"q": "{1, 2}"},
    }
    assert stop["id"] == "s1-stop" and stop["error"] is True and stop["info"] == {}


def test_a_span_open_across_setup_keeps_each_points_own_labels() -> None:
    url = "memory://labels-across-setup"
    try:
        profiler.setup(url, service="one", project="p1", host="h1", flush_interval=3600)
        base = profiler.init("k").get_base_id()
        profiler.start("outer")
        profiler.setup(url, service="two", project="p2", host="h2", flush_interval=3600)
        profiler.stop()
        assert profiler.flush(10)
        from xprofiler.core.builtin.memory import MemoryDriver

        got = MemoryDriver(parse_url(url)).get_report(base)
        labels = {(p["event"], p["service"], p["project"], p["host"]) for p in got}
        assert labels == {("start", "one", "p1", "h1"), ("stop", "two", "p2", "h2")}
    finally:
        profiler.clean()
        profiler.shutdown()
