"""bounded_repr's fast path (builtin repr() for empty containers and short tuples of plain
scalars) gives exactly what the reprlib path gives, and everything else still goes through
reprlib with its bounds."""

from __future__ import annotations

from typing import Any

import pytest

from xprofiler.core import points
from xprofiler.core.points import bounded_repr


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
