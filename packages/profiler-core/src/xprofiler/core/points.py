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
import reprlib
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TypedDict

__all__ = [
    "Point",
    "POINT_KEYS",
    "TraceFilter",
    "TraceSummary",
    "point_id",
    "jsonable",
    "safe_info",
    "bounded_repr",
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


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_REPR_LIMIT = 500

# Bounds for user-supplied span info (what safe_info applies): a hostile or merely huge value
# must neither stall the background thread nor make a batch undeliverable.
INFO_MAX_STR = 8192
INFO_MAX_ITEMS = 1000
INFO_MAX_NODES = 10_000
INFO_MAX_CHARS = 65_536
_MAX_DEPTH = 20


class _BoundedRepr(reprlib.Repr):
    """reprlib that also cuts bytes before building their repr (repr of 100 MB is 400 MB)."""

    def repr_bytes(self, x: bytes, level: int) -> str:
        if len(x) <= self.maxstring:
            return repr(x)
        return repr(x[: self.maxstring]) + "..."

    repr_bytearray = repr_bytes


_reprlib = _BoundedRepr()
_reprlib.maxstring = 200
_reprlib.maxother = 200
_reprlib.maxlist = _reprlib.maxtuple = _reprlib.maxset = _reprlib.maxdict = 10
_reprlib.maxfrozenset = _reprlib.maxdeque = _reprlib.maxarray = 10
_reprlib.maxlevel = 3


# The fast path of bounded_repr: values whose builtin repr() is exactly what reprlib would
# give (no element or string long enough to be cut), found without calling reprlib.
_SCALARS = frozenset({int, float, bool, str, type(None)})
_FAST_INT = 10**38  # |int| below this: at most 39 characters, within reprlib's maxlong (40)
_FAST_MAX = 200  # reprlib's maxstring / maxother (set below); a longer repr may be cut


def _fast_repr(value: Any) -> str | None:
    t = type(value)
    if t is tuple:
        if not value:
            return "()"
        if len(value) > 10:  # reprlib's maxtuple
            return None
        for v in value:
            tv = type(v)
            if tv not in _SCALARS:
                return None
            if tv is int and not -_FAST_INT < v < _FAST_INT:
                return None
            if tv is str and len(v) > _FAST_MAX:
                return None
    elif t is dict:
        return "{}" if not value else None
    elif t in _SCALARS:
        if t is int and not -_FAST_INT < value < _FAST_INT:
            return None
        if t is str and len(value) > _FAST_MAX:
            return None
    else:
        return None
    text = repr(value)
    # Within the limit the whole repr was, every element's repr was too: nothing reprlib cuts.
    return text if len(text) <= _FAST_MAX else None


def bounded_repr(value: Any, limit: int = _REPR_LIMIT) -> str:
    """repr() bounded in length that never raises (a failing __repr__ is reported as such)."""
    try:
        text = _fast_repr(value)
        if text is None:
            text = _reprlib.repr(value)
    except Exception as exc:  # noqa: BLE001 - user __repr__ may do anything
        return f"<unrepresentable {type(value).__name__}: {type(exc).__name__}>"
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def _cut(text: str, limit: int | None) -> str:
    if limit is None or len(text) <= limit:
        return text
    return text[: limit - 3] + "..."


class _Walk:
    __slots__ = ("max_str", "max_items", "budget", "chars", "active")

    def __init__(
        self,
        max_str: int | None = None,
        max_items: int | None = None,
        max_nodes: int | None = None,
        max_chars: int | None = None,
    ) -> None:
        self.max_str = max_str
        self.max_items = max_items
        self.budget = max_nodes if max_nodes is not None else -1  # -1: unbounded
        self.chars = max_chars if max_chars is not None else -1
        self.active: set[int] = set()  # containers on the current path (cycle detection)

    def text(self, text: str) -> str:
        text = _cut(text, self.max_str)
        if self.chars >= 0:
            if len(text) > self.chars:
                text = _cut(text, max(self.chars, 16))
            self.chars = max(0, self.chars - len(text))
        return text

    def key(self, k: Any) -> str:
        if type(k) is str:
            return self.text(k)
        if isinstance(k, str):
            return self.text(str.__str__(k))
        return self.text(bounded_repr(k))

    def value(self, value: Any, depth: int) -> Any:
        if self.budget >= 0:
            if self.budget == 0:
                return "<truncated>"
            self.budget -= 1
        t = type(value)
        if t is str:
            return self.text(value)
        if t is bool or value is None:
            return value
        if t is int:
            if _INT64_MIN <= value <= _INT64_MAX:
                return value
            return f"<int of {value.bit_length()} bits>" if value.bit_length() > 256 else str(value)
        if t is float:
            return value if math.isfinite(value) else repr(value)
        try:
            # Subclasses of the scalars become the plain type (IntEnum, str subclasses...).
            if isinstance(value, str):
                return self.text(str.__str__(value))
            if isinstance(value, int):
                return self.value(int.__index__(value), depth)
            if isinstance(value, float):
                return self.value(float.__float__(value), depth)
            if isinstance(value, (dict, list, tuple)):
                return self.container(value, depth)
        except Exception as exc:  # noqa: BLE001 - user objects may do anything
            return f"<unrepresentable {type(value).__name__}: {type(exc).__name__}>"
        return self.text(bounded_repr(value))

    def container(self, value: dict[Any, Any] | list[Any] | tuple[Any, ...], depth: int) -> Any:
        if depth >= _MAX_DEPTH:
            return "<nested too deep>"
        if id(value) in self.active:
            return f"<recursive {type(value).__name__}>"
        self.active.add(id(value))
        try:
            limit = self.max_items
            if isinstance(value, dict):
                out: dict[str, Any] = {}
                for i, (k, v) in enumerate(value.items()):
                    if (limit is not None and i >= limit) or self.budget == 0:
                        out["..."] = f"{len(value) - i} more"
                        break
                    out[self.key(k)] = self.value(v, depth + 1)
                return out
            items: list[Any] = []
            for i, v in enumerate(value):
                if (limit is not None and i >= limit) or self.budget == 0:
                    items.append(f"... {len(value) - i} more")
                    break
                items.append(self.value(v, depth + 1))
            return items
        finally:
            self.active.discard(id(value))


def jsonable(value: Any, depth: int = 0) -> Any:
    """A JSON-safe copy of ``value``: unknown objects become bounded reprs; never raises.

    Containers nested deeper than 20 levels and cycles become short marker strings; ints
    outside the signed 64-bit range (which most stores refuse) and non-finite floats become
    strings. Sizes are not bounded here; see :func:`safe_info` for that.
    """
    return _Walk().value(value, depth)


def _plain_chars(value: Any, depth: int) -> int:
    """The characters of text in ``value`` if it is already what :func:`safe_info` would make
    of it (small dicts and lists of str keys and plain in-range scalars), else -1."""
    t = type(value)
    if t is str:
        return len(value) if len(value) <= INFO_MAX_STR else -1
    if t is bool or value is None:
        return 0
    if t is int:
        return 0 if _INT64_MIN <= value <= _INT64_MAX else -1
    if t is float:
        return 0 if math.isfinite(value) else -1
    if depth >= 3 or (t is not dict and t is not list) or len(value) > 32:
        return -1
    total = 0
    if t is dict:
        for k, v in value.items():
            if type(k) is not str or len(k) > INFO_MAX_STR:
                return -1
            n = _plain_chars(v, depth + 1)
            if n < 0:
                return -1
            total += len(k) + n
    else:
        for v in value:
            n = _plain_chars(v, depth + 1)
            if n < 0:
                return -1
            total += n
    return total


def _plain_copy(value: Any) -> Any:
    t = type(value)
    if t is dict:
        return {k: _plain_copy(v) for k, v in value.items()}
    if t is list:
        return [_plain_copy(v) for v in value]
    return value


def safe_info(value: Any) -> Any:
    """:func:`jsonable`, also bounded in size: strings cut at INFO_MAX_STR characters,
    containers at INFO_MAX_ITEMS entries, the whole value at INFO_MAX_NODES nodes and about
    INFO_MAX_CHARS characters of text. Always a new object (never the caller's containers)."""
    if type(value) is dict:
        # Fast path for what span info mostly is: a few plain values, already within bounds
        # (at most 32 items a level, 3 levels: far below the node bound).
        n = _plain_chars(value, 0)
        if 0 <= n <= INFO_MAX_CHARS:
            return _plain_copy(value)
    return _Walk(INFO_MAX_STR, INFO_MAX_ITEMS, INFO_MAX_NODES, INFO_MAX_CHARS).value(value, 0)


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
