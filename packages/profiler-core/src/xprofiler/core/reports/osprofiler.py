"""The report in OSProfiler's shape, so tools built on ``osprofiler trace show --json`` work.

OSProfiler's drivers answer ``get_report`` with::

    {"info": {"name": "total", "started": 0, "finished": <ms>, "last_trace_started": <ms>},
     "children": [<node>, ...],
     "stats": {"<name>": {"count": <int>, "duration": <ms>}}}

    <node> = {"info": {"name", "project", "service", "host",
                       "started": <ms>, "finished": <ms>,
                       "meta.raw_payload.<name>-start": <the start notification>,
                       "meta.raw_payload.<name>-stop": <the stop notification>,
                       "exception": "None" | "<exception type>"},   # only once stopped
              "trace_id", "parent_id", "children": [<node>, ...]}

Times are integer milliseconds since the trace's first point, computed as OSProfiler does:
timestamps cut to microseconds, the difference truncated to whole milliseconds; a span without
a stop gets ``finished == started`` (and no ``exception`` key), one without a start gets
``started == finished``. A notification is ``{"name": "<name>-start"|"<name>-stop", "base_id",
"trace_id", "parent_id", "project", "service", "timestamp": "%Y-%m-%dT%H:%M:%S.%f" (UTC),
"info": {..., "host": ...}}``. Unlike OSProfiler, a name containing ``-`` is kept whole.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ..tree import Report, Span

__all__ = ["to_osprofiler"]


def _utc(ns: int) -> str:
    us = ns // 1000
    dt = datetime.fromtimestamp(us // 1_000_000, tz=timezone.utc).replace(
        microsecond=us % 1_000_000
    )
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f")


def _payload(span: Span, base_id: str, event: str, ts: int, info: dict[str, Any]) -> dict[str, Any]:
    body = dict(info) if isinstance(info, dict) else {"value": info}
    body["host"] = span.host
    return {
        "name": f"{span.name}-{event}",
        "base_id": base_id,
        "trace_id": span.trace_id,
        "parent_id": span.parent_id,
        "project": span.project,
        "service": span.service,
        "timestamp": _utc(ts),
        "info": body,
    }


def to_osprofiler(report: Report) -> dict[str, Any]:
    """Build OSProfiler's report dict from a report (iterative: deep traces are fine)."""
    t0_us = (report.start or 0) // 1000

    def ms(ns: int) -> int:
        return (ns // 1000 - t0_us) // 1000

    stats: dict[str, dict[str, int]] = {}
    last_started: int | None = None

    def node(span: Span) -> dict[str, Any]:
        nonlocal last_started
        info: dict[str, Any] = {
            "name": span.name,
            "project": span.project,
            "service": span.service,
            "host": span.host,
        }
        if span.start is not None:
            info[f"meta.raw_payload.{span.name}-start"] = _payload(
                span, report.base_id, "start", span.start, span.start_info
            )
        if span.stop is not None:
            info[f"meta.raw_payload.{span.name}-stop"] = _payload(
                span, report.base_id, "stop", span.stop, span.stop_info
            )
            etype = span.stop_info.get("etype") if isinstance(span.stop_info, dict) else None
            info["exception"] = "None" if etype is None else str(etype)
        started = ms(span.start) if span.start is not None else None
        finished = ms(span.stop) if span.stop is not None else None
        if span.start is not None and (last_started is None or span.start > last_started):
            last_started = span.start
        info["started"] = started if started is not None else finished
        info["finished"] = finished if finished is not None else started
        st = stats.setdefault(span.name, {"count": 0, "duration": 0})
        st["count"] += 1
        st["duration"] += info["finished"] - info["started"]
        return {
            "info": info,
            "trace_id": span.trace_id,
            "parent_id": span.parent_id,
            "children": [],
        }

    children: list[dict[str, Any]] = []
    stack: list[tuple[Span, list[dict[str, Any]]]] = [(r, children) for r in reversed(report.roots)]
    while stack:
        span, siblings = stack.pop()
        out = node(span)
        siblings.append(out)
        stack.extend((c, out["children"]) for c in reversed(span.children))

    started_at = report.start
    return {
        "info": {
            "name": "total",
            "started": 0,
            "finished": ms(report.end)
            if started_at is not None and report.end is not None
            else None,
            "last_trace_started": ms(last_started)
            if started_at is not None and last_started is not None
            else None,
        },
        "children": children,
        "stats": stats,
    }
