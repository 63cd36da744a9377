"""The memory:// store behind the dispatcher copies what it stores and what it returns: a
caller changing its dicts afterwards (or a reader changing a report) never changes the store."""

from __future__ import annotations

import uuid
from typing import Any

from xprofiler.core.builtin.memory import MemoryDriver
from xprofiler.core.dispatcher import Dispatcher
from xprofiler.core.testing import make_point
from xprofiler.core.uri import parse_url


def store() -> MemoryDriver:
    return MemoryDriver(parse_url(f"memory://{uuid.uuid4().hex}"))


def test_stored_points_share_nothing_with_the_callers() -> None:
    m = store()
    info: dict[str, Any] = {"rows": [1, {"deep": ["x"]}], "meta": {"k": "v"}}
    p = make_point("b", "s", "b", "start", "db", 1, info=info)
    m.notify([p])
    info["rows"][1]["deep"].append("changed")
    info["meta"]["k"] = "changed"
    p["name"] = "changed"
    (got,) = m.get_report("b")
    assert got["name"] == "db"
    assert got["info"] == {"rows": [1, {"deep": ["x"]}], "meta": {"k": "v"}}
    got["info"]["rows"][1]["deep"].append("reader")  # a reader's copy, not the store's
    got["info"]["meta"].clear()
    assert m.get_report("b")[0]["info"] == {"rows": [1, {"deep": ["x"]}], "meta": {"k": "v"}}


def test_odd_values_handed_to_notify_directly_are_copied_too() -> None:
    m = store()
    loop: dict[str, Any] = {"name": "loop"}
    loop["self"] = loop
    tags = {"a", "b"}
    pair = ([1], 2)
    p = make_point("b", "s", "b", "start", "db", 1, info={"loop": loop, "tags": tags, "pair": pair})
    m.notify([p])  # no RecursionError on the cycle
    tags.add("c")
    pair[0].append(9)
    (got,) = m.get_report("b")
    assert got["info"]["tags"] == {"a", "b"} and got["info"]["pair"] == ([1], 2)
    inner = got["info"]["loop"]
    for _ in range(100):  # still the shape of a cycle, however deep one goes
        assert inner["name"] == "loop"
        inner = inner["self"]


def test_points_through_the_dispatcher_keep_their_values() -> None:
    url = f"memory://{uuid.uuid4().hex}"
    d = Dispatcher(url, flush_interval=60)
    info: dict[str, Any] = {"args": ["a", {"b": 1}]}
    d.put(make_point("b", "s", "b", "start", "db", 1, info=info))
    assert d.flush(10)
    info["args"][1]["b"] = 2
    d.close()
    assert MemoryDriver(parse_url(url)).get_report("b")[0]["info"] == {"args": ["a", {"b": 1}]}
