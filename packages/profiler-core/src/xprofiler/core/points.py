"""The trace point: the one record every driver stores and returns unchanged.

A point is a plain dict, one per span start and one per span stop::

    {
        "id": "<trace_id>-start",      # unique per point; drivers key on it (idempotent writes)
        "base_id": "...",               # the trace (the whole request across services)
        "trace_id": "...",              # the span
        "parent_id": "...",             # the parent span, or base_id for a top-level span
        "event": "start" | "stop",
        "name": "db",                   # the span's category (stats are per name)
        "timestamp": 1732240000123456789,  # int, nanoseconds since the epoch
        "service": "api", "project": "nova", "host": "node-1",
        "error": False,                 # True only on the stop point of a failed call
        "info": {...},                  # JSON-safe: str/int/float/bool/None/list/dict
    }

Drivers must return points exactly as given (same keys, same types).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TypedDict

__all__ = [
    "Point",
    "POINT_KEYS",
    "TraceFilter",
    "TraceSummary",
    "point_id",
    "jsonable",
    "validate_trace_id",
    "summarize",
]


class Point(TypedDict):
    id: str
    base_id: str
    trace_id: str
    parent_id: str
    event: Literal["start", "stop"]
    name: str
    timestamp: int
    service: str
    project: str
    host: str
    error: bool
    info: dict[str, Any]


POINT_KEYS = (
    "id",
    "base_id",
    "trace_id",
    "parent_id",
    "event",
    "name",
    "timestamp",
    "service",
    "project",
    "host",
    "error",
    "info",
)

_ID_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")


_SCALARS = (str, int, float, bool, type(None))


def jsonable(value: Any, depth: int = 0) -> Any:
    """A JSON-safe copy of ``value``: unknown objects become bounded reprs; never raises."""
    if isinstance(value, _SCALARS):
        if isinstance(value, float) and not math.isfinite(value):
            return repr(value)
        return value
    if depth > 20:
        return "<nested too deep>"
    try:
        if isinstance(value, dict):
            return {str(k): jsonable(v, depth + 1) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [jsonable(v, depth + 1) for v in value]
        text = repr(value)
    except Exception as exc:  # noqa: BLE001 - user objects may do anything
        return f"<unrepresentable {type(value).__name__}: {type(exc).__name__}>"
    return text if len(text) <= 500 else text[:497] + "..."


def point_id(trace_id: str, event: str) -> str:
    return f"{trace_id}-{event}"


def validate_trace_id(value: str) -> str:
    """Return ``value`` if it looks like a trace id, else raise ValueError (for CLI/web input)."""
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise ValueError("a trace id is 1 to 128 characters of letters, digits, '-', '_', '.', ':'")
    return value


@dataclass(frozen=True)
class TraceFilter:
    """What ``list_traces`` selects. Times are int nanoseconds since the epoch.

    A trace matches when any of its points has the service (or name); ``since``/``until`` bound
    the trace's start; ``min_duration`` bounds (last point - first point); ``errors`` keeps only
    traces with an error point. Results are newest first (by start, then base_id descending),
    then ``offset`` rows are skipped and at most ``limit`` returned.
    """

    service: str | None = None
    name: str | None = None
    since: int | None = None
    until: int | None = None
    min_duration: int | None = None
    errors: bool = False
    limit: int = 50
    offset: int = 0

    def __post_init__(self) -> None:
        if self.limit < 0 or self.offset < 0:
            raise ValueError("limit and offset must not be negative")

    def matches(self, summary: TraceSummary, names: set[str]) -> bool:
        """Reference semantics for drivers that filter in Python (memory, tests)."""
        if self.service is not None and self.service not in summary.services:
            return False
        if self.name is not None and self.name not in names:
            return False
        if self.since is not None and summary.start < self.since:
            return False
        if self.until is not None and summary.start > self.until:
            return False
        if self.min_duration is not None and summary.duration < self.min_duration:
            return False
        return not (self.errors and not summary.error)


@dataclass(frozen=True)
class TraceSummary:
    """One row of ``list_traces``."""

    base_id: str
    start: int  # first point's timestamp (ns)
    end: int  # last point's timestamp (ns)
    span_count: int  # distinct trace_ids
    services: tuple[str, ...] = field(default=())  # sorted
    error: bool = False
    name: str = ""  # name of the earliest point's span

    @property
    def duration(self) -> int:
        return self.end - self.start

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["services"] = list(self.services)
        d["duration"] = self.duration
        return d


def summarize(points: list[Point]) -> TraceSummary:
    """Build the summary of one trace from its points (reference semantics)."""
    if not points:
        raise ValueError("no points")
    first = min(points, key=lambda p: (p["timestamp"], p["event"] != "start"))
    return TraceSummary(
        base_id=first["base_id"],
        start=first["timestamp"],
        end=max(p["timestamp"] for p in points),
        span_count=len({p["trace_id"] for p in points}),
        services=tuple(sorted({p["service"] for p in points})),
        error=any(p["error"] for p in points),
        name=first["name"],
    )
