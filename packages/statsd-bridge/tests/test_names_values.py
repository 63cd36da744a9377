from __future__ import annotations

import math
import re

import pytest

from statsd_bridge import jsonpath, names
from statsd_bridge.values import ValueRejected, to_number

SAFE = re.compile(r"^[A-Za-z0-9_-]+$")

HOSTILE = [
    "a:1|c",
    "x|@0.1",
    "evil\nother.metric:999|g",
    "has space",
    "dots.move.it",
    "../../etc",
    "sl/ash",
    "ünïcödé",
    "表",
    "",
    "\x00\r\t",
    "a" * 500,
]


@pytest.mark.parametrize("raw", HOSTILE)
def test_sanitised_part_is_one_safe_bounded_part(raw: str) -> None:
    part = names.sanitize_part(raw, 64)
    assert SAFE.match(part), part
    assert len(part) <= 64


def test_sanitising_keeps_ordinary_names() -> None:
    assert names.sanitize_part("orders_2024-q1") == "orders_2024-q1"


def test_long_names_sharing_a_prefix_stay_distinct() -> None:
    a = names.sanitize_part("t" * 100 + "a", 32)
    b = names.sanitize_part("t" * 100 + "b", 32)
    assert a != b and len(a) == len(b) == 32


def test_template_renders_sanitised_fields_and_captures() -> None:
    t = names.parse_template("q.{name}.{*}.depth")
    out = t.render(["k1"], {"name": "a.b:1|c"}, 64)
    assert out == "q.a_b_1_c.k1.depth"


def test_template_embedding_a_placeholder_in_a_part() -> None:
    t = names.parse_template("queue_{*}.depth")
    assert t.render(["x y"], {}, 64) == "queue_x_y.depth"


@pytest.mark.parametrize(
    "text",
    ["a..b", ".a", "a.", "a b", "a:{x}", "a|b", "a.{", "a.{*0}", "a.{x[*]}", "a.{*x}", ""],
)
def test_bad_templates_are_config_errors(text: str) -> None:
    with pytest.raises(names.TemplateError):
        names.parse_template(text)


def test_template_field_must_be_a_string_or_int() -> None:
    t = names.parse_template("q.{name}")
    with pytest.raises(names.NameRejected):
        t.render([], {"name": None}, 64)
    with pytest.raises(names.NameRejected):
        t.render([], {"name": {"nested": 1}}, 64)
    with pytest.raises(names.NameRejected):
        t.render([], {}, 64)
    assert t.render([], {"name": 7}, 64) == "q.7"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(3, 3), (2.5, 2.5), (True, 1), (False, 0), (-4, -4), (10**18, 10**18), (1.0, 1)],
)
def test_numbers_pass_and_booleans_become_1_0(raw: object, expected: float) -> None:
    value = to_number(raw)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "null"),
        ("12", "string"),
        (math.nan, "nan"),
        (math.inf, "infinite"),
        (-math.inf, "infinite"),
        (10**400, "infinite"),
        ([1], "not_a_number"),
        ({"a": 1}, "not_a_number"),
    ],
)
def test_non_numbers_are_rejected_with_a_reason(raw: object, reason: str) -> None:
    with pytest.raises(ValueRejected) as info:
        to_number(raw)
    assert info.value.reason == reason


def test_scale() -> None:
    assert to_number(1048576, 1 / 1024) == 1024
    assert to_number(3, 0.5) == 1.5
    with pytest.raises(ValueRejected):
        to_number(1e308, 1e10)


def test_jsonpath_wildcards_capture_keys_and_indexes() -> None:
    doc = {"services": {"api": {"n": 1}, "db": {"n": 2}}, "q": [{"d": 5}, {"d": 6}]}
    assert list(jsonpath.parse("$.services.*.n").select(doc)) == [(("api",), 1), (("db",), 2)]
    assert list(jsonpath.parse("q[*].d").select(doc)) == [(("0",), 5), (("1",), 6)]
    assert jsonpath.parse("$.q[1].d").get(doc) == 6
    assert jsonpath.parse('$["services"]["api"].n').get(doc) == 1


def test_jsonpath_missing_and_shape_errors() -> None:
    doc = {"a": [1, 2]}
    with pytest.raises(jsonpath.PathMissing):
        jsonpath.parse("$.b").get(doc)
    with pytest.raises(jsonpath.PathMissing):
        jsonpath.parse("$.a[5]").get(doc)
    with pytest.raises(jsonpath.PathShape):
        jsonpath.parse("$.a.x").get(doc)
    assert list(jsonpath.parse("$.a[5]").select(doc, skip_missing=True)) == []


@pytest.mark.parametrize("text", ["", "$.", "$..a", "a[", "a[x]", "a b", "$a", "a['x"])
def test_jsonpath_syntax_errors(text: str) -> None:
    with pytest.raises(jsonpath.PathSyntaxError):
        jsonpath.parse(text)
