"""``mongodb://`` and ``mongodb+srv://``: traces in MongoDB (or a MongoDB-wire server).

Two collections in the database named by the path (default ``xprofiler``): the points
(``?collection=``, default ``points``), one document per point keyed by its id, and the
per-trace summaries (``<collection>_traces``) that ``list_traces`` reads with an index, so a
listing never groups the points. See documents.py for both layouts and indexes.py for the
indexes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from bson.errors import BSONError
from bson.int64 import Int64
from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.errors import (
    BulkWriteError,
    ConfigurationError,
    ConnectionFailure,
    OperationFailure,
    PyMongoError,
)

from xprofiler.core.errors import DriverError, StoreUnavailable
from xprofiler.core.points import Point, TraceFilter, TraceSummary
from xprofiler.core.protocol import BaseDriver
from xprofiler.core.uri import URL

from .documents import (
    POINT_PROJECTION,
    SUMMARY_PROJECTION,
    BadPoint,
    document_to_point,
    document_to_summary,
    point_to_document,
    trace_summaries,
)
from .indexes import REFUSED_CODES, ensure_indexes
from .settings import MongoSettings, parse_settings

__all__ = ["MongoDBDriver"]

log = logging.getLogger(__name__)

_DUPLICATE_KEY = 11000
# Codes of per-document write errors that will fail on every retry: the point is logged and
# skipped so it cannot block the rest of the queue.
_PERMANENT_WRITE_CODES = {2, 14, 22, 52, 55, 56, 57, 10334, 17280, 17419}
# Codes a server gives for query features it lacks ($expr on FerretDB 1.x).
_UNSUPPORTED_QUERY_CODES = REFUSED_CODES | {168}
_UPSERT_RETRIES = 3
_LOCK_WAIT = 10.0  # seconds a batch waits for another writer's trace lock
_LOCK_STALE = 30.0  # seconds after which a lock is taken as left by a dead writer
_UPDATES_PER_COMMAND = 1000


class MongoDBDriver(BaseDriver):
    """Stores points with one unordered bulk insert per batch; reads with indexed queries."""

    def __init__(self, url: URL) -> None:
        super().__init__(url)
        self.settings: MongoSettings = parse_settings(url)
        self._client: MongoClient[dict[str, Any]] | None = None
        self._points: Collection[dict[str, Any]] | None = None
        self._summaries: Collection[dict[str, Any]] | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._next_purge = 0.0
        self._owner = uuid.uuid4().hex  # marks this instance's trace locks (see _upsert_summaries)
        self._orphan_locks: set[str] = set()
        #: Optional server features found on first use: ``partial_index``, ``ttl_index`` (only
        #: with ``?ttl=``) and ``expr`` (once a ``min_duration`` filter ran). False means the
        #: driver uses its documented fallback.
        self.server_features: dict[str, bool] = {}
        #: Points skipped because they can never be stored (logged with their id).
        self.rejected_points = 0

    # -- connection ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Turn client errors into DriverError/StoreUnavailable without the password."""
        try:
            yield
        except DriverError:
            raise
        except (PyMongoError, BSONError) as exc:
            raise self._wrap(what, exc) from None

    def _wrap(self, what: str, exc: BaseException) -> DriverError:
        text = f"{type(exc).__name__}: {exc}"
        pw = self.settings.password
        if pw:
            text = text.replace(pw, "***")
        text = text[:600]
        where = f"MongoDB store {self.settings.safe_uri}"
        if isinstance(exc, ConnectionFailure):
            return StoreUnavailable(
                f"{where}: {what} failed, the server cannot be reached ({text}); check that "
                f"it is running and reachable, or raise serverSelectionTimeoutMS"
            )
        if isinstance(exc, OperationFailure) and exc.code in (13, 18):
            return DriverError(
                f"{where}: {what} failed, not authorised ({text}); check the user name, "
                f"password and authSource, and that the user may read and write the database "
                f"{self.settings.database!r}"
            )
        if isinstance(exc, ConfigurationError):
            return DriverError(f"{where}: cannot set up the client ({text}); fix the option")
        return DriverError(f"{where}: {what} failed ({text})")

    def _collections(self) -> tuple[Collection[dict[str, Any]], Collection[dict[str, Any]]]:
        points, summaries = self._points, self._summaries
        if points is not None and summaries is not None and self._pid == os.getpid():
            return points, summaries
        with self._lock:
            if self._pid != os.getpid():
                # A client must not cross a fork: the child builds its own (the parent's
                # sockets stay the parent's, so it is dropped without closing).
                self._client = self._points = self._summaries = None
                self._pid = os.getpid()
            if self._points is None or self._summaries is None:
                with self._errors("connecting"):
                    if self._client is None:
                        self._client = MongoClient(
                            self.settings.client_uri,
                            document_class=dict,
                            tz_aware=True,
                            **self.settings.client_kwargs,
                        )
                    db = self._client[self.settings.database]
                    p = db[self.settings.collection]
                    s = db[self.settings.summary_collection]
                    self.server_features.update(ensure_indexes(p, s, self.settings.ttl_seconds))
                    # FerretDB 1.x runs an update as a read then a write, without isolation:
                    # two concurrent updates of one document can lose one. MongoDB's
                    # single-document updates are atomic. No command tells; the build does.
                    build = self._client.admin.command("buildInfo")
                    self.server_features["atomic_updates"] = "ferretdbVersion" not in build
                self._points, self._summaries = p, s
            return self._points, self._summaries

    # -- writes -------------------------------------------------------------------------------
    def _documents(self, points: Sequence[Point]) -> list[dict[str, Any]]:
        docs = []
        for p in points:
            try:
                docs.append(point_to_document(p))
            except BadPoint as exc:
                self.rejected_points += 1
                pid = p.get("id") if isinstance(p, dict) else None
                log.error(
                    "xprofiler: skipping a point that cannot be stored (id %r): %s",
                    pid if isinstance(pid, str) else "?",
                    exc,
                )
        return docs

    def _insert(self, col: Collection[dict[str, Any]], docs: list[dict[str, Any]]) -> set[int]:
        """Insert the batch; returns the indexes of documents the server refused for good."""
        try:
            col.insert_many(docs, ordered=False)
            return set()
        except BulkWriteError as exc:
            # A duplicate key is a point stored before (a retried batch): that is success.
            errors = exc.details.get("writeErrors", [])
            other = [e for e in errors if e.get("code") != _DUPLICATE_KEY]
            retry = [e for e in other if e.get("code") not in _PERMANENT_WRITE_CODES]
            if retry or exc.details.get("writeConcernErrors"):
                raise
            for e in other:
                self.rejected_points += 1
                log.error(
                    "xprofiler: the server refused point %r (code %s): %s",
                    docs[e["index"]]["_id"],
                    e.get("code"),
                    str(e.get("errmsg", ""))[:200],
                )
            return {e["index"] for e in other}

    def _store_summaries(
        self,
        col: Collection[dict[str, Any]],
        summaries: list[tuple[dict[str, Any], dict[str, Any]]],
    ) -> None:
        # Most traces of a batch are new: one unordered insert creates their summaries. Those
        # that exist already (a trace spanning batches, a retried batch) fail with a duplicate
        # key and are merged with the idempotent upserts instead.
        try:
            col.insert_many([doc for doc, _ in summaries], ordered=False)
            return
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if not errors or any(e.get("code") != _DUPLICATE_KEY for e in errors):
                raise
            self._upsert_summaries(col, [summaries[e["index"]][1] for e in errors])

    def _upsert_summaries(self, col: Collection[dict[str, Any]], ops: list[dict[str, Any]]) -> None:
        if self.server_features.get("atomic_updates", True):
            for start in range(0, len(ops), _UPDATES_PER_COMMAND):
                self._run_updates(col, ops[start : start + _UPDATES_PER_COMMAND])
            return
        # Without atomic updates, two writers merging into one summary at once can lose one
        # merge. Inserts are atomic everywhere (unique _id), so a lock document per trace,
        # inserted before the update and deleted after it, makes the merges take turns.
        locks = col.database[self.settings.lock_collection]
        pending = {op["q"]["_id"]: op for op in ops}
        deadline = time.monotonic() + _LOCK_WAIT
        delay = 0.005
        while pending:
            now = dt.datetime.now(dt.timezone.utc)
            busy: set[str] = set()
            keys = list(pending)
            try:
                locks.insert_many(
                    [{"_id": k, "at": now, "owner": self._owner} for k in keys], ordered=False
                )
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                if any(e.get("code") != _DUPLICATE_KEY for e in errors):
                    raise
                busy = {keys[e["index"]] for e in errors}
            mine = [k for k in keys if k not in busy]
            if mine:
                try:
                    for start in range(0, len(mine), _UPDATES_PER_COMMAND):
                        chunk = mine[start : start + _UPDATES_PER_COMMAND]
                        self._run_updates(col, [pending[k] for k in chunk])
                finally:
                    try:
                        locks.delete_many({"_id": {"$in": mine}, "owner": self._owner})
                    except PyMongoError:
                        self._orphan_locks.update(mine)  # taken back on the next attempt
                        raise
                for k in mine:
                    del pending[k]
            if pending:
                if time.monotonic() > deadline:
                    raise DriverError(
                        f"MongoDB store {self.settings.safe_uri}: {len(pending)} trace summaries "
                        f"stayed locked by another writer for {_LOCK_WAIT:.0f}s; will retry"
                    )
                # A writer that died holding a lock: its lock expires after _LOCK_STALE. Ours,
                # left when the connection broke between update and unlock, we take back now.
                stale = now - dt.timedelta(seconds=_LOCK_STALE)
                locks.delete_many({"_id": {"$in": list(busy)}, "at": {"$lt": stale}})
                orphans = busy & self._orphan_locks
                if orphans:
                    locks.delete_many({"_id": {"$in": list(orphans)}, "owner": self._owner})
                    self._orphan_locks -= orphans
                time.sleep(delay)
                delay = min(0.1, delay * 2)

    def _run_updates(self, col: Collection[dict[str, Any]], ops: list[dict[str, Any]]) -> None:
        # The update command is sent as is (not through pymongo's bulk API) so that the reply is
        # read here: FerretDB 1.x leaves "nModified" out of replies with write errors, which
        # pymongo's bulk API cannot parse.
        for attempt in range(_UPSERT_RETRIES):
            reply = col.database.command({"update": col.name, "updates": ops, "ordered": False})
            if reply.get("writeConcernError"):
                raise DriverError(
                    f"MongoDB store {self.settings.safe_uri}: trace summaries not "
                    f"acknowledged: {str(reply['writeConcernError'])[:300]}"
                )
            errors = reply.get("writeErrors") or []
            if not errors:
                return
            # Two writers upserting one new trace at once: one loses with a duplicate key;
            # re-running its update now merges into the document the other made.
            if any(e.get("code") != _DUPLICATE_KEY for e in errors) or (
                attempt == _UPSERT_RETRIES - 1
            ):
                first = errors[0]
                raise DriverError(
                    f"MongoDB store {self.settings.safe_uri}: {len(errors)} trace summary "
                    f"updates failed, first (code {first.get('code')}): "
                    f"{str(first.get('errmsg', ''))[:300]}"
                )
            ops = [ops[e["index"]] for e in errors]

    def notify(self, points: Sequence[Point]) -> None:
        docs = self._documents(points)
        if not docs:
            return
        points_col, summaries = self._collections()
        with self._errors(f"storing {len(docs)} points"):
            # Points first: if the summaries fail, the batch is retried and the points already
            # stored are skipped as duplicates; the summary updates are idempotent.
            refused = self._insert(points_col, docs)
            if refused:
                docs = [d for i, d in enumerate(docs) if i not in refused]
            if docs:
                self._store_summaries(summaries, trace_summaries(docs))
        if self.settings.ttl_seconds is not None and self.server_features.get("ttl_index") is False:
            now = time.monotonic()
            if now >= self._next_purge:
                self._next_purge = now + min(60.0, max(1.0, self.settings.ttl_seconds / 10))
                try:
                    self.purge_expired()
                except DriverError as exc:  # the batch is stored; expiry runs again later
                    log.warning("xprofiler: deleting expired traces failed: %s", exc)

    def purge_expired(self) -> tuple[int, int]:
        """Delete points and trace summaries older than ``?ttl=``: (points, traces) deleted.

        Needed only where the server has no TTL indexes (it is called from ``notify`` then);
        on MongoDB the server's TTL monitor does this.
        """
        ttl = self.settings.ttl_seconds
        if ttl is None:
            return (0, 0)
        points_col, summaries = self._collections()
        cutoff = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=ttl)
        with self._errors("deleting expired traces"):
            n_points = points_col.delete_many({"ts_date": {"$lt": cutoff}}).deleted_count
            n_traces = summaries.delete_many({"end_date": {"$lt": cutoff}}).deleted_count
        if n_points or n_traces:
            log.info(
                "xprofiler: deleted %d points and %d traces older than %ds from %s",
                n_points,
                n_traces,
                ttl,
                self.settings.safe_uri,
            )
        return (n_points, n_traces)

    # -- reads --------------------------------------------------------------------------------
    def get_report(self, base_id: str) -> list[Point]:
        points_col, _ = self._collections()
        with self._errors("reading a trace"):
            cursor = points_col.find({"base_id": base_id}, POINT_PROJECTION).sort("timestamp", 1)
            return [document_to_point(d) for d in cursor]

    def list_traces(self, filters: TraceFilter | None = None) -> list[TraceSummary]:
        f = filters or TraceFilter()
        if f.limit == 0:
            return []
        _, summaries = self._collections()
        query: dict[str, Any] = {}
        if f.service is not None:
            query["services"] = f.service
        if f.name is not None:
            query["names"] = f.name
        if f.since is not None or f.until is not None:
            bounds: dict[str, Any] = {}
            if f.since is not None:
                bounds["$gte"] = Int64(f.since)
            if f.until is not None:
                bounds["$lte"] = Int64(f.until)
            query["start"] = bounds
        if f.errors:
            query["error"] = True
        order = [("start", -1), ("_id", -1)]
        with self._errors("listing traces"):
            if f.min_duration is None:
                cursor = summaries.find(query, SUMMARY_PROJECTION).sort(order)
                return [document_to_summary(d) for d in cursor.skip(f.offset).limit(f.limit)]
            if self.server_features.get("expr", True):
                expr = {"$gte": [{"$subtract": ["$end", "$start"]}, Int64(f.min_duration)]}
                try:
                    cursor = summaries.find({**query, "$expr": expr}, SUMMARY_PROJECTION)
                    rows = list(cursor.sort(order).skip(f.offset).limit(f.limit))
                    self.server_features["expr"] = True
                    return [document_to_summary(d) for d in rows]
                except OperationFailure as exc:
                    if exc.code not in _UNSUPPORTED_QUERY_CODES:
                        raise
                    self.server_features["expr"] = False
                    log.info(
                        "xprofiler: the MongoDB server cannot filter by duration ($expr, "
                        "code %s); filtering the matching trace summaries in the driver",
                        exc.code,
                    )
            return self._filter_duration(summaries, query, order, f)

    def _filter_duration(
        self,
        summaries: Collection[dict[str, Any]],
        query: dict[str, Any],
        order: list[tuple[str, int]],
        f: TraceFilter,
    ) -> list[TraceSummary]:
        # Fallback for servers without $expr: the other filters still run on the server; only
        # start/end of the matching summaries are read, newest first, until the page is full.
        min_duration = f.min_duration or 0
        out: list[TraceSummary] = []
        skipped = 0
        cursor = summaries.find(query, {"start": 1, "end": 1}).sort(order).batch_size(500)
        wanted: list[str] = []
        for d in cursor:
            if int(d["end"]) - int(d["start"]) < min_duration:
                continue
            if skipped < f.offset:
                skipped += 1
                continue
            wanted.append(d["_id"])
            if len(wanted) >= f.limit:
                break
        cursor.close()
        if wanted:
            rows = {
                d["_id"]: document_to_summary(d)
                for d in summaries.find({"_id": {"$in": wanted}}, SUMMARY_PROJECTION)
            }
            out = [rows[i] for i in wanted if i in rows]
        return out

    def list_error_traces(self, filters: TraceFilter | None = None) -> list[TraceSummary]:
        return self.list_traces(replace(filters or TraceFilter(), errors=True))

    # -- lifetime -----------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
            self._points = self._summaries = None
            if client is not None and self._pid == os.getpid():
                client.close()

    def __repr__(self) -> str:
        return f"MongoDBDriver({self.settings.safe_uri!r})"
