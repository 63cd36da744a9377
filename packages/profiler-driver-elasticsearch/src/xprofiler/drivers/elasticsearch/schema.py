"""Index names, the index template, and point <-> document conversion.

Points live in time-based indices ``<prefix>-YYYY.MM.DD`` (or ``<prefix>-YYYY.MM`` with
``index_period=month``), chosen by the point's OWN timestamp (UTC): a re-delivered point lands
in the same index under the same document id, so it is never stored twice.

A document is the point exactly as given plus ``@timestamp`` (``date_nanos``, for people and
Kibana). ``timestamp`` stays an exact ``long`` (nanoseconds); ``info`` is an object with
``enabled: false``: kept in ``_source`` byte for byte, never exploded into dynamic fields.
``dynamic: false`` keeps any unexpected key in ``_source`` without mapping it.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

__all__ = [
    "MAPPING",
    "SCHEMA_VERSION",
    "PointRejected",
    "template_name",
    "template_body",
    "read_pattern",
    "IndexNamer",
    "index_for",
    "period_bounds",
    "to_document",
    "from_document",
]

SCHEMA_VERSION = 1
_MAX_TS = 2**63 - 1
_MAX_ID_BYTES = 512  # Elasticsearch's limit for a document _id
_KW_LIMIT = 4096  # longer names/services/hosts are stored but not indexed (not filterable)

MAPPING: dict[str, Any] = {
    "dynamic": False,
    "properties": {
        "id": {"type": "keyword"},
        "base_id": {"type": "keyword"},
        "trace_id": {"type": "keyword"},
        "parent_id": {"type": "keyword"},
        "event": {"type": "keyword"},
        "name": {"type": "keyword", "ignore_above": _KW_LIMIT},
        "service": {"type": "keyword", "ignore_above": _KW_LIMIT},
        "project": {"type": "keyword", "ignore_above": _KW_LIMIT},
        "host": {"type": "keyword", "ignore_above": _KW_LIMIT},
        "timestamp": {"type": "long"},
        "@timestamp": {"type": "date_nanos"},
        "error": {"type": "boolean"},
        "info": {"type": "object", "enabled": False},
    },
}


class PointRejected(ValueError):
    """A point that cannot be stored at all (no usable id or timestamp)."""


def template_name(prefix: str) -> str:
    return f"{prefix}-template"


def read_pattern(prefix: str) -> str:
    return f"{prefix}-*"


def template_body(prefix: str, shards: int, replicas: int | None) -> dict[str, Any]:
    settings: dict[str, Any] = {"number_of_shards": shards}
    if replicas is not None:
        settings["number_of_replicas"] = replicas
    return {
        "index_patterns": [read_pattern(prefix)],
        # Above the stack's built-in templates (priority 100, e.g. logs-*-*), so that a prefix
        # like "logs" still gets this mapping rather than a data stream.
        "priority": 200,
        "template": {"settings": settings, "mappings": MAPPING},
        "_meta": {"managed_by": "xprofiler", "schema_version": SCHEMA_VERSION},
    }


class IndexNamer:
    """Timestamp -> (index name, ISO time); caches the last second (batches are clustered)."""

    def __init__(self, prefix: str, period: str) -> None:
        self.prefix = prefix
        self.period = period
        self._sec = -1
        self._index = ""
        self._iso_head = ""

    def __call__(self, ts: int) -> tuple[str, str]:
        sec, ns = divmod(ts, 1_000_000_000)
        if sec != self._sec:
            tm = time.gmtime(sec)
            if self.period == "day":
                suffix = f"{tm.tm_year:04d}.{tm.tm_mon:02d}.{tm.tm_mday:02d}"
            else:
                suffix = f"{tm.tm_year:04d}.{tm.tm_mon:02d}"
            self._index = f"{self.prefix}-{suffix}"
            self._iso_head = (
                f"{tm.tm_year:04d}-{tm.tm_mon:02d}-{tm.tm_mday:02d}T"
                f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}."
            )
            self._sec = sec
        return self._index, f"{self._iso_head}{ns:09d}Z"


def index_for(prefix: str, period: str, ts: int) -> str:
    """The index a point with timestamp ``ts`` (ns) is stored in."""
    return IndexNamer(prefix, period)(ts)[0]


def _suffix_re(prefix: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(prefix)}-(\d{{4}})\.(\d{{2}})(?:\.(\d{{2}}))?$")


def period_bounds(prefix: str, name: str) -> tuple[datetime, datetime] | None:
    """[start, end) in UTC of the period an index of this store covers, or None if ``name``
    is not one of this store's time-based indices."""
    m = _suffix_re(prefix).match(name)
    if not m:
        return None
    year, month = int(m.group(1)), int(m.group(2))
    try:
        if m.group(3) is not None:
            start = datetime(year, month, int(m.group(3)), tzinfo=timezone.utc)
            return start, start + timedelta(days=1)
        start = datetime(year, month, 1, tzinfo=timezone.utc)
        days = calendar.monthrange(year, month)[1]
        return start, start + timedelta(days=days)
    except ValueError:
        return None


def to_document(point: Mapping[str, Any], namer: IndexNamer) -> tuple[str, str, dict[str, Any]]:
    """(index, _id, document) for a point, or raise PointRejected with the reason."""
    if not isinstance(point, Mapping):
        raise PointRejected(f"a point must be a dict, not {type(point).__name__}")
    pid = point.get("id")
    if not isinstance(pid, str) or not pid:
        raise PointRejected("the point has no 'id' string")
    if len(pid.encode("utf-8")) > _MAX_ID_BYTES:
        raise PointRejected(f"the point id is longer than {_MAX_ID_BYTES} bytes")
    ts = point.get("timestamp")
    if type(ts) is not int or not 0 <= ts <= _MAX_TS:
        raise PointRejected(
            f"point {pid!r}: 'timestamp' must be an int of nanoseconds since 1970 "
            f"(got {type(ts).__name__})"
        )
    index, iso = namer(ts)
    doc = dict(point)
    doc["@timestamp"] = iso
    return index, pid, doc


def from_document(source: dict[str, Any]) -> dict[str, Any]:
    """The stored point back, exactly as it was given."""
    source.pop("@timestamp", None)
    return source
