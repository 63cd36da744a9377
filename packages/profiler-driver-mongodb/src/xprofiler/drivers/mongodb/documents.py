"""Points as MongoDB documents, and the per-trace summary updates built from a batch.

A point is stored as one document in the points collection::

    {"_id": point id, "base_id", "trace_id", "parent_id", "event", "name",
     "timestamp": Int64 ns, "service", "project", "host", "error": bool,
     "info": "<JSON text>", "ts_date": BSON date of the timestamp (for TTL)}

``info`` is kept as JSON text: traced code puts arbitrary keys there (``$``-prefixed, dotted,
empty) and integers beyond 64 bits, which BSON documents either refuse or change; JSON text
round-trips all of it exactly.

A trace is summarised in the summary collection, one document per ``base_id``, maintained with
update operators that are idempotent ($min, $max, $addToSet), so re-delivering a batch changes
nothing::

    {"_id": base_id, "start": Int64, "end": Int64, "first": "<sort key of the earliest
     point><its name>", "services": [...], "names": [...], "spans": [trace ids...],
     "error": bool, "end_date": BSON date of end (for TTL)}
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

from bson.int64 import Int64

from xprofiler.core.points import Point, TraceSummary

__all__ = [
    "MAX_INFO_BYTES",
    "point_to_document",
    "document_to_point",
    "trace_summaries",
    "document_to_summary",
    "POINT_PROJECTION",
    "SUMMARY_PROJECTION",
    "BadPoint",
]

# Leaves room below MongoDB's 16 MiB document limit; a larger point could never be stored and
# would make its whole batch fail on every retry.
MAX_INFO_BYTES = 8 * 1024 * 1024

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_STR_FIELDS = ("id", "base_id", "trace_id", "parent_id", "event", "name", "service", "project",
               "host")  # fmt: skip
_FIRST_KEY_LEN = 21  # 20 digits of (timestamp + 2**63), then 0 for a start or 1 otherwise

POINT_PROJECTION = {"ts_date": 0}
SUMMARY_PROJECTION = {"names": 0, "end_date": 0}


class BadPoint(ValueError):
    """A point that can never be stored (it would fail every retry)."""


def _ts_date(ts: int) -> dt.datetime | None:
    try:
        return dt.datetime.fromtimestamp(ts / 1e9, tz=dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None  # outside the date range: stored without a date, never expires


def point_to_document(p: Mapping[str, Any]) -> dict[str, Any]:
    """The document for ``p``. Raises BadPoint when ``p`` can never be stored."""
    try:
        for key in _STR_FIELDS:
            if not isinstance(p[key], str):
                raise BadPoint(f"field {key!r} must be a string, not {type(p[key]).__name__}")
        ts = p["timestamp"]
        if isinstance(ts, bool) or not isinstance(ts, int) or not _INT64_MIN <= ts <= _INT64_MAX:
            raise BadPoint("field 'timestamp' must be an int (nanoseconds) that fits in 64 bits")
        info = json.dumps(p["info"], separators=(",", ":"), ensure_ascii=False, default=repr)
        error = bool(p["error"])
    except BadPoint:
        raise
    except KeyError as exc:
        raise BadPoint(f"missing field {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:  # e.g. a circular info dict
        raise BadPoint(f"field 'info' cannot be written as JSON: {exc}") from None
    if len(info) > MAX_INFO_BYTES // 4 and len(info.encode()) > MAX_INFO_BYTES:
        raise BadPoint(f"field 'info' is larger than {MAX_INFO_BYTES} bytes as JSON")
    doc: dict[str, Any] = {
        "_id": p["id"],
        "base_id": p["base_id"],
        "trace_id": p["trace_id"],
        "parent_id": p["parent_id"],
        "event": p["event"],
        "name": p["name"],
        "timestamp": Int64(ts),
        "service": p["service"],
        "project": p["project"],
        "host": p["host"],
        "error": error,
        "info": info,
    }
    date = _ts_date(ts)
    if date is not None:
        doc["ts_date"] = date
    return doc


def document_to_point(doc: Mapping[str, Any]) -> Point:
    return {
        "id": doc["_id"],
        "base_id": doc["base_id"],
        "trace_id": doc["trace_id"],
        "parent_id": doc["parent_id"],
        "event": doc["event"],
        "name": doc["name"],
        "timestamp": int(doc["timestamp"]),
        "service": doc["service"],
        "project": doc["project"],
        "host": doc["host"],
        "error": bool(doc["error"]),
        "info": json.loads(doc["info"]),
    }


def _first_key(doc: Mapping[str, Any]) -> str:
    # Orders like summarize(): by timestamp, a start before a stop at the same time. Offsetting
    # by 2**63 makes every int64 a 20-digit non-negative number, so string order is time order.
    stop = "0" if doc["event"] == "start" else "1"
    return f"{int(doc['timestamp']) + 2**63:020d}{stop}{doc['name']}"


def trace_summaries(
    docs: Sequence[Mapping[str, Any]],
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Per trace in the batch: its summary document (to insert when the trace is new) and the
    idempotent upsert statement that merges it into a stored summary (``update`` command)."""
    acc: dict[str, dict[str, Any]] = {}
    for d in docs:
        ts = int(d["timestamp"])
        s = acc.get(d["base_id"])
        if s is None:
            s = acc[d["base_id"]] = {
                "start": ts,
                "end": ts,
                "first": _first_key(d),
                "services": set(),
                "names": set(),
                "spans": set(),
                "error": False,
            }
        else:
            s["start"] = min(s["start"], ts)
            s["end"] = max(s["end"], ts)
            s["first"] = min(s["first"], _first_key(d))
        s["services"].add(d["service"])
        s["names"].add(d["name"])
        s["spans"].add(d["trace_id"])
        s["error"] = s["error"] or d["error"]
    out = []
    for base_id, s in acc.items():
        sets = {k: sorted(s[k]) for k in ("services", "names", "spans")}
        maxes: dict[str, Any] = {"end": Int64(s["end"]), "error": s["error"]}
        end_date = _ts_date(s["end"])
        if end_date is not None:
            maxes["end_date"] = end_date
        doc = {"_id": base_id, "start": Int64(s["start"]), "first": s["first"], **maxes, **sets}
        update = {
            "q": {"_id": base_id},
            "u": {
                "$min": {"start": Int64(s["start"]), "first": s["first"]},
                "$max": maxes,
                "$addToSet": {k: {"$each": v} for k, v in sets.items()},
            },
            "upsert": True,
        }
        out.append((doc, update))
    return out


def document_to_summary(doc: Mapping[str, Any]) -> TraceSummary:
    return TraceSummary(
        base_id=doc["_id"],
        start=int(doc["start"]),
        end=int(doc["end"]),
        span_count=len(doc.get("spans", ())),
        services=tuple(sorted(doc.get("services", ()))),
        error=bool(doc.get("error", False)),
        name=str(doc.get("first", ""))[_FIRST_KEY_LEN:],
    )
