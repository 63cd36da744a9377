"""The fast paths of the reprs and of span info give exactly what the general paths give:
bounded_repr (builtin repr() for empty containers and short tuples of plain scalars) against
reprlib, safe_info (a plain copy of small dicts of plain values) against the bounded walk."""

from __future__ import annotations

from typing import Any

import pytest

from xprofiler.core import points
from xprofiler.core.points import (
    INFO_MAX_CHARS,
    INFO_MAX_ITEMS,
    INFO_MAX_NODES,
    INFO_MAX_STR,
    bounded_repr,
    safe_info,
)


def reference(value: Any, limit: int = 500) -> str:
    text = points._reprlib.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class StrSub(str):
    pass


VALUES: list[Any] = [
    (),
    {},
    (1,),
    (1, 2.5, True, None, "x"),
    ("a" * 10,) * 10,
    ("a" * 10,) * 11,  # more items than reprlib shows
    ("é\x00\n'\"",),
    ("\U0001f600" * 50,),
    ("x" * 198,),  # repr just within reprlib's cut
    ("x" * 199,),  # repr just over it: cut by reprlib
    ("\x00" * 60,),  # short string, long repr: cut by reprlib
    (10**37, -(10**38) + 1),  # within reprlib's maxlong (40 characters)
    (10**38, -(10**38)),  # 39 and 40 characters
    (10**40,),  # cut by reprlib
    (10**300,),
    (float("nan"), float("inf"), -0.0, 1e300),
    (False, True),
    (StrSub("sub"),),
    ((1, 2),),
    ([1, 2],),
    ({"a": 1},),
    {"a": 1},
    1,
    10**250,
    -5,
    3.25,
    None,
    True,
    "plain",
    "x" * 201,
    "q" * 200,
    b"bytes",
    [1, 2, 3],
    list(range(50)),
]


@pytest.mark.parametrize("value", VALUES, ids=[f"v{i}" for i in range(len(VALUES))])
def test_fast_path_matches_reprlib(value: Any) -> None:
    assert bounded_repr(value) == reference(value)
    assert bounded_repr(value, 16) == reference(value, 16)


def test_fast_path_is_taken_for_plain_arguments() -> None:
    # The fast path does not go through reprlib at all: a reprlib that raises shows it.
    class Broken(type(points._reprlib)):  # type: ignore[misc]
        def repr(self, x: Any) -> str:
            raise RuntimeError("reprlib used")

    saved = points._reprlib
    points._reprlib = Broken()
    try:
        assert bounded_repr((1, "a", None)) == "(1, 'a', None)"
        assert bounded_repr({}) == "{}" and bounded_repr(()) == "()"
        assert bounded_repr([1]) == "<unrepresentable list: RuntimeError>"
    finally:
        points._reprlib = saved


def test_ints_too_long_to_print_never_raise() -> None:
    # str(int) refuses more than 4300 digits (sys.int_info.default_max_str_digits); reprlib
    # raises on it (3.11) or says how many digits (3.12+)
    for value in ((10**5000,), 10**5000):
        text = bounded_repr(value)
        assert len(text) <= 500 and ("ValueError" in text or "digits" in text), text


# -- safe_info --------------------------------------------------------------------------------


def walked(value: Any) -> Any:
    return points._Walk(INFO_MAX_STR, INFO_MAX_ITEMS, INFO_MAX_NODES, INFO_MAX_CHARS).value(
        value, 0
    )


INFOS: list[Any] = [
    {},
    {"db.statement": "SELECT 1", "rows": 1},
    {"function": {"name": "m.f", "args": "(1,)", "kwargs": "{}"}},
    {"a": [1, 2.5, None, True, "x", [1, [2]]]},
    {"big": 2**63, "small": -(2**63) - 1, "ok": 2**63 - 1},
    {"nan": float("nan"), "inf": float("-inf")},
    {"long": "x" * (INFO_MAX_STR + 1)},
    {"k" * (INFO_MAX_STR + 1): 1},
    {f"k{i}": "y" * 4000 for i in range(20)},  # over the total character bound
    {f"k{i}": i for i in range(33)},  # more items than the fast path takes
    {"deep": {"a": {"b": {"c": {"d": 1}}}}},
    {1: "int key", "s": StrSub("sub")},
    {"t": (1, 2), "set": {1}},
    {"s": StrSub("x")},
]


@pytest.mark.parametrize("info", INFOS, ids=[f"i{i}" for i in range(len(INFOS))])
def test_safe_info_fast_path_matches_the_walk(info: Any) -> None:
    got = safe_info(info)
    assert got == walked(info)
    assert [type(v) for v in got.values()] == [type(v) for v in walked(info).values()]


def test_safe_info_never_returns_the_callers_containers() -> None:
    info: dict[str, Any] = {"rows": [1, 2], "sub": {"a": "b"}}
    got = safe_info(info)
    assert got == info and got is not info
    assert got["rows"] is not info["rows"] and got["sub"] is not info["sub"]
