"""The generated wrappers: ``@trace`` on a plain function builds a wrapper with the function's
own parameters. Every parameter kind, defaults (mutable ones keep their identity), methods and
class helpers, keyword calls, binding errors, recursion and coroutines behave exactly as the
undecorated function, with the profiler off and on; the metadata is the function's; anything
unusual falls back to the generic ``(*args, **kwargs)`` wrapper, which behaves the same."""

from __future__ import annotations

import asyncio
import functools
import inspect
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from xprofiler.core import profiler
from xprofiler.core.builtin.memory import MemoryDriver
from xprofiler.core.points import Point
from xprofiler.core.tracing import trace, trace_cls
from xprofiler.core.uri import parse_url

MOD = __name__


class Store:
    def __init__(self, url: str) -> None:
        self.driver = MemoryDriver(parse_url(url))

    def points(self, base_id: str) -> list[Point]:
        assert profiler.flush(10)
        return sorted(self.driver.get_report(base_id), key=lambda p: p["timestamp"])

    def starts(self, base_id: str) -> list[dict[str, Any]]:
        return [p["info"]["function"] for p in self.points(base_id) if p["event"] == "start"]


@pytest.fixture
def store() -> Iterator[Store]:
    url = f"memory://{uuid.uuid4().hex}"
    profiler.clean()
    profiler.setup(url, service="svc", flush_interval=0.05)
    yield Store(url)
    profiler.clean()
    profiler.shutdown()


def generated(w: Any, f: Any) -> bool:
    """True when ``w`` is a generated wrapper of ``f`` (its own parameters, not *args/**kw)."""
    c, fc = w.__code__, f.__code__
    return bool(
        c.co_argcount == fc.co_argcount
        and c.co_posonlyargcount == fc.co_posonlyargcount
        and c.co_kwonlyargcount == fc.co_kwonlyargcount
        and c.co_varnames[: c.co_argcount + c.co_kwonlyargcount]
        == fc.co_varnames[: fc.co_argcount + fc.co_kwonlyargcount]
    )


# -- every parameter kind ---------------------------------------------------------------------


def p_none() -> Any:
    return ()


def p_one(x: Any) -> Any:
    return (x,)


def p_pos_defaults(a: Any, b: Any = 2, c: Any = None) -> Any:
    return (a, b, c)


def p_posonly(a: Any, b: Any = 2, /, c: Any = 3) -> Any:
    return (a, b, c)


def p_kwonly(a: Any, *, k: Any, m: Any = "m", n: Any) -> Any:
    return (a, k, m, n)


def p_varargs(a: Any, b: Any = 2, *rest: Any) -> Any:
    return (a, b, rest)


def p_varkw(a: Any, /, b: Any = 2, **kw: Any) -> Any:
    return (a, b, sorted(kw.items()))


def p_all(a: Any, b: Any = 1, /, c: Any = 2, *args: Any, d: Any, e: Any = 3, **kw: Any) -> Any:
    return (a, b, c, args, d, e, sorted(kw.items()))


def p_names(
    wrapper: Any, f: Any = 0, *args: Any, self: Any = 1, kwargs: Any = 2, **ctx_get: Any
) -> Any:
    """Parameter names that are also names the wrapping code uses outside ``_xp_``."""
    return (wrapper, f, args, self, kwargs, sorted(ctx_get.items()))


CALLS: list[tuple[Callable[..., Any], list[tuple[tuple[Any, ...], dict[str, Any]]]]] = [
    (p_none, [((), {}), ((1,), {}), ((), {"x": 1})]),
    (p_one, [((1,), {}), ((), {"x": 1}), ((), {}), ((1, 2), {}), ((1,), {"x": 2})]),
    (
        p_pos_defaults,
        [
            ((1,), {}),
            ((1, 5), {}),
            ((1,), {"c": 7}),
            ((), {"a": 1, "b": 2, "c": 3}),
            ((1, 2, 3, 4), {}),
            ((1,), {"zz": 1}),
        ],
    ),
    (
        p_posonly,
        [
            ((1,), {}),
            ((1, 9), {}),
            ((1, 9, 8), {}),
            ((1,), {"c": 5}),
            ((), {"a": 1}),
            ((1,), {"b": 2}),
        ],
    ),
    (
        p_kwonly,
        [
            ((1,), {"k": 2, "n": 3}),
            ((1,), {"k": 2, "n": 3, "m": 4}),
            ((1, 2), {"k": 2, "n": 3}),
            ((1,), {"k": 2}),
            ((), {"a": 0, "k": 2, "n": 3}),
        ],
    ),
    (p_varargs, [((1,), {}), ((1, 2, 3, 4), {}), ((), {"a": 1, "b": 5}), ((1,), {"rest": 1})]),
    (
        p_varkw,
        [((1,), {}), ((1,), {"a": "into kw", "z": 2}), ((1, 3), {"b2": 4}), ((), {"a": 1})],
    ),
    (
        p_all,
        [
            ((0,), {"d": 4}),
            ((0, 1, 2, 3, 4), {"d": 5, "e": 6, "f": 7}),
            ((0,), {"c": 9, "d": 1, "b": 8}),
            ((0, 1), {}),
            ((), {"d": 1}),
        ],
    ),
    (
        p_names,
        [((1,), {}), ((1, 2, 3), {"self": 4, "kwargs": 5, "x": 6}), ((), {"wrapper": 1, "f": 2})],
    ),
]


def outcome(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        return ("ok", fn(*args, **kwargs))
    except TypeError as exc:
        return ("TypeError", str(exc))


@pytest.mark.parametrize("traced_on", [False, True], ids=["off", "on"])
@pytest.mark.parametrize("f,calls", CALLS, ids=[f.__name__ for f, _ in CALLS])
def test_wrapper_binds_and_fails_exactly_as_the_function(
    store: Store,
    f: Callable[..., Any],
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]],
    traced_on: bool,
) -> None:
    w = trace("kinds")(f)
    assert generated(w, f)
    base = profiler.init("k").get_base_id() if traced_on else None
    got = [outcome(w, a, k) for a, k in calls]
    profiler.clean()
    want = [outcome(f, a, k) for a, k in calls]
    assert got == want
    assert any(g[0] == "ok" for g in got) and any(g[0] == "TypeError" for g in got) or f is p_names
    if base is not None:
        # One span per call that bound its arguments (a binding error happens before it).
        assert len(store.starts(base)) == sum(1 for g in got if g[0] == "ok")


def test_binding_errors_name_the_function(store: Store) -> None:
    w = trace("x")(p_pos_defaults)
    for on in (False, True):
        if on:
            profiler.init("k")
        with pytest.raises(TypeError, match=r"^p_pos_defaults\(\) missing 1 required positional"):
            w()
        with pytest.raises(TypeError, match=r"p_pos_defaults\(\) got an unexpected keyword"):
            w(1, nope=2)
        with pytest.raises(TypeError, match=r"takes from 1 to 3 positional arguments but 4"):
            w(1, 2, 3, 4)
        with pytest.raises(TypeError, match=r"got multiple values for argument 'a'"):
            w(1, a=2)


# -- defaults -----------------------------------------------------------------------------------


def test_mutable_defaults_keep_their_identity(store: Store) -> None:
    def collect(x: Any, acc: list[Any] = [], *, seen: dict[str, Any] = {}) -> Any:  # noqa: B006
        acc.append(x)
        seen[str(x)] = True
        return acc, seen

    original_acc = collect.__defaults__[0]  # type: ignore[index]
    original_seen = collect.__kwdefaults__["seen"]  # type: ignore[index]
    w = trace("defaults")(collect)
    assert generated(w, collect)
    acc1, seen1 = w(1)
    profiler.init("k")
    acc2, seen2 = w(2)
    profiler.clean()
    acc3, seen3 = collect(3)
    assert acc1 is acc2 is acc3 is original_acc and acc1 == [1, 2, 3]
    assert seen1 is seen2 is seen3 is original_seen and list(seen1) == ["1", "2", "3"]
    other: list[Any] = []
    assert w(4, other)[0] is other and original_acc == [1, 2, 3]


def test_defaults_and_signature_are_the_functions(store: Store) -> None:
    w = trace("x")(p_all)
    assert inspect.signature(w) == inspect.signature(p_all)
    assert w.__defaults__ == p_all.__defaults__  # type: ignore[attr-defined]
    assert w.__kwdefaults__ == p_all.__kwdefaults__  # type: ignore[attr-defined]


# -- metadata -----------------------------------------------------------------------------------


def test_metadata_is_kept(store: Store) -> None:
    def documented(x: int, y: Undefined = None) -> NotDefinedEither:  # type: ignore[name-defined] # noqa: F821
        """Doc."""
        return x

    documented.custom = "attr"  # type: ignore[attr-defined]
    w = trace("meta")(documented)
    assert generated(w, documented)
    assert w.__name__ == "documented" and w.__doc__ == "Doc."
    assert w.__qualname__ == documented.__qualname__ and w.__module__ == MOD
    assert w.__wrapped__ is documented  # type: ignore[attr-defined]
    assert w.__annotations__ == {"x": "int", "y": "Undefined", "return": "NotDefinedEither"}
    assert str(inspect.signature(w)) == "(x: 'int', y: 'Undefined' = None) -> 'NotDefinedEither'"
    assert w.custom == "attr"  # type: ignore[attr-defined]
    assert w.__xprofiler_traced__ is True  # type: ignore[attr-defined]
    assert w(5) == 5


def test_annotations_are_never_evaluated() -> None:
    # Without ``from __future__ import annotations`` the annotations are objects; with a
    # string that names nothing, the decorator must not try to resolve it.
    ns: dict[str, Any] = {"trace": trace}
    exec(  # noqa: S102
        "@trace('ann')\ndef f(x: 'no.such.Thing' = 1, *, y: 'Nope' = 2) -> 'Bad[': return x + y\n",
        ns,
    )
    assert ns["f"]() == 3 and ns["f"](x=5, y=1) == 6


# -- methods and the class helpers ------------------------------------------------------------


@trace_cls("svc", trace_static_methods=True, trace_class_methods=True)
class Service:
    factor = 10

    def __init__(self, base: int) -> None:
        self.base = base

    def add(self, x: int, y: int = 1, *, scale: int = 1) -> int:
        return (self.base + x + y) * scale

    @classmethod
    def make(cls, base: int = 0) -> Service:
        return cls(base * cls.factor)

    @staticmethod
    def pure(a: int, /, b: int = 2) -> int:
        return a * b


def test_methods_classmethods_and_staticmethods(store: Store) -> None:
    for fn in ("add",):
        assert generated(vars(Service)[fn], vars(Service)[fn].__wrapped__)
    s = Service(1)
    base = profiler.init("k").get_base_id()
    assert s.add(2) == 4 and s.add(2, 3, scale=2) == 12 and s.add(x=1, y=1) == 3
    assert Service.add(s, 1) == 3
    assert Service.make().base == 0 and Service.make(2).base == 20 and s.make(base=1).base == 10
    assert Service.pure(3) == 6 and s.pure(3, b=3) == 9
    with pytest.raises(TypeError, match="pure"):
        Service.pure(a=3)  # type: ignore[call-arg]
    starts = store.starts(base)
    names = [st["name"].rsplit(".", 1)[1] for st in starts]
    assert names == ["add", "add", "add", "add", "make", "make", "make", "pure", "pure"]
    # optional arguments are recorded by name (y was passed by position)
    assert starts[1]["args"].endswith(" 2)") and starts[1]["kwargs"] == "{'scale': 2, 'y': 3}"
    assert starts[5]["args"].startswith("(<class ") and starts[5]["kwargs"] == "{'base': 2}"


# -- recursion and coroutines ----------------------------------------------------------------


@trace("fact")
def fact(n: int) -> int:
    return 1 if n <= 1 else n * fact(n - 1)


def test_recursion_nests_spans(store: Store) -> None:
    assert fact(5) == 120  # off
    base = profiler.init("k").get_base_id()
    assert fact(4) == 24
    pts = store.points(base)
    starts = [p for p in pts if p["event"] == "start"]
    assert len(starts) == 4
    for parent, child in zip(starts, starts[1:], strict=False):
        assert child["parent_id"] == parent["trace_id"]
    assert [s["info"]["function"]["args"] for s in starts] == ["(4,)", "(3,)", "(2,)", "(1,)"]


def test_coroutines(store: Store) -> None:
    async def fetch(url: str, /, retries: int = 1, *extra: Any, timeout: float = 1.0) -> Any:
        await asyncio.sleep(0)
        if url == "bad":
            raise ValueError("bad url")
        return (url, retries, extra, timeout)

    w = trace("fetch", hide_result=False)(fetch)
    assert generated(w, fetch) and inspect.iscoroutinefunction(w)
    assert asyncio.run(w("a")) == ("a", 1, (), 1.0)
    with pytest.raises(TypeError, match=r"fetch\(\) got some positional-only arguments"):
        asyncio.run(w(url="a"))  # type: ignore[call-arg]

    async def traced_run() -> Any:
        profiler.init("k")
        got = [await w("a", 2, 3, timeout=5), await w("b", timeout=2)]
        with pytest.raises(ValueError, match="bad url"):
            await w("bad")
        return got, profiler.get()

    got, prof = asyncio.run(traced_run())
    assert got == [("a", 2, (3,), 5), ("b", 1, (), 2)]
    pts = store.points(prof.get_base_id())
    starts = [p["info"]["function"] for p in pts if p["event"] == "start"]
    assert [(s["args"], s["kwargs"]) for s in starts] == [
        ("('a', 2, 3)", "{'timeout': 5}"),
        ("('b',)", "{'timeout': 2}"),
        ("('bad',)", "{}"),
    ]
    stops = [p for p in pts if p["event"] == "stop"]
    assert [p["error"] for p in stops] == [False, False, True]
    assert stops[0]["info"]["function"]["result"] == "('a', 2, (3,), 5)"


# -- what is recorded -----------------------------------------------------------------------------


def test_arguments_are_recorded_as_passed(store: Store) -> None:
    w = trace("rec")(p_all)
    base = profiler.init("k").get_base_id()
    w(0, d=4)
    w(0, 1, c=5, d=4, e=6, zz=7)
    w(0, 1, 2, 3, d=4)
    w(0, c=2, d=4, e=3)  # explicitly the defaults: not told apart from the defaults
    got = [(s["args"], s["kwargs"]) for s in store.starts(base)]
    assert got == [
        ("(0,)", "{'d': 4}"),
        ("(0,)", "{'c': 5, 'd': 4, 'e': 6, 'zz': 7}"),
        ("(0, 1, 2, 3)", "{'d': 4}"),
        ("(0,)", "{'d': 4}"),
    ]
    assert w(0, 9, d=4)[1] == 9  # a positional-only argument is recorded by position
    assert store.starts(base)[-1]["args"] == "(0, 9)"


def test_hide_args_records_no_arguments_and_never_reprs_them(store: Store) -> None:
    class Loud:
        def __repr__(self) -> str:
            raise AssertionError("repr'd")

    w = trace("hidden", hide_args=True)(p_all)
    base = profiler.init("k").get_base_id()
    w(Loud(), d=Loud(), x=Loud())
    (start,) = store.starts(base)
    assert set(start) == {"name"}


def test_arguments_are_not_touched_when_off(store: Store) -> None:
    class Loud:
        def __repr__(self) -> str:
            raise AssertionError("repr'd")

        def __eq__(self, other: object) -> bool:
            raise AssertionError("compared")

        __hash__ = None  # type: ignore[assignment]

    w = trace("quiet")(p_all)
    loud = Loud()
    assert w(loud, loud, loud, loud, d=loud, e=loud, k=loud)[0] is loud


# -- fallbacks ----------------------------------------------------------------------------------


def three(a: Any, b: Any, c: Any = 3) -> Any:
    return (a, b, c)


class Callable3:
    def __call__(self, a: Any, b: Any = 2) -> Any:
        return (a, b)

    def method(self, a: Any) -> Any:
        return a + 2


def clashing(_xp_f: Any, _xp_ctx: Any = 1) -> Any:
    return (_xp_f, _xp_ctx)


@pytest.mark.parametrize(
    "target,args,want",
    [
        (functools.partial(three, 1), (2,), (1, 2, 3)),
        (len, ([1, 2],), 2),
        (Callable3(), (1,), (1, 2)),
        (Callable3().method, (1,), 3),
        (clashing, (5,), (5, 1)),
    ],
    ids=["partial", "builtin", "callable-object", "bound-method", "clashing-names"],
)
def test_unusual_callables_get_the_generic_wrapper(
    store: Store, target: Any, args: tuple[Any, ...], want: Any
) -> None:
    w = trace("generic")(target)
    assert w.__code__.co_flags & inspect.CO_VARARGS  # the (*args, **kwargs) wrapper
    assert w(*args) == want
    base = profiler.init("k").get_base_id()
    assert w(*args) == want
    (start,) = store.starts(base)
    assert start["args"] == repr(args)


def test_a_function_marked_coroutine_but_not_one_is_awaited_as_before(store: Store) -> None:
    async def inner(x: int) -> int:
        return x * 2

    def returns_awaitable(x: int) -> Any:
        return inner(x)

    if hasattr(inspect, "markcoroutinefunction"):  # Python 3.12+
        inspect.markcoroutinefunction(returns_awaitable)
    w = trace("marked")(returns_awaitable)
    assert asyncio.run(w(3)) == 6
    profiler.init("k")
    assert asyncio.run(w(4)) == 8
