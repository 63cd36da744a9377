"""One tree builder for every driver: flat points -> spans -> a report.

Rules: points are paired into spans by ``trace_id``; a span without its stop point is kept and
marked unfinished; a span whose parent is neither the trace's base id nor a known span is kept
at the top level and flagged ``orphan``; a point seen twice (same ``id``) counts once; children
are ordered by start time. Work is one pass over the points plus sorting each sibling list.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .points import Point

__all__ = ["Span", "Report", "build_report", "REPORT_SCHEMA_VERSION"]

REPORT_SCHEMA_VERSION = 1


@dataclass
class Span:
    trace_id: str
    parent_id: str
    name: str
    service: str = ""
    project: str = ""
    host: str = ""
    start: int | None = None  # ns since epoch
    stop: int | None = None
    start_info: dict[str, Any] = field(default_factory=dict)
    stop_info: dict[str, Any] = field(default_factory=dict)
    error: bool = False
    orphan: bool = False
    children: list[Span] = field(default_factory=list)
    depth: int = 0

    @property
    def finished(self) -> bool:
        return self.start is not None and self.stop is not None

    @property
    def duration(self) -> int | None:
        if self.start is None or self.stop is None:
            return None
        return self.stop - self.start

    @property
    def sort_key(self) -> int:
        if self.start is not None:
            return self.start
        return self.stop if self.stop is not None else 0

    @property
    def exception(self) -> dict[str, Any] | None:
        if not self.error:
            return None
        return {
            "type": self.stop_info.get("etype"),
            "message": self.stop_info.get("message"),
        }

    def walk(self) -> Iterable[Span]:
        """This span and its descendants, depth first, in order (no recursion)."""
        stack = [self]
        while stack:
            span = stack.pop()
            yield span
            stack.extend(reversed(span.children))

    def to_dict(self) -> dict[str, Any]:
        """This span and its subtree as JSON-ready dicts (iterative: deep traces are fine)."""
        root = self._flat_dict()
        root["children"] = []
        stack: list[tuple[Span, dict[str, Any]]] = [(self, root)]
        while stack:
            span, out = stack.pop()
            for child in span.children:
                cd = child._flat_dict()
                cd["children"] = []
                out["children"].append(cd)
                stack.append((child, cd))
        return root

    def _flat_dict(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id,
            "parent_id": self.parent_id,
            "name": self.name,
            "service": self.service,
            "project": self.project,
            "host": self.host,
            "start": self.start,
            "stop": self.stop,
            "duration": self.duration,
            "finished": self.finished,
            "error": self.error,
            "exception": self.exception,
            "orphan": self.orphan,
            "start_info": self.start_info,
            "stop_info": self.stop_info,
        }


@dataclass
class Report:
    base_id: str
    roots: list[Span]
    span_count: int
    start: int | None
    end: int | None
    services: list[str]
    hosts: list[str]
    stats: dict[str, dict[str, int]]  # name -> {"count", "duration"} (duration: ns, finished)
    error_count: int
    unfinished_count: int
    orphan_count: int

    @property
    def duration(self) -> int | None:
        if self.start is None or self.end is None:
            return None
        return self.end - self.start

    @property
    def error(self) -> bool:
        return self.error_count > 0

    def spans(self) -> Iterable[Span]:
        for root in self.roots:
            yield from root.walk()

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON shape (see docs/report-schema.md). Times are int nanoseconds."""
        return {
            "schema": REPORT_SCHEMA_VERSION,
            "base_id": self.base_id,
            "start": self.start,
            "end": self.end,
            "duration": self.duration,
            "span_count": self.span_count,
            "services": self.services,
            "hosts": self.hosts,
            "error_count": self.error_count,
            "unfinished_count": self.unfinished_count,
            "orphan_count": self.orphan_count,
            "stats": self.stats,
            "children": [r.to_dict() for r in self.roots],
        }


def _order(span: Span) -> tuple[int, str]:
    # By start time; ties by span id so the same points always give the same tree.
    return (span.sort_key, span.trace_id)


def build_report(base_id: str, points: Iterable[Point]) -> Report:
    """Pair points into spans and link them into a tree."""
    spans: dict[str, Span] = {}
    seen: set[str] = set()
    services: set[str] = set()
    hosts: set[str] = set()
    start: int | None = None
    end: int | None = None
    for p in points:
        pid = p["id"]
        if pid in seen:
            continue
        seen.add(pid)
        ts = p["timestamp"]
        start = ts if start is None or ts < start else start
        end = ts if end is None or ts > end else end
        span = spans.get(p["trace_id"])
        if span is None:
            span = spans[p["trace_id"]] = Span(
                trace_id=p["trace_id"], parent_id=p["parent_id"], name=p["name"]
            )
        if p["event"] == "start":
            span.start = ts
            span.start_info = p["info"]
            span.service, span.project, span.host = p["service"], p["project"], p["host"]
            span.parent_id = p["parent_id"]
            span.name = p["name"]
        else:
            span.stop = ts
            span.stop_info = p["info"]
            span.error = span.error or bool(p["error"])
            if span.start is None:  # keep what the stop point tells until a start arrives
                span.service, span.project, span.host = p["service"], p["project"], p["host"]
        services.add(p["service"])
        hosts.add(p["host"])

    roots: list[Span] = []
    for span in spans.values():
        if span.parent_id == base_id or span.parent_id == span.trace_id:
            roots.append(span)
            continue
        parent = spans.get(span.parent_id)
        if parent is None:
            span.orphan = True
            roots.append(span)
        else:
            parent.children.append(span)

    stats: dict[str, dict[str, int]] = {}
    counts = {"errors": 0, "unfinished": 0, "orphans": 0}
    visited: set[str] = set()

    def visit(top: Span) -> None:
        # Iterative: depth assignment, child ordering and stats without recursion.
        stack: list[tuple[Span, int]] = [(top, 0)]
        while stack:
            span, depth = stack.pop()
            if span.trace_id in visited:
                continue
            visited.add(span.trace_id)
            span.depth = depth
            span.children.sort(key=_order)
            stack.extend((c, depth + 1) for c in reversed(span.children))
            st = stats.setdefault(span.name, {"count": 0, "duration": 0})
            st["count"] += 1
            if span.duration is not None:
                st["duration"] += span.duration
            else:
                counts["unfinished"] += 1
            counts["errors"] += span.error
            counts["orphans"] += span.orphan

    roots.sort(key=_order)
    for root in roots:
        visit(root)
    if len(visited) < len(spans):
        # Spans unreachable from any root sit on a parent cycle (corrupt data). Break each
        # cycle at its earliest span, lift that span to the top level, and walk from it, so
        # the rest of the cycle hangs under it as it was recorded.
        for span in sorted(spans.values(), key=_order):
            if span.trace_id in visited:
                continue
            parent = spans.get(span.parent_id)
            if parent is not None and span in parent.children:
                parent.children.remove(span)
            span.orphan = True
            roots.append(span)
            visit(span)

    return Report(
        base_id=base_id,
        roots=roots,
        span_count=len(spans),
        start=start,
        end=end,
        services=sorted(services),
        hosts=sorted(hosts),
        stats=dict(sorted(stats.items())),
        error_count=counts["errors"],
        unfinished_count=counts["unfinished"],
        orphan_count=counts["orphans"],
    )
