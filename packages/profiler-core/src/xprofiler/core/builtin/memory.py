"""``memory://[name]``: points kept in this process. Instances with the same name share data."""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from dataclasses import replace

from ..points import Point, TraceFilter, TraceSummary, summarize
from ..protocol import BaseDriver
from ..uri import URL

__all__ = ["MemoryDriver"]

_stores: dict[str, dict[str, dict[str, Point]]] = {}
_stores_lock = threading.Lock()


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
                self._traces.setdefault(p["base_id"], {}).setdefault(p["id"], copy.deepcopy(p))

    def get_report(self, base_id: str) -> list[Point]:
        with self._lock:
            return [copy.deepcopy(p) for p in self._traces.get(base_id, {}).values()]

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
