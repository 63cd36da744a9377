"""``memory://[name]``: points kept in this process. Instances with the same name share data."""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ..points import Point, TraceFilter, TraceSummary, summarize
from ..protocol import BaseDriver
from ..uri import URL

__all__ = ["MemoryDriver"]

_stores: dict[str, dict[str, dict[str, Point]]] = {}
_stores_lock = threading.Lock()


_IMMUTABLE = frozenset({str, int, float, bool, type(None)})


def _copy(value: Any, depth: int = 0) -> Any:
    """A copy sharing nothing mutable with ``value``. Dicts and lists are copied level by level:
    points are JSON-shaped (the dispatcher makes their info so), and this is an order of
    magnitude cheaper than deepcopy. Anything else, or nesting deep enough to be a cycle in a
    point handed to notify directly, goes through deepcopy."""
    t = type(value)
    if t in _IMMUTABLE:
        return value
    if depth < 64:
        if t is dict:
            return {
                k: v if type(v) in _IMMUTABLE else _copy(v, depth + 1) for k, v in value.items()
            }
        if t is list:
            return [v if type(v) in _IMMUTABLE else _copy(v, depth + 1) for v in value]
    return copy.deepcopy(value)


class MemoryDriver(BaseDriver):
    def __init__(self, url: URL) -> None:
        super().__init__(url)
        name = (url.host or "") + "/" + (url.database or "")
        with _stores_lock:
            self._traces = _stores.setdefault(name, {})
        self._lock = threading.Lock()

    def notify(self, points: Sequence[Point]) -> None:
        with self._lock:
            for p in points:
                trace = self._traces.setdefault(p["base_id"], {})
                if p["id"] not in trace:
                    trace[p["id"]] = _copy(p)

    def get_report(self, base_id: str) -> list[Point]:
        with self._lock:
            return [_copy(p) for p in self._traces.get(base_id, {}).values()]

    def list_traces(self, filters: TraceFilter | None = None) -> list[TraceSummary]:
        f = filters or TraceFilter()
        with self._lock:
            rows = []
            for pts in self._traces.values():
                values = list(pts.values())
                s = summarize(values)
                if f.matches(s, {p["name"] for p in values}):
                    rows.append(s)
        rows.sort(key=lambda s: (s.start, s.base_id), reverse=True)
        return rows[f.offset : f.offset + f.limit]

    def list_error_traces(self, filters: TraceFilter | None = None) -> list[TraceSummary]:
        return self.list_traces(replace(filters or TraceFilter(), errors=True))

    def clear(self) -> None:
        with self._lock:
            self._traces.clear()
