"""The tracing API: init/get/clean/start/stop, decorators, class helpers, Trace, errors,
hostile arguments. Points go through the real dispatcher into the memory driver (or sqlite)
and are read back as the CLI would."""

from __future__ import annotations

import asyncio
import gc
import json
import sqlite3
import sys
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from xprofiler.core import profiler
from xprofiler.core.builtin.memory import MemoryDriver
from xprofiler.core.points import POINT_KEYS, Point
from xprofiler.core.tracing import Trace, TracedMeta, trace, trace_cls
from xprofiler.core.tree import Report, build_report
from xprofiler.core.uri import parse_url

MOD = __name__


class Store:
    def __init__(self, url: str) -> None:
        self.driver = MemoryDriver(parse_url(url))

    def points(self, base_id: str) -> list[Point]:
        assert profiler.flush(10)
        return sorted(self.driver.get_report(base_id), key=lambda p: p["timestamp"])

    def report(self, base_id: str) -> Report:
        return build_report(base_id, self.points(base_id))


@pytest.fixture
def store() -> Iterator[Store]:
    url = f"memory://{uuid.uuid4().hex}"
    profiler.clean()
    profiler.setup(
        url, service="svc", project="proj", host="host-1", hmac_keys=["k1"], flush_interval=0.05
    )
    yield Store(url)
    profiler.clean()
    profiler.shutdown()


def shape(report: Report) -> list[Any]:
    """The tree as nested [name, [children...]] lists."""

    def one(span: Any) -> list[Any]:
        return [span.name, [one(c) for c in span.children]]

    return [one(r) for r in report.roots]


def only(report: Report, name: str) -> Any:
    found = [s for s in report.spans() if s.name == name]
    assert len(found) == 1, [s.name for s in report.spans()]
    return found[0]


class CountingRepr:
    """An argument that counts how often it is repr'd (and str'd)."""

    def __init__(self) -> None:
        self.calls = 0

    def __repr__(self) -> str:
        self.calls += 1
        return "<counted>"

    __str__ = __repr__


class ReprRaises:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


# -- init / get / clean / start / stop -----------------------------------------------------------


def test_init_get_clean(store: Store) -> None:
    assert profiler.get() is None
    p = profiler.init("k1")
    got = profiler.get()
    assert got is not None
    assert got.get_base_id() == p.get_base_id()
    assert got.get_id() == p.get_base_id() == got.get_parent_id()
    assert got.hmac_key == "k1"
    uuid.UUID(p.get_base_id())  # a fresh trace gets a uuid base id
    profiler.clean()
    assert profiler.get() is None


def test_init_continues_a_given_trace(store: Store) -> None:
    p = profiler.init("k1", base_id="b-123", parent_id="caller-span")
    assert p.get_base_id() == "b-123" and p.get_id() == "caller-span"
    profiler.start("here")
    profiler.stop()
    (start, stop) = store.points("b-123")
    assert start["parent_id"] == "caller-span" and stop["parent_id"] == "caller-span"


def test_start_stop_nest_and_points_are_complete(store: Store) -> None:
    base = profiler.init("k1").get_base_id()
    profiler.start("outer", {"k": 1})
    outer_id = profiler.get().get_id()
    assert outer_id != base and profiler.get().get_parent_id() == base
    profiler.start("inner")
    assert profiler.get().get_parent_id() == outer_id
    profiler.stop({"rows": 3})
    assert profiler.get().get_id() == outer_id
    profiler.stop()
    assert profiler.get().get_id() == base
    profiler.stop()  # nothing open: a no-op, not an error
    profiler.stop()
    assert profiler.get().get_id() == base

    pts = store.points(base)
    assert [(p["event"], p["name"]) for p in pts] == [
        ("start", "outer"),
        ("start", "inner"),
        ("stop", "inner"),
        ("stop", "outer"),
    ]
    for p in pts:
        assert tuple(p) == POINT_KEYS or set(p) == set(POINT_KEYS)
        assert p["base_id"] == base
        assert (p["service"], p["project"], p["host"]) == ("svc", "proj", "host-1")
        assert p["error"] is False
        assert isinstance(p["timestamp"], int)
        assert p["id"] == f"{p['trace_id']}-{p['event']}"
    assert pts[0]["info"] == {"k": 1} and pts[0]["parent_id"] == base
    assert pts[1]["parent_id"] == outer_id == pts[0]["trace_id"]
    assert pts[2]["info"] == {"rows": 3}
    assert [p["timestamp"] for p in pts] == sorted(p["timestamp"] for p in pts)


def test_start_and_stop_without_a_trace_are_no_ops(store: Store) -> None:
    profiler.start("nothing", {"x": 1})
    profiler.stop()
    assert profiler.get() is None
    assert profiler.flush(5)
    assert profiler.dispatcher_stats()["delivered"] == 0
    assert store.driver.list_traces() == []


def test_start_with_info_that_is_not_a_dict_does_not_raise(store: Store) -> None:
    base = profiler.init("k1").get_base_id()
    profiler.start("odd", "just text")  # type: ignore[arg-type]
    profiler.stop(12)  # type: ignore[arg-type]
    start, stop = store.points(base)
    assert start["info"] == {"info": "just text"} and stop["info"] == {"info": 12}


def test_ids_are_unique_across_many_spans(store: Store) -> None:
    base = profiler.init("k1").get_base_id()
    for _ in range(2000):
        profiler.start("s")
        profiler.stop()
    pts = store.points(base)
    assert len({p["trace_id"] for p in pts}) == 2000


# -- the decorator ---------------------------------------------------------------------------


@trace("db", info={"db": "main"})
def query(sql: str, limit: int = 10) -> list[int]:
    """Run a query."""
    return [1, 2]


@trace("db", hide_args=True, hide_result=False)
def secret_query(password: str) -> dict[str, int]:
    return {"rows": 2}


def test_decorator_records_name_args_and_info(store: Store) -> None:
    base = profiler.init("k1").get_base_id()
    assert query("select 1", limit=5) == [1, 2]
    start, stop = store.points(base)
    assert start["name"] == "db"
    assert start["info"]["db"] == "main"
    assert start["info"]["function"] == {
        "name": f"{MOD}.query",
        "args": "('select 1',)",
        "kwargs": "{'limit': 5}",
    }
    assert stop["info"] == {}  # results are hidden by default


def test_decorator_keeps_the_function_identity() -> None:
    assert query.__name__ == "query" and query.__doc__ == "Run a query."
    assert query.__wrapped__.__name__ == "query"  # type: ignore[attr-defined]


def test_hide_args_and_show_result(store: Store) -> None:
    base = profiler.init("k1").get_base_id()
    secret_query("hunter2")
    start, stop = store.points(base)
    assert "args" not in start["info"]["function"] and "kwargs" not in start["info"]["function"]
    assert "hunter2" not in json.dumps(start)
    assert stop["info"] == {"function": {"result": "{'rows': 2}"}}


def test_allow_multiple_trace_false_refuses_re_decoration() -> None:
    def f() -> None:
        pass

    once = trace("a")(f)
    with pytest.raises(ValueError, match="already traced"):
        trace("b", allow_multiple_trace=False)(once)
    trace("a", allow_multiple_trace=False)(f)  # the plain function is fine


def test_allow_multiple_trace_true_nests_two_spans(store: Store) -> None:
    twice = trace("outer")(trace("inner")(lambda: 1))
    base = profiler.init("k1").get_base_id()
    assert twice() == 1
    assert shape(store.report(base)) == [["outer", [["inner", []]]]]


def test_decorated_method_records_self_and_args(store: Store) -> None:
    class Repo:
        @trace("repo")
        def get(self, key: str) -> str:
            return key.upper()

    base = profiler.init("k1").get_base_id()
    assert Repo().get("x") == "X"
    (start, _stop) = store.points(base)
    assert start["info"]["function"]["name"].endswith("Repo.get")
    assert "'x'" in start["info"]["function"]["args"]


# -- classes ---------------------------------------------------------------------------------


@trace_cls("api", trace_static_methods=True, trace_class_methods=True)
class Api:
    def public(self, x: int) -> int:
        return self._private(x) + 1

    def _private(self, x: int) -> int:
        return x * 2

    @staticmethod
    def static(x: int) -> int:
        return x + 100

    @classmethod
    def klass(cls, x: int) -> str:
        return f"{cls.__name__}:{x}"

    @trace("explicit")
    def explicit(self) -> int:
        return 7


@trace_cls("plain")
class PlainStatic:
    @staticmethod
    def static() -> int:
        return 1

    @classmethod
    def klass(cls) -> int:
        return 2


def test_trace_cls_traces_public_methods_only(store: Store) -> None:
    base = profiler.init("k1").get_base_id()
    assert Api().public(3) == 7
    assert shape(store.report(base)) == [["api", []]]  # _private is not traced


def test_trace_cls_static_and_class_methods(store: Store) -> None:
    base = profiler.init("k1").get_base_id()
    assert Api.static(1) == 101 and Api().static(2) == 102
    assert Api.klass(5) == "Api:5"
    assert PlainStatic.static() == 1 and PlainStatic.klass() == 2
    report = store.report(base)
    assert shape(report) == [["api", []], ["api", []], ["api", []]]
    names = [s.start_info["function"]["name"] for s in report.spans()]
    assert names == [f"{MOD}.Api.static"] * 2 + [f"{MOD}.Api.klass"]
    assert isinstance(Api.__dict__["static"], staticmethod)
    assert isinstance(Api.__dict__["klass"], classmethod)


def test_trace_cls_keeps_an_explicit_trace(store: Store) -> None:
    base = profiler.init("k1").get_base_id()
    assert Api().explicit() == 7
    assert shape(store.report(base)) == [["explicit", []]]


def test_trace_cls_private_when_asked(store: Store) -> None:
    @trace_cls("all", trace_private=True)
    class All:
        def a(self) -> int:
            return self._b()

        def _b(self) -> int:
            return 1

        def __len__(self) -> int:  # dunders are never traced
            return 0

    base = profiler.init("k1").get_base_id()
    assert All().a() == 1 and len(All()) == 0
    assert shape(store.report(base)) == [["all", [["all", []]]]]


def test_trace_cls_allow_multiple_false_raises_on_an_already_traced_method() -> None:
    with pytest.raises(ValueError, match="already traced"):

        @trace_cls("c", allow_multiple_trace=False)
        class C:
            @trace("m")
            def m(self) -> None:
                pass


def test_traced_meta(store: Store) -> None:
    class Rpc(metaclass=TracedMeta):
        __trace_args__ = {"name": "rpc", "hide_args": True, "info": {"layer": "rpc"}}

        def call(self, secret: str) -> str:
            return "ok"

        def _internal(self) -> None:
            pass

    class SubRpc(Rpc):
        def other(self) -> int:
            return 1

    base = profiler.init("k1").get_base_id()
    assert Rpc().call("hunter2") == "ok"
    Rpc()._internal()
    assert SubRpc().other() == 1
    assert SubRpc().call("x") == "ok"
    report = store.report(base)
    assert shape(report) == [["rpc", []]] * 3
    first = report.roots[0]
    assert first.start_info["layer"] == "rpc"
    assert "args" not in first.start_info["function"]
    assert report.roots[1].start_info["function"]["name"].endswith("SubRpc.other")


def test_traced_meta_without_name_or_with_unknown_keys() -> None:
    with pytest.raises(TypeError, match="'name'"):

        class NoName(metaclass=TracedMeta):
            __trace_args__ = {"hide_args": True}

    with pytest.raises(TypeError, match="'name'"):

        class NoArgs(metaclass=TracedMeta):
            pass

    with pytest.raises(TypeError, match="unknown __trace_args__ keys.*'colour'"):

        class Typo(metaclass=TracedMeta):
            __trace_args__ = {"name": "x", "colour": "red"}


# -- async functions -------------------------------------------------------------------------


@trace("aio", hide_result=False)
async def async_double(x: int) -> int:
    await asyncio.sleep(0)
    async with Trace("aio-inner"):
        await asyncio.sleep(0)
    return 2 * x


@trace("aio")
async def async_fail() -> None:
    await asyncio.sleep(0)
    raise KeyError("missing")


def test_async_function(store: Store) -> None:
    async def main() -> str:
        base = profiler.init("k1").get_base_id()
        assert await async_double(4) == 8
        return base

    base = asyncio.run(main())
    report = store.report(base)
    assert shape(report) == [["aio", [["aio-inner", []]]]]
    assert report.roots[0].stop_info == {"function": {"result": "8"}}


def test_async_function_error(store: Store) -> None:
    async def main() -> tuple[str, BaseException]:
        base = profiler.init("k1").get_base_id()
        with pytest.raises(KeyError) as info:
            await async_fail()
        return base, info.value

    base, exc = asyncio.run(main())
    span = only(store.report(base), "aio")
    assert span.error and span.exception == {"type": "KeyError", "message": "'missing'"}


# -- generators ------------------------------------------------------------------------------


@trace("gen", hide_result=False)
def numbers(n: int) -> Iterator[int]:
    for i in range(n):
        with Trace("produce"):
            pass
        yield i
    return n  # noqa: B901 - the return value is part of what is traced


def test_generator_span_covers_its_life_and_consumer_spans_are_siblings(store: Store) -> None:
    base = profiler.init("k1").get_base_id()
    got = []
    with Trace("consumer"):
        for x in numbers(2):
            with Trace("use"):
                got.append(x)
    assert got == [0, 1]
    report = store.report(base)
    assert shape(report) == [
        ["consumer", [["gen", [["produce", []], ["produce", []]]], ["use", []], ["use", []]]]
    ]
    gen = only(report, "gen")
    assert gen.stop_info == {"function": {"result": "2"}}
    assert gen.start_info["function"]["args"] == "(2,)"


def test_generator_send_and_return_value(store: Store) -> None:
    @trace("acc", hide_result=False)
    def accumulate() -> Iterator[int]:
        total = 0
        while True:
            value = yield total
            if value is None:
                return total
            total += value

    base = profiler.init("k1").get_base_id()
    g = accumulate()
    assert next(g) == 0
    assert g.send(5) == 5 and g.send(2) == 7
    with pytest.raises(StopIteration) as done:
        g.send(None)
    assert done.value.value == 7
    assert only(store.report(base), "acc").stop_info == {"function": {"result": "7"}}


def test_generator_early_close(store: Store) -> None:
    closed = []

    @trace("gen")
    def forever() -> Iterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.append(True)

    base = profiler.init("k1").get_base_id()
    g = forever()
    assert [next(g), next(g)] == [0, 1]
    g.close()
    assert closed == [True]
    span = only(store.report(base), "gen")
    assert span.finished and not span.error and span.stop_info == {"closed": True}
    assert profiler.get().get_id() == base


def test_generator_exception_thrown_in_and_handled(store: Store) -> None:
    @trace("gen")
    def resilient() -> Iterator[str]:
        while True:
            try:
                yield "item"
            except ValueError as exc:
                yield f"handled {exc}"
                return

    base = profiler.init("k1").get_base_id()
    g = resilient()
    assert next(g) == "item"
    assert g.throw(ValueError("x")) == "handled x"
    with pytest.raises(StopIteration):
        next(g)
    span = only(store.report(base), "gen")
    assert span.finished and not span.error


def test_generator_exception_thrown_in_and_not_handled(store: Store) -> None:
    @trace("gen")
    def fragile() -> Iterator[int]:
        yield 1
        yield 2

    base = profiler.init("k1").get_base_id()
    g = fragile()
    next(g)
    boom = ValueError("thrown in")
    with pytest.raises(ValueError) as info:
        g.throw(boom)
    assert info.value is boom
    span = only(store.report(base), "gen")
    assert span.error and span.exception == {"type": "ValueError", "message": "thrown in"}


def test_generator_raising_by_itself(store: Store) -> None:
    @trace("gen")
    def bad() -> Iterator[int]:
        yield 1
        raise LookupError("gone")

    base = profiler.init("k1").get_base_id()
    with pytest.raises(LookupError, match="gone"):
        list(bad())
    assert only(store.report(base), "gen").error
    assert profiler.get().get_id() == base


def test_generator_span_left_open_across_yield_stays_inside_the_generator(store: Store) -> None:
    @trace("gen")
    def holds_a_span() -> Iterator[int]:
        with Trace("held"):
            yield 1
            yield 2

    base = profiler.init("k1").get_base_id()
    for _ in holds_a_span():
        with Trace("between"):
            pass
    assert profiler.get().get_id() == base
    report = store.report(base)
    assert shape(report) == [["gen", [["held", []]]], ["between", []], ["between", []]]
    assert report.unfinished_count == 0 and report.orphan_count == 0


def test_generator_collected_later_does_not_disturb_the_current_context(store: Store) -> None:
    @trace("gen")
    def gen() -> Iterator[int]:
        yield 1
        yield 2

    base = profiler.init("k1").get_base_id()
    g = gen()
    next(g)
    profiler.start("later")
    later = profiler.get().get_id()
    del g
    gc.collect()  # closes the generator here, inside "later"
    assert profiler.get().get_id() == later
    profiler.stop()
    assert profiler.get().get_id() == base
    report = store.report(base)
    assert shape(report) == [["gen", []], ["later", []]]
    assert only(report, "gen").stop_info == {"closed": True}


def test_untraced_generator_passes_send_and_throw_through() -> None:
    assert profiler.get() is None

    @trace("gen")
    def echo() -> Iterator[Any]:
        received = None
        while True:
            try:
                received = yield received
            except KeyError:
                received = "caught"

    g = echo()
    assert next(g) is None
    assert g.send("a") == "a"
    assert g.throw(KeyError()) == "caught"
    g.close()


# -- async generators ------------------------------------------------------------------------


def test_async_generator_traced(store: Store) -> None:
    @trace("agen")
    async def ticks(n: int) -> Any:
        for i in range(n):
            async with Trace("tick"):
                await asyncio.sleep(0)
                yield i

    async def main() -> tuple[str, list[int]]:
        base = profiler.init("k1").get_base_id()
        got = []
        async for x in ticks(3):
            with Trace("use"):
                got.append(x)
        return base, got

    base, got = asyncio.run(main())
    assert got == [0, 1, 2]
    assert shape(store.report(base)) == [
        ["agen", [["tick", []], ["tick", []], ["tick", []]]],
        ["use", []],
        ["use", []],
        ["use", []],
    ]


def test_async_generator_asend_athrow_and_close(store: Store) -> None:
    @trace("agen")
    async def echo() -> Any:
        received = None
        while True:
            try:
                received = yield received
            except KeyError:
                received = "caught"

    async def run(traced: bool) -> str | None:
        base = profiler.init("k1").get_base_id() if traced else None
        g = echo()
        assert await g.asend(None) is None
        assert await g.asend("a") == "a"
        assert await g.athrow(KeyError()) == "caught"
        await g.aclose()
        return base

    assert asyncio.run(run(traced=False)) is None  # untraced: the same protocol works
    base = asyncio.run(run(traced=True))
    assert base is not None
    span = only(store.report(base), "agen")
    assert span.stop_info == {"closed": True} and not span.error


def test_async_generator_error(store: Store) -> None:
    @trace("agen")
    async def bad() -> Any:
        yield 1
        raise OSError("disk")

    async def main() -> str:
        base = profiler.init("k1").get_base_id()
        with pytest.raises(OSError, match="disk"):
            async for _ in bad():
                pass
        assert profiler.get().get_id() == base
        return base

    base = asyncio.run(main())
    span = only(store.report(base), "agen")
    assert span.error and span.exception == {"type": "OSError", "message": "disk"}


# -- Trace, the context manager -----------------------------------------------------------


def test_trace_context_manager(store: Store) -> None:
    base = profiler.init("k1").get_base_id()
    with Trace("block", info={"statement": "select 1"}) as t:
        assert isinstance(t, Trace)
        with Trace("nested"):
            pass
    report = store.report(base)
    assert shape(report) == [["block", [["nested", []]]]]
    assert report.roots[0].start_info == {"statement": "select 1"}


def test_trace_context_manager_async(store: Store) -> None:
    async def main() -> str:
        base = profiler.init("k1").get_base_id()
        async with Trace("ablock"):
            await asyncio.sleep(0)
        return base

    assert shape(store.report(asyncio.run(main()))) == [["ablock", []]]


def test_trace_without_a_trace_is_a_no_op(store: Store) -> None:
    with Trace("nothing"):
        profiler.init("k1")  # a trace begun inside does not get a stop from this block
        base = profiler.get().get_base_id()
    assert profiler.get().get_id() == base
    assert store.points(base) == []


# -- errors ---------------------------------------------------------------------------------


class ServiceError(Exception):
    pass


@trace("svc")
def failing(x: int) -> None:
    raise ServiceError(f"cannot handle {x}")


def test_exception_is_recorded_and_reraised_unchanged(store: Store) -> None:
    base = profiler.init("k1").get_base_id()
    with pytest.raises(ServiceError) as info:
        failing(3)
    exc = info.value
    assert str(exc) == "cannot handle 3"
    # The traceback still reaches the frame that raised.
    frames = [f.name for f in traceback.extract_tb(exc.__traceback__)]
    assert frames[-1] == "failing"
    assert exc.__cause__ is None and exc.__context__ is None
    pts = store.points(base)
    stop = next(p for p in pts if p["event"] == "stop")
    assert stop["error"] is True
    assert stop["info"]["etype"] == "ServiceError"
    assert stop["info"]["message"] == "cannot handle 3"
    assert next(p for p in pts if p["event"] == "start")["error"] is False
    assert profiler.get().get_id() == base
    errors = store.driver.list_error_traces()
    assert [s.base_id for s in errors] == [base]


def test_same_exception_object_through_nested_spans(store: Store) -> None:
    boom = ServiceError("deep")

    @trace("inner")
    def inner() -> None:
        raise boom

    @trace("outer")
    def outer() -> None:
        with Trace("block"):
            inner()

    base = profiler.init("k1").get_base_id()
    with pytest.raises(ServiceError) as info:
        outer()
    assert info.value is boom
    report = store.report(base)
    assert shape(report) == [["outer", [["block", [["inner", []]]]]]]
    assert report.error_count == 3


def test_base_exceptions_are_recorded_too(store: Store) -> None:
    @trace("stop")
    def interrupt() -> None:
        raise KeyboardInterrupt

    base = profiler.init("k1").get_base_id()
    with pytest.raises(KeyboardInterrupt):
        interrupt()
    assert only(store.report(base), "stop").exception == {
        "type": "KeyboardInterrupt",
        "message": "",
    }


def test_exception_whose_str_fails(store: Store) -> None:
    class Ugly(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    @trace("ugly")
    def f() -> None:
        raise Ugly()

    base = profiler.init("k1").get_base_id()
    with pytest.raises(Ugly):
        f()
    span = only(store.report(base), "ugly")
    assert span.exception == {"type": "Ugly", "message": "<unprintable Ugly>"}


# -- hostile arguments ------------------------------------------------------------------------


def test_hostile_arguments_never_raise_and_land_bounded(store: Store) -> None:
    recursive: list[Any] = [1]
    recursive.append(recursive)
    huge_text = "x" * 5_000_000
    huge_list = list(range(1_000_000))

    @trace("hostile", hide_result=False)
    def f(*args: Any, **kwargs: Any) -> Any:
        return ReprRaises()

    base = profiler.init("k1").get_base_id()
    result = f(ReprRaises(), recursive, huge_text, huge_list, b"\x00" * 10_000_000, k=ReprRaises())
    assert isinstance(result, ReprRaises)
    start, stop = store.points(base)
    func = start["info"]["function"]
    assert len(func["args"]) <= 500 and len(func["kwargs"]) <= 500
    assert "ReprRaises" in func["args"] and "[1, [...]]" in func["args"]
    assert "ReprRaises" in func["kwargs"]
    assert len(stop["info"]["function"]["result"]) <= 500
    json.dumps(start)


def test_max_repr_bounds_argument_reprs(store: Store) -> None:
    profiler.setup(store.driver.url, service="svc", max_repr=40, flush_interval=0.05)
    base = profiler.init("k1").get_base_id()
    query("y" * 1000)
    start, _ = store.points(base)
    assert len(start["info"]["function"]["args"]) == 40


def test_unserialisable_info_is_stored_as_bounded_strings(store: Store) -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    loop["again"] = loop
    info = {
        "obj": ReprRaises(),
        "set": {1, 2},
        "bytes": b"\xff\x00",
        "nan": float("nan"),
        "big": 10**40,
        "huge_int": 10**5000,
        "loop": loop,
        "many": list(range(100_000)),
        "text": "t" * 1_000_000,
        (1, 2): "tuple key",
    }
    base = profiler.init("k1").get_base_id()
    with Trace("odd", info=info):
        pass
    start, _ = store.points(base)
    got = start["info"]
    assert got["obj"].startswith("<ReprRaises")
    assert got["set"] == "{1, 2}"
    assert got["bytes"] == "b'\\xff\\x00'"
    assert got["nan"] == "nan"
    assert got["big"] == str(10**40)
    assert got["huge_int"].startswith("<int of ")
    assert got["loop"] == {"self": "<recursive dict>", "again": "<recursive dict>"}
    assert len(got["many"]) <= 1001 and got["many"][-1].endswith("more")
    assert len(got["text"]) <= 8192
    assert got["(1, 2)"] == "tuple key"
    assert len(json.dumps(got)) < 200_000


def test_hostile_info_reaches_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    profiler.setup(f"sqlite:///{db}", service="svc", flush_interval=0.05)
    try:
        base = profiler.init("k1").get_base_id()
        with Trace("odd", info={"obj": ReprRaises(), "inf": float("inf"), "huge": 10**5000}):
            query(ReprRaises())
        assert profiler.flush(10)
        assert profiler.dispatcher_stats()["failed_batches"] == 0
    finally:
        profiler.clean()
        profiler.shutdown()
    rows = sqlite3.connect(db).execute("SELECT name, info FROM points WHERE event='start'")
    infos = {name: json.loads(info) for name, info in rows}
    assert infos["odd"]["inf"] == "inf" and infos["odd"]["obj"].startswith("<ReprRaises")
    assert "ReprRaises" in infos["db"]["function"]["args"]
    assert base


# -- no trace: arguments untouched ----------------------------------------------------------------


def test_untraced_calls_never_touch_arguments(store: Store) -> None:
    assert profiler.get() is None
    arg = CountingRepr()

    @trace("f", hide_result=False)
    def f(x: Any) -> Any:
        return x

    @trace("g")
    def g(x: Any) -> Iterator[Any]:
        yield x

    @trace("a", hide_result=False)
    async def a(x: Any) -> Any:
        return x

    @trace("ag")
    async def ag(x: Any) -> Any:
        yield x

    async def run_async() -> None:
        assert await a(arg) is arg
        assert [y async for y in ag(arg)] == [arg]

    assert f(arg) is arg
    assert list(g(arg)) == [arg]
    asyncio.run(run_async())
    with Trace("t", info={"x": arg}):
        pass
    Api().public(1)
    assert arg.calls == 0
    assert profiler.flush(5)
    assert profiler.dispatcher_stats()["delivered"] == 0


def test_hide_args_never_reprs_arguments(store: Store) -> None:
    arg = CountingRepr()
    profiler.init("k1")
    secret_query(arg)  # type: ignore[arg-type]
    assert arg.calls == 0


def test_trace_before_setup_does_not_raise(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Tracing before setup() falls back to the default store (here redirected to tmp_path).
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.delenv("PROFILER_CONNECTION_STRING", raising=False)
    profiler.shutdown()
    # As in a process that never called setup(): after an explicit shutdown() tracing stays
    # off on purpose (see test_shutdown.py), so forget that one.
    monkeypatch.setattr(profiler, "_shut_down", False)
    assert not profiler.is_setup()
    try:
        base = profiler.init("k1").get_base_id()
        assert query("x") == [1, 2]
        assert profiler.is_setup()
        assert profiler.flush(10)
    finally:
        profiler.clean()
        profiler.shutdown()
    db = tmp_path / "xprofiler" / "traces.sqlite3"
    rows = sqlite3.connect(db).execute("SELECT COUNT(*) FROM points WHERE base_id=?", (base,))
    assert rows.fetchone()[0] == 2


def test_recursion_limit_is_not_a_problem_for_deeply_nested_spans(store: Store) -> None:
    base = profiler.init("k1").get_base_id()
    depth = sys.getrecursionlimit() * 2
    for _ in range(depth):
        profiler.start("d")
    for _ in range(depth):
        profiler.stop()
    assert profiler.get().get_id() == base
    report = store.report(base)
    assert report.span_count == depth and report.unfinished_count == 0
