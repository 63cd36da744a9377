"""Trace points as InfluxDB line protocol, and back.

Schema (one measurement, default ``trace_points``)::

    trace_points,base_id=..,error=true,event=start,host=..,name=..,service=..,trace_id=..
        id="..",info="{json}",parent_id="..",project="..",span=".."  <timestamp>

* Tags are what is filtered on or makes a point unique: ``base_id`` (the trace), ``trace_id``
  (the span) and ``event`` (start/stop) make every point its own series, so two points with the
  same timestamp never overwrite each other, and re-delivering a point rewrites the same
  series+time (idempotent). ``service``, ``name``, ``host`` and ``error`` (only written when
  true) depend on the span, so they add no series.
* Line protocol cannot carry a newline in a tag, and its backslash rules make a tag value
  ending in a backslash ambiguous. Tag values are therefore stored with ``%``, ``\\`` and
  control characters percent-encoded (UTF-8 bytes, ``%0A`` for a newline); everything else,
  unicode included, is kept as is, so ordinary names read naturally in the Influx CLI.
  :func:`decode_tag` reverses it exactly. Spaces, commas and equals signs are backslash-escaped
  as line protocol asks. An empty value is not written (line protocol has no empty tags);
  InfluxQL's ``tag = ''`` matches such points.
* Fields hold the rest exactly: string fields escape ``\\`` and ``"`` (newlines are allowed
  inside quoted strings); ``info`` is a JSON string (ASCII-only, so any str round-trips);
  ``span`` repeats the span id as a field because ``COUNT(DISTINCT ..)`` works on fields only.
"""

from __future__ import annotations

import json
import re
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
]

# InfluxDB's valid time range (models.MinNanoTime / MaxNanoTime).
MIN_TIME = -9223372036854775806
MAX_TIME = 9223372036854775806
# A series key (measurement + tags) must stay below 64 KiB; leave room for the measurement.
MAX_TAG_BYTES = 16_384

TAG_KEYS = ("base_id", "error", "event", "host", "name", "service", "trace_id")  # sorted

_TAG_UNSAFE = re.compile(r"[%\\\x00-\x1f\x7f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_FIELD_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"'})
_STR_KEYS = ("id", "base_id", "trace_id", "parent_id", "name", "service", "project", "host")


class BadPoint(ValueError):
    """A point that cannot be stored as given (missing key, wrong type, unencodable text)."""


def _percent(match: re.Match[str]) -> str:
    return "".join(f"%{b:02X}" for b in match.group().encode("utf-8"))


def encode_tag(value: str) -> str:
    """The stored form of a tag value (reversible; see the module doc)."""
    return _TAG_UNSAFE.sub(_percent, value)


def decode_tag(value: str | None) -> str:
    """The original string of a stored tag value (``None``, an absent tag, is ``""``)."""
    if not value:
        return ""
    if "%" not in value:
        return value
    return unquote(value, errors="strict")


def escape_tag(value: str) -> str:
    """A stored tag value escaped for line protocol."""
    return value.translate(_TAG_ESCAPES)


def escape_field_string(value: str) -> str:
    return '"' + value.translate(_FIELD_ESCAPES) + '"'


def _check(p: Any) -> None:
    if not isinstance(p, dict):
        raise BadPoint(f"a point must be a dict, not {type(p).__name__}")
    for key in _STR_KEYS:
        value = p.get(key)
        if not isinstance(value, str):
            raise BadPoint(f"point key {key!r} must be a str, got {type(value).__name__}")
        if _SURROGATE.search(value):
            raise BadPoint(f"point key {key!r} holds a lone surrogate (not valid UTF-8)")
    if not p["base_id"] or not p["trace_id"]:
        raise BadPoint("point keys 'base_id' and 'trace_id' must not be empty")
    if p.get("event") not in ("start", "stop"):
        raise BadPoint("point key 'event' must be 'start' or 'stop'")
    ts = p.get("timestamp")
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise BadPoint(f"point key 'timestamp' must be an int, got {type(ts).__name__}")
    if not MIN_TIME <= ts <= MAX_TIME:
        raise BadPoint("point key 'timestamp' is outside InfluxDB's time range")
    if not isinstance(p.get("error"), bool):
        raise BadPoint("point key 'error' must be a bool")
    if not isinstance(p.get("info"), dict):
        raise BadPoint("point key 'info' must be a dict")


def point_line(p: Any, measurement: str, divisor: int = 1) -> str:
    """One line of line protocol for a point; raises :class:`BadPoint` for a malformed one.

    ``divisor`` converts nanoseconds to the write precision (1 for ns, 1000 for u, ...).
    """
    _check(p)
    tags = []
    size = 0
    for key in TAG_KEYS:
        if key == "error":
            raw = "true" if p["error"] else ""
        else:
            raw = p[key]
        if not raw:
            continue
        value = escape_tag(encode_tag(raw))
        size += len(value)
        tags.append(f"{key}={value}")
    if size > MAX_TAG_BYTES // 4 and len(",".join(tags).encode("utf-8")) > MAX_TAG_BYTES:
        raise BadPoint(f"tag values are longer than {MAX_TAG_BYTES} bytes in total")
    try:
        info = json.dumps(p["info"], separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise BadPoint(f"point key 'info' is not JSON-serialisable: {exc}") from None
    fields = ",".join(
        (
            "id=" + escape_field_string(p["id"]),
            "info=" + escape_field_string(info),
            "parent_id=" + escape_field_string(p["parent_id"]),
            "project=" + escape_field_string(p["project"]),
            "span=" + escape_field_string(p["trace_id"]),
        )
    )
    ts = p["timestamp"] if divisor == 1 else p["timestamp"] // divisor
    return f"{measurement},{','.join(tags)} {fields} {ts}"


def row_to_point(row: dict[str, Any]) -> dict[str, Any]:
    """A point from one ``SELECT *`` row (time in ns, tags still in stored form)."""
    return {
        "id": row["id"],
        "base_id": decode_tag(row.get("base_id")),
        "trace_id": decode_tag(row.get("trace_id")),
        "parent_id": row.get("parent_id") or "",
        "event": decode_tag(row.get("event")),
        "name": decode_tag(row.get("name")),
        "timestamp": int(row["time"]),
        "service": decode_tag(row.get("service")),
        "project": row.get("project") or "",
        "host": decode_tag(row.get("host")),
        "error": row.get("error") == "true",
        "info": json.loads(row["info"]) if row.get("info") else {},
    }
