"""The indexes the driver creates on first use, and what it does when a server refuses one.

Points collection:
  ``xp_trace_time``    {base_id: 1, timestamp: 1}                get_report
  ``xp_ttl``           {ts_date: 1}, expireAfterSeconds=ttl       retention (only with ?ttl=)
Summary collection (``<collection>_traces``):
  ``xp_start``         {start: -1, _id: -1}                       list_traces, newest first
  ``xp_service_start`` {services: 1, start: -1}                   list_traces(service=...)
  ``xp_name_start``    {names: 1, start: -1}                      list_traces(name=...)
  ``xp_errors``        {start: -1, _id: -1}, partial {error: true} list_error_traces
  ``xp_ttl``           {end_date: 1}, expireAfterSeconds=ttl      retention (only with ?ttl=)

MongoDB-wire servers that refuse partial or TTL indexes (FerretDB 1.x answers NotImplemented
to both) get ``xp_error_start`` {error: 1, start: -1, _id: -1} instead of the partial index,
and plain ``xp_ts_date``/``xp_end_date`` indexes with the driver deleting expired documents
itself (see ``MongoDBDriver.purge_expired``).
"""

from __future__ import annotations

import logging
from typing import Any

from pymongo.collection import Collection
from pymongo.errors import OperationFailure

__all__ = ["ensure_indexes", "REFUSED_CODES"]

log = logging.getLogger(__name__)

# NotImplemented, CannotCreateIndex, InvalidIndexSpecificationOption: the server does not do it.
REFUSED_CODES = {238, 67, 197}
# IndexOptionsConflict, IndexKeySpecsConflict: same index exists with other options (ttl changed).
_CONFLICT_CODES = {85, 86}


_warned: set[tuple[str, str]] = set()


def _warn_once(col: Collection[Any], what: str, message: str, *args: object) -> None:
    # Every driver instance (one per dispatcher, CLI call...) finds the same gap: say it once.
    key = (col.full_name, what)
    if key not in _warned:
        _warned.add(key)
        log.warning(message, *args)


def _refused(exc: OperationFailure) -> bool:
    return exc.code in REFUSED_CODES


def _ensure_ttl(col: Collection[Any], field: str, ttl: int) -> None:
    try:
        col.create_index([(field, 1)], name="xp_ttl", expireAfterSeconds=ttl)
    except OperationFailure as exc:
        if exc.code not in _CONFLICT_CODES:
            raise
        # The retention changed since the index was made: change it in place.
        col.database.command(
            "collMod", col.name, index={"name": "xp_ttl", "expireAfterSeconds": ttl}
        )
        log.info("xprofiler: retention of %s changed to %ds", col.full_name, ttl)


def ensure_indexes(
    points: Collection[Any], summaries: Collection[Any], ttl: int | None
) -> dict[str, bool]:
    """Create every index (idempotent). Returns which optional server features worked."""
    features: dict[str, bool] = {}
    points.create_index([("base_id", 1), ("timestamp", 1)], name="xp_trace_time")
    summaries.create_index([("start", -1), ("_id", -1)], name="xp_start")
    summaries.create_index([("services", 1), ("start", -1)], name="xp_service_start")
    summaries.create_index([("names", 1), ("start", -1)], name="xp_name_start")
    try:
        summaries.create_index(
            [("start", -1), ("_id", -1)],
            name="xp_errors",
            partialFilterExpression={"error": True},
        )
        features["partial_index"] = True
    except OperationFailure as exc:
        if not _refused(exc):
            raise
        features["partial_index"] = False
        _warn_once(
            summaries,
            "partial",
            "xprofiler: the MongoDB server refused a partial index (code %s); indexing "
            "error traces with a full index on (error, start) instead",
            exc.code,
        )
        summaries.create_index([("error", 1), ("start", -1), ("_id", -1)], name="xp_error_start")
    if ttl is not None:
        try:
            _ensure_ttl(points, "ts_date", ttl)
            _ensure_ttl(summaries, "end_date", ttl)
            features["ttl_index"] = True
        except OperationFailure as exc:
            if not _refused(exc):
                raise
            features["ttl_index"] = False
            _warn_once(
                points,
                "ttl",
                "xprofiler: the MongoDB server refused a TTL index (code %s); the driver "
                "deletes traces older than %ds itself, at most once a minute while writing",
                exc.code,
                ttl,
            )
            points.create_index([("ts_date", 1)], name="xp_ts_date")
            summaries.create_index([("end_date", 1)], name="xp_end_date")
    return features
