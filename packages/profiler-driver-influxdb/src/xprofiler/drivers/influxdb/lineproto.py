"""Trace points as InfluxDB line protocol, and back.

Schema (one measurement, default ``trace_points``; one line per point)::

    trace_points,base_id=..,[error=true,]host=..,name=..,service=..,trace_id=..
        span="..",start_id="..",start_info="{json}",start_parent_id="..",start_project=".."
        <timestamp>

  (a stop point writes ``stop_id``, ``stop_info``, ``stop_parent_id``, ``stop_project``).

* Tags are what is filtered on or makes a point unique: ``base_id`` (the trace) and
  ``trace_id`` (the span) give each span its own series, so points of different spans never
  overwrite each other, whatever their timestamps. A span's start and stop share the series;
  their fields are named after the event, so if both fall in the same nanosecond InfluxDB
  merges them into one row that still holds both (it merges fields of a series+time), and
  re-delivering a point rewrites the same fields (idempotent). ``service``, ``name``,
  ``host`` and ``error`` (written only when true) depend on the span, so they add no series.
* A second measurement, ``<measurement>_by_trace``, has one series per trace (tag
  ``base_id``) and, per batch, an entry at the trace's earliest and latest point
  (:func:`index_lines`): ``list_traces`` finds starts and ends there, touching one series per
  trace instead of one per span.
* Line protocol cannot carry a newline in a tag, and its backslash rules make a tag value
  ending in a backslash ambiguous. Tag values are therefore stored with ``%``, ``\\`` and
  control characters percent-encoded (UTF-8 bytes, ``%0A`` for a newline); everything else,
  unicode included, is kept as is, so ordinary names read naturally in the Influx CLI.
  :func:`decode_tag` reverses it exactly. Spaces, commas and equals signs are backslash-escaped
  as line protocol asks. Line protocol has no empty tag values: an empty string is stored
  as a lone ``%`` (which no non-empty string encodes to), so every point has every tag.
* Fields hold the rest exactly: string fields escape ``\\`` and ``"`` (newlines are allowed
  inside quoted strings); ``*_info`` is a JSON string (ASCII-only, so any str round-trips);
  ``span`` repeats the span id as a field because ``COUNT(DISTINCT ..)`` works on fields only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import unquote

__all__ = [
    "TAG_KEYS",
    "BadPoint",
    "encode_tag",
    "decode_tag",
    "escape_tag",
    "escape_field_string",
    "point_line",
    "index_lines",
    "row_to_points",
]

# InfluxDB's valid time range (models.MinNanoTime / MaxNanoTime).
MIN_TIME = -9223372036854775806
MAX_TIME = 9223372036854775806
# A series key (measurement + tags) must stay below 64 KiB; leave room for the measurement.
MAX_TAG_BYTES = 16_384

# The stored form of an empty string (line protocol has no empty tag values; a lone "%" is
# never produced for a non-empty string, whose "%" become "%25").
EMPTY = "%"

TAG_KEYS = ("base_id", "error", "host", "name", "service", "trace_id")  # sorted

_TAG_UNSAFE = re.compile(r"[%\\\x00-\x1f\x7f]")
_TAG_SPECIAL = re.compile(r"[%\\\x00-\x1f\x7f, =]")
_TAG_ESCAPE = re.compile(r"([, =])")
_STR_KEYS = ("id", "base_id", "trace_id", "parent_id", "name", "service", "project", "host")
_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


class BadPoint(ValueError):
    """A point that cannot be stored as given (missing key, wrong type, unencodable text)."""


def _percent(match: re.Match[str]) -> str:
    return "".join(f"%{b:02X}" for b in match.group().encode("utf-8"))


def encode_tag(value: str) -> str:
    """The stored form of a tag value (reversible; see the module doc)."""
    if not value:
        return EMPTY
    return _TAG_UNSAFE.sub(_percent, value)


def decode_tag(value: str | None) -> str:
    """The original string of a stored tag value (``None``, an absent tag, is ``""``)."""
    if not value or value == EMPTY:
        return ""
    if "%" not in value:
        return value
    return unquote(value, errors="replace")


def escape_tag(value: str) -> str:
    """A stored tag value escaped for line protocol."""
    return _TAG_ESCAPE.sub(r"\\\1", value)


def _tag(value: str) -> str:
    if value and _TAG_SPECIAL.search(value) is None:
        return value
    return escape_tag(encode_tag(value))


def escape_field_string(value: str) -> str:
    if "\\" in value or '"' in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + value + '"'


def _check(p: Any) -> None:
    if not isinstance(p, dict):
        raise BadPoint(f"a point must be a dict, not {type(p).__name__}")
    for key in _STR_KEYS:
        value = p.get(key)
        if type(value) is not str:
            raise BadPoint(f"point key {key!r} must be a str, got {type(value).__name__}")
    if not p["base_id"] or not p["trace_id"]:
        raise BadPoint("point keys 'base_id' and 'trace_id' must not be empty")
    if p.get("event") not in ("start", "stop"):
        raise BadPoint("point key 'event' must be 'start' or 'stop'")
    ts = p.get("timestamp")
    if type(ts) is not int:
        raise BadPoint(f"point key 'timestamp' must be an int, got {type(ts).__name__}")
    if not MIN_TIME <= ts <= MAX_TIME:
        raise BadPoint("point key 'timestamp' is outside InfluxDB's time range")
    if type(p.get("error")) is not bool:
        raise BadPoint("point key 'error' must be a bool")
    if type(p.get("info")) is not dict:
        raise BadPoint("point key 'info' must be a dict")


def point_line(p: Any, measurement: str, divisor: int = 1) -> str:
    """One line of line protocol for a point; raises :class:`BadPoint` for a malformed one.

    ``divisor`` converts nanoseconds to the write precision (1 for ns, 1000 for u, ...).
    Text that is not valid UTF-8 (lone surrogates) is caught when the batch is encoded.
    """
    _check(p)
    tags = [f"base_id={_tag(p['base_id'])}"]
    if p["error"]:
        tags.append("error=true")
    for key in ("host", "name", "service", "trace_id"):
        tags.append(f"{key}={_tag(p[key])}")
    series = ",".join(tags)
    if len(series) > MAX_TAG_BYTES // 4 and len(series.encode("utf-8", "replace")) > MAX_TAG_BYTES:
        raise BadPoint(f"tag values are longer than {MAX_TAG_BYTES} bytes in total")
    info = p["info"]
    try:
        info_json = _JSON.encode(info) if info else "{}"
    except (TypeError, ValueError) as exc:
        raise BadPoint(f"point key 'info' is not JSON-serialisable: {exc}") from None
    ts = p["timestamp"] if divisor == 1 else p["timestamp"] // divisor
    ev = p["event"]
    return (
        f"{measurement},{series} span={escape_field_string(p['trace_id'])},"
        f"{ev}_id={escape_field_string(p['id'])},"
        f"{ev}_info={escape_field_string(info_json)},"
        f"{ev}_parent_id={escape_field_string(p['parent_id'])},"
        f"{ev}_project={escape_field_string(p['project'])} {ts}"
    )


def index_lines(points: Iterable[Any], measurement: str, divisor: int = 1) -> Iterator[str]:
    """The trace-index lines of a batch: per trace, its earliest and latest point's time.

    ``list_traces`` reads trace starts and ends from this one-series-per-trace measurement
    instead of the points' many series. A trace written over several batches has several
    index points; FIRST/LAST over them are the trace's start and end. Re-delivering a batch
    rewrites the same index points.
    """
    bounds: dict[str, list[int]] = {}
    for p in points:
        ts = p["timestamp"]
        b = bounds.get(p["base_id"])
        if b is None:
            bounds[p["base_id"]] = [ts, ts]
        elif ts < b[0]:
            b[0] = ts
        elif ts > b[1]:
            b[1] = ts
    for base_id, (lo, hi) in bounds.items():
        tag = _tag(base_id)
        lo_t = lo if divisor == 1 else lo // divisor
        hi_t = hi if divisor == 1 else hi // divisor
        yield f"{measurement},base_id={tag} n=1i {lo_t}"
        if hi_t != lo_t:
            yield f"{measurement},base_id={tag} n=1i {hi_t}"


def row_to_points(row: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The points of one ``SELECT *`` row: a start, a stop, or both (same span, same time)."""
    for event in ("start", "stop"):
        point_id = row.get(f"{event}_id")
        if point_id is None:
            continue
        info = row.get(f"{event}_info")
        yield {
            "id": point_id,
            "base_id": decode_tag(row.get("base_id")),
            "trace_id": decode_tag(row.get("trace_id")),
            "parent_id": row.get(f"{event}_parent_id") or "",
            "event": event,
            "name": decode_tag(row.get("name")),
            "timestamp": int(row["time"]),
            "service": decode_tag(row.get("service")),
            "project": row.get(f"{event}_project") or "",
            "host": decode_tag(row.get("host")),
            "error": row.get("error") == "true",
            "info": json.loads(info) if info else {},
        }
